"""The documentation against the code: a reference page per command, and a README whose
commands run as written and print what it shows."""

from __future__ import annotations

import argparse
import ast
import re
import shlex
import shutil
from pathlib import Path

import pytest

from walsrec.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CLI_DOCS = ROOT / "docs" / "cli"
REGENERATE = "run '.venv/bin/python docs/generate_cli.py' to regenerate docs/cli/"
# pages other people write; the README links them before they exist
PENDING = {"docs/tuning.md", "docs/scaling.md"}
# output that differs between runs: durations, export versions
VARIABLE = re.compile(r"\d+\.\d+ s\b|export/\d+|export \d+|version \d+")


def _commands() -> dict[str, tuple[argparse.ArgumentParser, str]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub._choices_actions}
    return {name: (p, helps.get(name)) for name, p in sub.choices.items()}


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", text, flags=re.S | re.M)


def test_every_command_has_help_text_and_a_reference_page():
    index = (CLI_DOCS / "README.md").read_text()
    commands = _commands()
    assert {"prepare", "train", "evaluate", "serve", "pipeline", "demo"} <= set(commands)
    for name, (parser, help_text) in commands.items():
        assert help_text, f"walsrec {name} has no help text"
        assert parser.description, f"walsrec {name} has no description"
        page = CLI_DOCS / f"{name}.md"
        assert page.is_file(), f"walsrec {name} has no docs/cli/{name}.md; {REGENERATE}"
        text = page.read_text()
        assert text.startswith(f"# walsrec {name}\n")
        for action in parser._actions:
            for option in action.option_strings:
                if option in ("-h", "--help"):
                    continue
                assert f"`{option}`" in text, (
                    f"docs/cli/{name}.md does not document {option}; {REGENERATE}"
                )
        assert f"]({name}.md)" in index, f"docs/cli/README.md does not list {name}"


def test_readme_starts_with_the_two_setup_commands():
    first = _blocks(README.read_text(), "sh")[0]
    assert README.read_text().index("```sh") < README.read_text().index("\n## ")
    assert first.splitlines()[0].startswith("make demo")
    assert first.splitlines()[1].startswith("make test")


def test_readme_links_resolve():
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text())
    local = [link for link in links if "://" not in link]
    assert "docs/tuning.md" in local and "docs/scaling.md" in local
    for link in local:
        if link in PENDING:
            continue
        assert (ROOT / link).exists(), f"README links {link}, which does not exist"


def test_readme_python_names_exist():
    import walsrec

    for block in _blocks(README.read_text(), "python"):
        tree = ast.parse(block.replace("tf.contrib", "tf_contrib"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "walsrec"
            ):
                assert hasattr(walsrec, node.attr), f"README uses walsrec.{node.attr}"


def test_readme_migration_table_maps_every_argument_and_feature_key():
    text = README.read_text()
    table = text[text.index("## Migrating from") : text.index("## How the weights")]
    for name in (
        "num_rows num_cols embedding_dimension unobserved_weight regularization_coeff "
        "row_init col_init num_row_shards num_col_shards row_weights col_weights "
        "use_factors_weights_cache_for_training use_gramian_cache_for_training max_sweeps "
        "model_dir config INPUT_ROWS INPUT_COLS TRANSPOSE_INPUT PROJECT_ROW PROJECTION_WEIGHTS"
    ).split():
        assert re.search(rf"^\| [^|]*`{name}`", table, flags=re.M), name


def _console_commands(block: str) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif out:
            out[-1][1].append(line)
    return out


def _same(shown: str, printed: str) -> bool:
    """The same line, numbers equal to the last digit shown give or take one or two units
    (another CPU's float32 rounding may move a metric's fourth decimal)."""
    a, b = shown.split(), printed.split()
    if (
        len(a) != len(b)
        or shown[: len(shown) - len(shown.lstrip())]
        != printed[: len(printed) - len(printed.lstrip())]
    ):
        return False
    for x, y in zip(a, b, strict=True):
        if x == y:
            continue
        try:
            fx, fy = float(x.strip("(),")), float(y.strip("(),"))
        except ValueError:
            return False
        decimals = len(x.strip("(),").partition(".")[2])
        if abs(fx - fy) > 2.5 * 10.0**-decimals:
            return False
    return True


def _run_console_blocks(section: str, capsys) -> int:
    ran = 0
    for block in _blocks(section, "console"):
        for command, shown in _console_commands(block):
            argv = shlex.split(command)
            if argv[0] != "walsrec":
                continue  # curl against a running service
            code = main(argv[1:])
            out, err = capsys.readouterr()
            assert code == 0, f"{command}: {err}"
            printed = out.splitlines()
            for line in shown:
                if line == "..." or VARIABLE.search(line):
                    continue
                assert any(_same(line, p) for p in printed), f"{command}: README shows {line!r}"
            ran += 1
    return ran


@pytest.mark.slow
def test_readme_tour_runs_as_written_and_prints_what_it_shows(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    text = README.read_text()
    tour = text[text.index("### The command line") : text.index("### Python")]
    assert _run_console_blocks(tour, capsys) >= 6
    # the pipeline section, on the demo's data, from the repository's examples/
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "demo_pipeline.toml", tmp_path / "examples")
    section = text[text.index("## Retraining") : text.index("## Scaling out")]
    assert _run_console_blocks(section, capsys) == 4  # the pipeline twice, then an update
    # the Python tour, as written
    python = _blocks(text[text.index("### Python") :], "python")[0]
    exec(compile(python, "README.md", "exec"), {})
    assert (tmp_path / "top10.csv").is_file()


def test_output_lines_compare_to_the_last_digit_shown():
    assert _same(
        "  auc                0.7335        0.7706", "  auc                0.7336        0.7706"
    )
    assert not _same("  auc                0.7335        0.7706", "  auc  0.7395  0.7706")
    assert not _same("     1  a2696      0.1797", "     1  a2697      0.1797")
    assert not _same("  loss           15168.7623", "  loss           15168.9623")
    assert _same("    a1600 (1.00)      a2696 (0.180)", "    a1600 (1.00)      a2696 (0.181)")
