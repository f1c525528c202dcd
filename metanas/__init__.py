"""metanas: meta-learning neural architecture search across task distributions."""

from metanas.errors import MetanasError

__version__ = "0.1.0"
__all__ = ["MetanasError", "__version__"]
