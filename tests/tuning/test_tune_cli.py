"""``walsrec tune`` on the command line."""

from __future__ import annotations

import tomllib

import pytest

from walsrec.cli import main


def test_help_has_an_example(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["tune", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and "walsrec tune --data data/ --trials" in out
    assert "eval split is never used for choosing" in out


def test_tune_then_train_best(data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.toml").write_text(
        "[space]\nembedding_dim = { choices = [8, 12] }\ncol_weights_from_counts = 'log'\n"
    )
    argv = [
        "tune",
        "--data",
        str(data_dir),
        "--trials",
        "3",
        "--sweeps",
        "2",
        "--space",
        "space.toml",
        "--storage",
        "sqlite:///study.db",
        "--out",
        "out",
        "--train-best",
        "--model-dir",
        "model",
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "3 validation split(s) carved from the training split" in out
    assert "the eval split was not used for choosing" in out
    assert "Study 'walsrec': 3 new trials, 3 in all" in out
    table = [line.split() for line in out.splitlines()]
    assert ["trial", "state", "ndcg@10", "sweeps", "seconds"] in [r[:5] for r in table]
    assert sum(r[1:2] in (["complete"], ["pruned"]) for r in table) == 3
    assert "Wrote out/best.toml" in out and "Wrote out/optimization_history.png" in out
    assert "Eval split (" in out and "most-popular" in out
    # EASE beside them: the catalog is small enough (walsrec.evaluation.evaluate_export)
    assert [r[:5] for r in table if r[:1] == ["metric"]] == [
        ["metric", "hybrid", "WALS", "most-popular", "EASE"]
    ]
    assert captured.err.count("tune: trial ") == 3
    best = tomllib.loads((tmp_path / "out" / "best.toml").read_text())
    assert best["embedding_dim"] in (8, 12) and best["col_weights_from_counts"] == "log"
    assert (tmp_path / "model" / "export").is_dir()
    # the same storage resumes: three more trials, six in all
    assert main([*argv[:-3], "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Study 'walsrec': 3 new trials, 6 in all" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--trials", "1", "--train-best"], "--train-best needs --model-dir MODEL_DIR."),
        ([], "tune needs --trials N or --timeout S (or both)."),
        (["--trials", "1", "--metric", "mrr"], "The 'metric' parameter of tune must be rmse"),
        (["--trials", "1", "--space", "missing.toml"], "Search space file 'missing.toml' not"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(data_dir, tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    assert main(["tune", "--data", str(data_dir), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("walsrec tune: error: ") and message in err
    assert err.count("\n") == 1


def _tune_best(data_dir, *extra):
    argv = ["tune", "--data", str(data_dir), "--trials", "2", "--sweeps", "1", "--out", "out"]
    return main([*argv, "--train-best", "--model-dir", "model", *extra])


def test_train_best_refuses_a_locked_model_dir_before_the_study(
    data_dir, tmp_path, capsys, monkeypatch
):
    # Regression: the whole study ran, then train refused the MODEL_DIR another run held
    import fcntl
    import json
    import os

    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    holder = {"pid": 4242, "host": "elsewhere", "purpose": "walsrec train", "since": "today"}
    fd = os.open(tmp_path / "model" / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another open file: another run
        os.write(fd, json.dumps(holder).encode())
        code = _tune_best(data_dir)
    finally:
        os.close(fd)
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        "walsrec tune: error: model: in use by another walsrec run (walsrec train, pid 4242 "
        "on elsewhere, since today); wait for it to finish or stop it. Two runs on one "
        "directory would overwrite each other.\n"
    )
    assert not (tmp_path / "out").exists()  # no trial ran


def test_train_best_overwrite_refuses_a_directory_that_is_not_a_model_dir_first(
    data_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "notes.txt").write_text("mine\n")
    assert _tune_best(data_dir, "--overwrite") == 2
    err = capsys.readouterr().err
    refused = "The 'model_dir' directory 'model' is not empty and is not a MODEL_DIR"
    assert err.startswith(f"walsrec tune: error: {refused}")
    assert err.count("\n") == 1 and "tune: trial" not in err
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["notes.txt"]
