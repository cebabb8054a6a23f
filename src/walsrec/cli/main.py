"""The ``walsrec`` command line: parses arguments, calls the library, maps its errors.

Thin on purpose: every command is a library call. A :class:`walsrec.errors.WalsrecError`
(bad input, bad parameter) or an :class:`OSError` (a file that cannot be read or written,
a full disk) becomes one line on stderr and exit code 2, and so does a command's optional
dependency that is not installed (the line names the extra to install); any other missing
module is a bug and keeps its traceback. A command that must compile walsrec's kernels (a
first run on a machine) says so in one line on stderr. Library modules are imported inside
the command functions so that ``walsrec --help`` stays fast and needs no extra.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from walsrec import __version__
from walsrec.cli import data, pipeline, serving, training, tuning
from walsrec.cli._common import (
    EXIT_BAD_INPUT,
    _missing_extra_text,
    _os_error_text,
    _stderr,
    compile_notice,
)
from walsrec.errors import WalsrecError

__all__ = ["build_parser", "main"]


# ---------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="walsrec",
        description="WALS matrix factorization recommendations: prepare, train, serve.",
        epilog="Run 'walsrec COMMAND --help' for a command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"walsrec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    data.add_commands(sub)  # prepare
    training.add_commands(sub)  # train, evaluate
    serving.add_commands(sub)  # recommend, similar, predict, serve
    tuning.add_commands(sub)  # tune
    pipeline.add_commands(sub)  # pipeline, demo
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``walsrec`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        if not getattr(args, "compile_notice", True):
            return args.func(args)
        with compile_notice(args.command):
            return args.func(args)
    except WalsrecError as exc:
        _stderr(f"walsrec {args.command}: error: {exc}")
        return EXIT_BAD_INPUT
    except ModuleNotFoundError as exc:  # an extra not installed (pip install -e . is core)
        message = _missing_extra_text(args.command, exc)
        if message is None:
            raise
        _stderr(message)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _stderr(f"walsrec {args.command}: interrupted")
        return 130
    except BrokenPipeError:  # the reader went away (e.g. `walsrec ... | head`)
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout
        return 141
    except OSError as exc:  # after BrokenPipeError, one of its subclasses
        _stderr(f"walsrec {args.command}: error: {_os_error_text(exc)}")
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
