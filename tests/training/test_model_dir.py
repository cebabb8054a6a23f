"""MODEL_DIR's safety: checked checkpoints, one run at a time, --overwrite's rule."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from walsrec.cli import main
from walsrec.errors import DataFormatError, InvalidParameterError, LockedError
from walsrec.training import train
from walsrec.training.checkpoints import read_checkpoint, write_best, write_checkpoint

KW = dict(embedding_dim=4, threads=1, seed=3)


def _state(step=4, **kw):
    state = {
        "step": step,
        "loss_history": [3.0, 2.0],
        "best": None,
        "best_step": None,
        "bad_evals": 0,
        "stopped_early": False,
    }
    state.update(kw)
    return state


@pytest.fixture
def ckpt(tmp_path):
    u = np.ones((5, 3), np.float32)
    v = np.ones((4, 3), np.float32)
    return write_checkpoint(tmp_path, 4, u, v, _state(), keep=2)


def test_a_checkpoint_reads_back(ckpt):
    c = read_checkpoint(ckpt)
    assert c.state == _state() and c.user_factors.shape == (5, 3)


@pytest.mark.parametrize(
    "state, match",
    [
        ([1], r"state\.json: \(top level\): Input should be a valid dictionary"),
        (_state(step="4"), r"state\.json: step: Input should be a valid integer"),
        (_state(loss_history=None), r"loss_history: Input should be a valid list"),
        (_state(loss_history=["x"]), r"loss_history\.0: Input should be a valid number"),
        (_state(stopped_early=0), r"stopped_early: Input should be a valid boolean"),
        (_state(bad_evals=-1), r"bad_evals: Input should be greater than or equal to 0"),
        (_state(best=0.5, best_step=6), r"best_step 6 is after step 4"),
        ({"step": 4}, r"loss_history: Field required .*; best: Field required"),
        # the reproduction: step-8 factors would have been exported as finished
        (_state(step=100), r"step 100 is not the step of its checkpoint \(step-000000004\)"),
    ],
)
def test_a_tampered_state_is_an_error_naming_the_file(ckpt, state, match):
    (ckpt / "state.json").write_text(json.dumps(state))
    with pytest.raises(DataFormatError, match=match):
        read_checkpoint(ckpt)


@pytest.mark.parametrize(
    "name, arr, match",
    [
        ("user_factors.npy", np.ones(5, np.float32), r"expected a 2-d float32 or float64 array"),
        ("item_factors.npy", np.ones((4, 3), np.int64), r"expected a 2-d float32 or float64"),
        ("item_factors.npy", np.full((4, 3), np.nan), r"contain NaN or infinity"),
        ("item_factors.npy", np.ones((4, 2), np.float32), r"differ in width"),
    ],
)
def test_bad_factors_in_a_checkpoint_are_named(ckpt, name, arr, match):
    np.save(ckpt / name, arr)
    with pytest.raises(DataFormatError, match=match):
        read_checkpoint(ckpt)


def test_the_best_checkpoint_has_its_own_schema(tmp_path):
    best = write_best(tmp_path, np.ones((2, 2)), np.ones((3, 2)), {"step": 2, "record": []})
    with pytest.raises(DataFormatError, match=r"record: Input should be a valid dictionary"):
        read_checkpoint(best)


def test_train_refuses_a_checkpoint_whose_losses_do_not_fit_its_step(data_dir, tmp_path):
    md = tmp_path / "m"
    train(data=str(data_dir), model_dir=str(md), sweeps=2, **KW)
    newest = md / "checkpoints" / "step-000000004"
    state = json.loads((newest / "state.json").read_text())
    state["loss_history"] = state["loss_history"][:1]
    (newest / "state.json").write_text(json.dumps(state))
    with pytest.raises(DataFormatError, match=r"1 losses recorded at step 4, where 2 steps"):
        train(data=str(data_dir), model_dir=str(md), sweeps=3, **KW)


# ------------------------------------------------------------------- one run at a time

_HOLD = """
import sys, time
from walsrec.training.loop import model_dir_lock
with model_dir_lock(sys.argv[1], "walsrec train"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_train_on_a_model_dir_says_who_holds_it(data_dir, tmp_path, capsys):
    md = tmp_path / "m"
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(md)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=r"in use by another walsrec run \(walsrec train, "):
            train(data=str(data_dir), model_dir=str(md), sweeps=1, **KW)
        code = main(["train", "--data", str(data_dir), "--model-dir", str(md), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2
        assert err.count("\n") == 1 and f"pid {proc.pid}" in err, err
        assert not (md / "config.json").exists()  # nothing was written
    finally:
        proc.kill()
        proc.wait()
    assert train(data=str(data_dir), model_dir=str(md), sweeps=1, **KW).steps == 2


# ------------------------------------------------------------------- --overwrite's rule


def test_overwrite_refuses_a_directory_that_is_not_a_model_dir(data_dir, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "export").mkdir()  # somebody else's, with a name train also uses
    (home / "notes.txt").write_text("keep me")
    with pytest.raises(
        InvalidParameterError,
        match=r"The 'model_dir' directory '.*home' is not empty and is not a MODEL_DIR",
    ):
        train(data=str(data_dir), model_dir=str(home), sweeps=1, overwrite=True, **KW)
    assert sorted(p.name for p in home.iterdir()) == ["export", "notes.txt"]  # no .lock
    # a config.json of somebody else's does not make it a MODEL_DIR either
    (home / "config.json").write_text('{"theme": "dark"}')
    with pytest.raises(InvalidParameterError, match=r"is not empty and is not a MODEL_DIR"):
        train(data=str(data_dir), model_dir=str(home), sweeps=1, overwrite=True, **KW)
    assert (home / "config.json").read_text() == '{"theme": "dark"}'


def test_overwrite_refuses_a_model_dir_that_holds_the_data(data_dir, tmp_path):
    import shutil

    md = tmp_path / "m"
    train(data=str(data_dir), model_dir=str(md), sweeps=1, **KW)
    shutil.copytree(data_dir, md / "data")
    with pytest.raises(InvalidParameterError, match=r"contains or is the input '.*m/data'"):
        train(data=str(md / "data"), model_dir=str(md), sweeps=1, overwrite=True, **KW)
    assert (md / "data" / "meta.json").is_file()


def test_overwrite_starts_a_model_dir_over(data_dir, tmp_path):
    md = tmp_path / "m"
    train(data=str(data_dir), model_dir=str(md), sweeps=1, **KW)
    res = train(data=str(data_dir), model_dir=str(md), sweeps=1, overwrite=True, **KW)
    assert res.resumed_from_step is None


def test_train_on_a_data_dir_with_an_index_out_of_range_is_an_error(data_dir, tmp_path):
    """The issue's reproduction: an item index >= n_items died with heap corruption."""
    import shutil

    d = tmp_path / "d"
    shutil.copytree(data_dir, d)
    path = d / "train" / "native" / "user_items.indices.npy"
    a = np.load(path)
    n_items = int(json.loads((d / "meta.json").read_text())["counts"]["n_items"])
    a[5] = n_items
    np.save(path, a)
    with pytest.raises(
        DataFormatError,
        match=rf"user_items\.indices\.npy: index {n_items} at position 5 is outside "
        rf"\[0, {n_items}\); the matrix is corrupt",
    ):
        train(data=str(d), model_dir=str(tmp_path / "m"), sweeps=1, **KW)


@pytest.mark.parametrize(
    "name, content, match",
    [
        (
            "metrics.jsonl",
            b'{"model": "wals"}\ngarbage\n',
            r"metrics\.jsonl, line 2: not a metrics",
        ),
        ("metrics.jsonl", b"\xff\xfe", r"metrics\.jsonl: not UTF-8 text"),
        ("config.json", b"\xff\xfe", r"config\.json: not valid JSON"),
        ("config.json", b"[1, 2]", r"config\.json: not a JSON object of settings"),
    ],
)
def test_damaged_training_records_are_named(data_dir, tmp_path, name, content, match):
    md = tmp_path / "m"
    train(data=str(data_dir), model_dir=str(md), sweeps=1, **KW)
    (md / name).write_bytes(content)
    with pytest.raises(DataFormatError, match=match):
        train(data=str(data_dir), model_dir=str(md), sweeps=2, **KW)


def test_a_full_disk_while_checkpointing_names_the_checkpoint(data_dir, tmp_path, monkeypatch):
    import walsrec._files as files

    def short_write(f, array, allow_pickle=False):
        raise OSError("106688 requested and 76768 written")

    monkeypatch.setattr(files.np, "save", short_write)
    with pytest.raises(
        OSError,
        match=r"cannot write the checkpoint \(106688 requested and 76768 "
        r"written: a short write, is the file system full\?\)",
    ) as info:
        from walsrec.training.checkpoints import write_checkpoint

        write_checkpoint(tmp_path, 2, np.ones((2, 2)), np.ones((2, 2)), {"step": 2}, keep=1)
    assert info.value.filename == str(tmp_path / "step-000000002")
