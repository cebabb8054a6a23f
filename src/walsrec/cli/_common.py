"""What every command module shares: one line on stderr, the exit code for bad input."""

from __future__ import annotations

import sys

EXIT_BAD_INPUT = 2


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _os_error_text(exc: OSError) -> str:
    """One line for an OSError: the path(s) first, then what went wrong."""
    if exc.filename is None:  # pyarrow's put the path in the message
        return str(exc)
    paths = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
    return f"{paths}: {exc.strerror or exc}"
