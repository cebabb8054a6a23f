"""Command-line commands of the serving side (recommend, similar, predict, serve)."""

from __future__ import annotations


def add_commands(sub) -> None:
    """Register the serving subcommands on the ``walsrec`` parser's subparsers."""
