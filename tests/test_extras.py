"""Commands whose optional dependency is not installed: one line naming the extra, exit 2.

The missing module is simulated: ``sys.modules[name] = None`` makes ``import name`` raise
ModuleNotFoundError with that name. walsrec's own modules that import it at module level
are dropped from ``sys.modules`` too, so that the command's import really runs again.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from walsrec.cli import main
from walsrec.cli._common import EXTRA_OF_MODULE

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _missing(monkeypatch, module: str, *importers: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    for name in importers:  # restored when the test ends
        monkeypatch.delitem(sys.modules, name, raising=False)


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("module", ["fastapi", "uvicorn"])
def test_serve_without_the_serve_extra(module, tmp_path, monkeypatch, capsys):
    _missing(monkeypatch, module, "walsrec.serving.app")
    code, out, err = _run(capsys, "serve", "--model", str(tmp_path / "model"))
    assert code == 2 and out == ""
    assert _one_line(err) == (
        f"walsrec serve needs the 'serve' extra ({module} is not installed): "
        "pip install 'walsrec[serve]'"
    )


def test_tune_without_the_tune_extra(data_dir, tmp_path, monkeypatch, capsys):
    _missing(monkeypatch, "optuna")
    code, out, err = _run(capsys, "tune", "--data", str(data_dir), "--trials", "1", "--quiet")
    assert code == 2 and out == ""
    assert _one_line(err) == (
        "walsrec tune needs the 'tune' extra (optuna is not installed): pip install 'walsrec[tune]'"
    )


def test_train_on_dask_without_the_dask_extra(data_dir, tmp_path, monkeypatch, capsys):
    _missing(monkeypatch, "distributed")
    code, out, err = _run(
        capsys,
        "train",
        "--data",
        str(data_dir),
        "--model-dir",
        str(tmp_path / "m"),
        "--dask",
        "local:1",
        "--quiet",
    )
    assert code == 2 and out == ""
    assert _one_line(err) == (
        "walsrec train needs the 'dask' extra (distributed is not installed): "
        "pip install 'walsrec[dask]'"
    )


def test_connect_names_the_dask_extra(monkeypatch):
    from walsrec.distributed.cluster import connect

    _missing(monkeypatch, "distributed")
    msg = (
        "walsrec's Dask back end needs the 'dask' extra (distributed is not installed): "
        "pip install 'walsrec[dask]'"
    )
    with pytest.raises(ModuleNotFoundError, match=re.escape(msg)) as info:
        connect("local:1")
    assert info.value.name == "distributed"


def _command_raising(monkeypatch, exc: ModuleNotFoundError) -> None:
    """``walsrec evaluate`` raises ``exc`` (the parser looks its function up when built)."""

    def fail(args):
        raise exc

    monkeypatch.setattr("walsrec.cli.training._cmd_evaluate", fail)


@pytest.mark.parametrize(("module", "extra"), sorted(EXTRA_OF_MODULE.items()))
def test_every_extras_module_gets_the_one_line(module, extra, monkeypatch, capsys):
    _command_raising(monkeypatch, ModuleNotFoundError(f"No module named {module!r}", name=module))
    code, out, err = _run(capsys, "evaluate", "--model", "m", "--data", "d")
    assert code == 2 and out == ""
    assert _one_line(err) == (
        f"walsrec evaluate needs the '{extra}' extra ({module} is not installed): "
        f"pip install 'walsrec[{extra}]'"
    )


@pytest.mark.parametrize("module", ["walsrec_no_such_module", "optuna.visualization", "numpy"])
def test_other_missing_modules_keep_their_traceback(module, monkeypatch, capsys):
    # a module that is no extra's (or a submodule of one that is installed) is a bug
    _command_raising(monkeypatch, ModuleNotFoundError(f"No module named {module!r}", name=module))
    with pytest.raises(ModuleNotFoundError, match=re.escape(f"No module named {module!r}")):
        main(["evaluate", "--model", "m", "--data", "d"])


def _project_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("-", "_")


def test_the_table_follows_pyproject_extras():
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    assert set(EXTRA_OF_MODULE.values()) <= set(extras)
    for extra, requirements in extras.items():
        for req in requirements:
            name = _project_name(req)
            if name == "walsrec" or extra == "dev":  # the aggregates, and the tools
                continue
            assert EXTRA_OF_MODULE.get(name) == extra, (extra, req)
