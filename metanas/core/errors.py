"""One exception type for every input error a user can fix.

The CLI turns a :class:`MetanasError` into a single line on stderr and exit
code 2; anything else is a bug and keeps its traceback.
"""


class MetanasError(Exception):
    """A bad input: the message names the cause and the fix."""


def describe(e: BaseException, limit: int = 160) -> str:
    """One line for a library's exception, to quote in a MetanasError: a YAML error's problem and line, else the
    first non-empty line of its message, else its type's name (an exception with an empty message, such as
    torch's on an empty file, must not break the error that quotes it)."""
    problem, mark = getattr(e, "problem", None), getattr(e, "problem_mark", None)
    if problem and mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = lines[0] if lines else type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


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
