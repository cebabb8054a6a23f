"""Command-line command of the tuning side (``walsrec tune``)."""

from __future__ import annotations


def add_commands(sub) -> None:
    """Register ``walsrec tune`` on the ``walsrec`` parser's subparsers."""
