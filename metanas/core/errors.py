"""One exception type for every input error a user can fix.

The CLI turns a :class:`MetanasError` into a single line on stderr and exit
code 2; anything else is a bug and keeps its traceback.
"""


class MetanasError(Exception):
    """A bad input: the message names the cause and the fix."""


def exit_on_error(main):
    """Wrap a CLI entry point: a MetanasError becomes one line on stderr and exit code 2."""
    import functools
    import os
    import sys

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except MetanasError as e:
            print(f"metanas: error: {e}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            if os.environ.get("RANK", "0") == "0":  # under torchrun every rank stops; one line is enough
                print("metanas: interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper
