from __future__ import annotations

import json

import pytest

from walsrec.cli import main
from walsrec.errors import DataFormatError
from walsrec.evaluation import evaluate_export
from walsrec.metrics import evaluate
from walsrec.serving.export import read_export


def test_train_then_evaluate_on_the_command_line(data_dir, tmp_path, capsys):
    md = str(tmp_path / "m")
    code = main(
        [
            "train",
            "--data",
            str(data_dir),
            "--model-dir",
            md,
            "--sweeps",
            "2",
            "--embedding-dim",
            "8",
            "--threads",
            "1",
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert f"Trained 2 sweeps in {md}\n" in out and "ndcg@10" in out and "Exported " in out
    assert main(["evaluate", "--model", md, "--data", str(data_dir), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    exp = read_export(md)
    from walsrec.data.prepare import load_prepared

    data = load_prepared(data_dir)
    want = evaluate(
        exp.user_factors, exp.item_factors, data.train.user_items, data.eval.user_items, k=10
    )
    # train's default binary targets: the model predicts preferences, so no rmse
    assert got["targets"] == "binary"
    del want["rmse"]
    # the hybrid (chosen on validation, train's default item_item "auto") or WALS alone
    hybrid = exp.item_weights is not None
    assert ("wals" in got) == hybrid and ("blend_weight" in got) == hybrid
    assert got["wals" if hybrid else "model"] == pytest.approx(want)
    assert got["model"]["ndcg@10"] > got["most-popular"]["ndcg@10"]
    assert got["users_evaluated"] > 0
    assert main(["evaluate", "--model", md, "--data", str(data_dir), "--k", "5"]) == 0
    table = capsys.readouterr().out
    assert "ndcg@5" in table and "most-popular" in table


def _train_out(capsys, data_dir, md, *options) -> str:
    common = ["--embedding-dim", "4", "--threads", "1", "--quiet"]
    code = main(["train", "--data", str(data_dir), "--model-dir", md, *common, *options])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out.splitlines()[0]


@pytest.mark.parametrize(
    ("options", "said"),
    [
        # 600 users and 250 items in batches of 200: 5 steps a sweep
        (["--sweeps", "2", "--batch-size", "200"], "Trained 2 sweeps"),
        (["--sweeps", "1"], "Trained 1 sweep"),
        (["--train-steps", "3"], "Trained 3 steps"),
        (["--train-steps", "7", "--batch-size", "200"], "Trained 7 steps"),
    ],
)
def test_train_reports_its_length_in_the_unit_asked_for(data_dir, tmp_path, capsys, options, said):
    md = str(tmp_path / "m")
    assert _train_out(capsys, data_dir, md, *options) == f"{said} in {md}"


def test_train_reports_steps_asked_for_in_a_config_file(data_dir, tmp_path, capsys):
    cfg = tmp_path / "train.toml"
    cfg.write_text("train_steps = 3\n")
    md = str(tmp_path / "m")
    assert _train_out(capsys, data_dir, md, "--config", str(cfg)) == f"Trained 3 steps in {md}"


def test_resumed_train_reports_the_sweeps_in_all(data_dir, tmp_path, capsys):
    md = str(tmp_path / "m")
    _train_out(capsys, data_dir, md, "--sweeps", "1")
    assert _train_out(capsys, data_dir, md, "--sweeps", "3") == f"Trained 3 sweeps in {md}"


def test_evaluate_refuses_other_data(data_dir, tmp_path, capsys):
    from walsrec.data.prepare import prepare

    md = str(tmp_path / "m")
    main(
        [
            "train",
            "--data",
            str(data_dir),
            "--model-dir",
            md,
            "--sweeps",
            "1",
            "--embedding-dim",
            "4",
            "--quiet",
        ]
    )
    capsys.readouterr()
    (tmp_path / "other.csv").write_text("user,item\na,x\nb,y\na,y\nb,x\n")
    prepare(str(tmp_path / "other.csv"), tmp_path / "other", eval_fraction=0.5, split="user")
    with pytest.raises(
        DataFormatError,
        match=r"have different users vocabularies \(\d+ against "
        r"2 ids\); evaluate on the DATA_DIR the model was trained on",
    ):
        evaluate_export(md, tmp_path / "other")
    code = main(["evaluate", "--model", md, "--data", str(tmp_path / "other")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "different users vocabularies" in err[0]


def test_train_bad_setting_exits_2(tmp_path, capsys):
    code = main(
        [
            "train",
            "--data",
            str(tmp_path),
            "--model-dir",
            str(tmp_path / "m"),
            "--embedding-dim",
            "0",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [
        "walsrec train: error: The 'embedding_dim' setting of train "
        "must be an int >= 1. Got 0 instead."
    ]


def test_train_dask_option_reaches_the_setting(tmp_path, capsys):
    code = main(
        ["train", "--data", str(tmp_path), "--model-dir", str(tmp_path / "m"), "--dask", "local:0"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [
        "walsrec train: error: The 'dask' setting of train must be "
        "'local:N' with N an int >= 1 (worker processes). Got "
        "'local:0' instead."
    ]
