"""``walsrec warmup``: runs every part, compiles or loads every kernel Python calls, leaves
nothing behind, and says where the cache is; the one-line notice of a first compile.

(How long a later process then takes is measured by benchmarks/cold_start.py.)"""

from __future__ import annotations

from walsrec.cli.main import main

_WARM_UP_AND_LIST = """
import importlib, json, pkgutil
from numba.core.registry import CPUDispatcher
import walsrec
from walsrec.warmup import warm_up

said = []
summary = warm_up(progress=said.append)
uncompiled = []  # kernels called from Python (helpers, called only by kernels, aside)
for info in pkgutil.walk_packages(walsrec.__path__, "walsrec."):
    if info.name in ("walsrec.__main__", "walsrec._topk_heap"):
        continue
    for name, v in vars(importlib.import_module(info.name)).items():
        if isinstance(v, CPUDispatcher) and v.__module__ == info.name and not name.startswith("_"):
            if not v.signatures:
                uncompiled.append(f"{info.name}.{name}")
print(json.dumps({"said": said, "summary": summary, "uncompiled": uncompiled}))
"""

# Kernels no warm-up step runs, and why.
_NOT_WARMED = {
    # reorders records of TFRecord shards whose keys are not increasing (TensorFlow-written)
    "walsrec.data.tfrecord.shards.scatter_rows",
}


def test_warm_up_runs_every_part_in_a_temporary_folder_and_loads_every_kernel(tmp_path):
    """In a fresh process: every part runs, every kernel that Python calls is compiled or
    loaded by the end, and the temporary folder is gone."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, TMPDIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", _WARM_UP_AND_LIST], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    summary = out["summary"]
    assert list(summary["parts"]) == ["prepare", "train", "solvers and dtypes", "serve and predict"]
    assert out["said"] == [f"warmup: {name}" for name in summary["parts"]]
    assert all(seconds > 0 for seconds in summary["parts"].values())
    assert set(out["uncompiled"]) == _NOT_WARMED
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone


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


def test_warmup_itself_prints_no_compile_notice(capsys, monkeypatch):
    def compiling_warm_up(progress=None):
        _probe("walsrec.model.kernels_probe")(3)  # a cache miss of a walsrec function
        return {"seconds": 1.0, "parts": {"train": 1.0}}

    monkeypatch.setattr("walsrec.warmup.warm_up", compiling_warm_up)
    assert main(["warmup"]) == 0
    assert _NOTICE not in capsys.readouterr().err
