"""``python -m metanas.cli`` = ``metanas``."""

from metanas.cli import main

main()
