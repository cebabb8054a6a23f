"""Write docs/cli/<command>.md, one reference page per `walsrec` command, from the parsers.

    .venv/bin/python docs/generate_cli.py

The pages are generated from the argparse parsers in walsrec.cli (help, description,
usage, every option with its help text and default, the examples), so they cannot drift
from `walsrec COMMAND --help` (`walsrec train`'s settings come from TrainConfig's field
metadata); tests/test_docs.py fails when a command or an option has no entry, and
tests/training/test_config.py when a page is not what this script writes. Run this after
adding or changing a command, an option or a TrainConfig setting.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ["COLUMNS"] = "100"  # usage lines wrap the same on every terminal

from walsrec.cli import build_parser

OUT = Path(__file__).resolve().parent / "cli"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices), {a.dest: a.help for a in sub._choices_actions}


def _cell(text: str) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")


def _option_rows(parser: argparse.ArgumentParser) -> list[tuple[str, str, str]]:
    groups = [(g.title, g._group_actions) for g in parser._action_groups]
    out = []
    for title, actions in groups:
        for action in actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if action.option_strings:
                name = ", ".join(f"`{s}`" for s in action.option_strings)
                if action.nargs != 0 and not (action.choices and action.metavar is None):
                    name += f" `{action.metavar or action.dest.upper()}`"
            else:
                name = f"`{action.metavar or action.dest}`" + (
                    " (one or more)" if action.nargs == "+" else ""
                )
            help_text = action.help or ""
            if action.choices and "{" not in help_text:
                help_text += f" (one of: {', '.join(map(str, action.choices))})"
            default = action.default
            unset = default is None or default is False or default in ([], argparse.SUPPRESS)
            if not unset and "default" not in help_text:
                help_text += f" (default: {default})"
            if action.required:
                help_text += " **required**"
            out.append((title, name, help_text))
    return out


def page(name: str, help_text: str, parser: argparse.ArgumentParser) -> str:
    lines = [f"# walsrec {name}", "", help_text[:1].upper() + help_text[1:] + ".", ""]
    lines += ["```", parser.format_usage().strip(), "```", ""]
    if parser.description:
        lines += [parser.description, ""]
    lines += ["| option | meaning |", "|---|---|"]
    for _title, opt, text in _option_rows(parser):
        lines.append(f"| {opt} | {_cell(text)} |")
    lines.append("")
    if parser.epilog:
        body = parser.epilog.split("\n", 1)[1] if ":" in parser.epilog.split("\n", 1)[0] else ""
        lines += ["## Examples", "", "```sh"]
        lines += [
            line[2:] if line.startswith("  ") else line for line in body.rstrip().splitlines()
        ]
        lines += ["```", ""]
    lines += [
        f"Generated from `walsrec {name} --help` by `docs/generate_cli.py`; "
        "see also the [command index](README.md).",
        "",
    ]
    return "\n".join(lines)


def index(commands: dict[str, str]) -> str:
    lines = [
        "# The walsrec command line",
        "",
        "One page per command, generated from the parsers by `docs/generate_cli.py`. Every "
        "command exits with 0 on success and 2 on bad input, with one line on stderr.",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    lines += [f"| [`walsrec {n}`]({n}.md) | {_cell(h)} |" for n, h in commands.items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    parsers, helps = _subparsers(build_parser())
    OUT.mkdir(parents=True, exist_ok=True)
    for name, parser in parsers.items():
        (OUT / f"{name}.md").write_text(page(name, helps[name] or "", parser))
    (OUT / "README.md").write_text(index(helps))
    print(f"wrote {len(parsers)} pages and the index to {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
