"""The ``walsrec`` command line: one module per command group, each a thin layer over the
library (``data``: prepare; ``training``: train, evaluate; ``serving``: recommend, similar,
predict, serve; ``tuning``: tune; ``pipeline``: pipeline, demo), and ``main``: the parser
and the mapping of errors to one line on stderr and exit code 2.
"""

from __future__ import annotations

from walsrec.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
