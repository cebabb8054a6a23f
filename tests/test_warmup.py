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
