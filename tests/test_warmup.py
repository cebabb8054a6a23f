"""``walsrec warmup``: runs every part, leaves nothing behind, and says where the cache is.

(Whether it fills the cache for a later process is measured by benchmarks/cold_start.py's
method, not here: from an empty cache it compiles for minutes.)"""

from __future__ import annotations

import tempfile
from pathlib import Path

from walsrec.cli.main import main
from walsrec.warmup import warm_up


def test_warm_up_runs_every_part_in_a_temporary_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    said = []
    summary = warm_up(progress=said.append)
    assert list(summary["parts"]) == ["prepare", "train", "solvers and dtypes", "serve and predict"]
    assert said == [f"warmup: {name}" for name in summary["parts"]]
    assert summary["seconds"] >= sum(summary["parts"].values()) * 0.99
    assert list(Path(tmp_path).iterdir()) == []  # the temporary folder is gone


def test_the_command_says_where_the_cache_is(capsys, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/somewhere/numba-cache")
    monkeypatch.setattr(
        "walsrec.warmup.warm_up", lambda progress=None: {"seconds": 1.0, "parts": {"train": 1.0}}
    )
    assert main(["warmup"]) == 0
    out = capsys.readouterr().out
    assert "Kernels compiled or loaded in 1.0 s (train 1.0 s)." in out
    assert "numba's cache (/somewhere/numba-cache) now holds them" in out


_NOTICE = "compiling walsrec's kernels for this machine (once: later runs load them"


def _probe(module: str):
    """A fresh numba function that claims to live in ``module`` (compiles on first call)."""
    from numba import njit

    def plus_one(x):
        return x + 1

    plus_one.__module__ = module
    return njit(plus_one)


def test_the_notice_is_one_line_on_the_first_walsrec_compile_and_ends_with_the_block(capsys):
    from walsrec.cli._common import compile_notice

    with compile_notice("train"):
        _probe("numpy.elsewhere")(1)  # another library compiling: not ours to announce
        assert capsys.readouterr().err == ""
        _probe("walsrec.model.kernels_probe")(1)
        _probe("walsrec.metrics.kernels_probe")(1.5)
    assert capsys.readouterr().err == (
        "walsrec train: compiling walsrec's kernels for this machine (once: later runs load "
        "them from numba's cache; 'walsrec warmup' compiles them all ahead of time)\n"
    )
    _probe("walsrec.model.kernels_probe")(2)  # after the block: silent
    assert capsys.readouterr().err == ""


def test_a_first_run_says_it_compiles_and_a_second_run_says_nothing(tmp_path):
    import os
    import subprocess
    import sys

    csv = tmp_path / "x.csv"
    csv.write_text("user,item\n" + "".join(f"u{i % 7},i{i % 11}\n" for i in range(60)))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    walsrec = [sys.executable, "-m", "walsrec", "prepare", str(csv), "--out", str(tmp_path / "p")]
    first = subprocess.run([*walsrec, "--quiet"], env=env, capture_output=True, text=True)
    second = subprocess.run(
        [*walsrec, "--quiet", "--overwrite"], env=env, capture_output=True, text=True
    )
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stderr.count(_NOTICE) == 1 and first.stderr.startswith("walsrec prepare: ")
    assert _NOTICE not in second.stderr
