"""``walsrec update``: new interactions into a trained model, exactly and crash-safe."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow.csv as pcsv
import pytest

from walsrec.cli.main import main
from walsrec.data.prepare import load_prepared, prepare
from walsrec.datasets import generate_visits
from walsrec.errors import InvalidParameterError
from walsrec.serving.export import list_exports, read_export
from walsrec.training.checkpoints import as_array, latest_checkpoint
from walsrec.training.loop import train
from walsrec.training.update import touched, update

COLUMNS = dict(user_col="visitor_id", item_col="article_id", rating_col="session_duration")
TRAIN = dict(embedding_dim=6, sweeps=4, dtype="float64", threads=1, seed=2, quiet=True)


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    """Visits in time order cut 80/20: the first part prepared (with an eval split) and
    trained on, the rest appended (new visitors and articles among them)."""
    root = tmp_path_factory.mktemp("update")
    t = generate_visits(12_000, n_users=500, n_items=200, seed=4).sort_by("timestamp")
    cut = int(t.num_rows * 0.8)
    pcsv.write_csv(t.slice(0, cut), root / "old.csv")
    pcsv.write_csv(t.slice(cut), root / "new.csv")
    with open(root / "new.csv", "a") as f:  # articles published after the cut
        f.write("".join(f"v{u:03d},fresh{u % 3},30.0,1790000000\n" for u in range(0, 60, 4)))
    prepare(str(root / "old.csv"), root / "data", **COLUMNS, rating_transform="scaled-median",
            eval_fraction=0.2, split="user")  # fmt: skip
    prepare(str(root / "new.csv"), root / "data2", append_to=root / "data")
    settings = {k: v for k, v in TRAIN.items() if k != "quiet"}
    train(data=str(root / "data"), model_dir=str(root / "model"), regularization="auto",
          confidence="bm25", **settings)  # fmt: skip
    return root


def _copy(flow, tmp_path, name="model"):
    shutil.copytree(flow / "model", tmp_path / name)
    return tmp_path / name


def test_an_update_solves_the_touched_rows_as_partial_fit_and_exports_them(flow, tmp_path):
    model_dir = _copy(flow, tmp_path)
    before = list_exports(model_dir / "export")
    ckpt = latest_checkpoint(model_dir / "checkpoints")
    result = update(model_dir, flow / "data2")
    old, new = load_prepared(flow / "data"), load_prepared(flow / "data2")
    assert result.new_users == len(new.train.users) - len(old.train.users) > 0
    assert result.new_items == len(new.train.items) - len(old.train.items) > 0
    rows, cols = touched(old.train.user_items, new.train.user_items)
    assert (result.users_solved, result.items_solved) == (len(rows), len(cols))
    assert len(rows) < new.train.user_items.shape[0]  # not everyone
    exports = list_exports(model_dir / "export")
    assert len(exports) == len(before) + 1
    got = read_export(exports[-1])
    assert got.users.to_list() == new.train.users.to_list()
    # the oracle: the trained model's estimator (λ from regularization.json, w0 and α as
    # trained), the checkpoint's factors, partial_fit on the touched users and items
    from walsrec.model.params import estimator_from_settings
    from walsrec.training.config import TrainConfig, read_saved_config
    from walsrec.training.loop import recorded_regularization

    settings = read_saved_config(model_dir)
    settings["regularization"] = recorded_regularization(model_dir)
    defaults = TrainConfig().to_dict()
    trained = estimator_from_settings(settings, old.train.user_items, defaults=defaults)
    settings.update(unobserved_weight=trained.unobserved_weight, alpha=trained.alpha)
    oracle = estimator_from_settings(settings, new.train.user_items, defaults=defaults)
    oracle.user_factors_ = as_array(ckpt.user_factors).copy()
    oracle.item_factors_ = as_array(ckpt.item_factors).copy()
    oracle.partial_fit(new.train.user_items, rows=rows, cols=cols)
    np.testing.assert_allclose(got.user_factors, oracle.user_factors_, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got.item_factors, oracle.item_factors_, rtol=0, atol=1e-9)
    assert got.meta["hyperparameters"]["regularization"] == settings["regularization"]
    # the new checkpoint says which data it includes; a second run only sees that
    again = update(model_dir, flow / "data2")
    assert again.already and again.export_path == exports[-1]
    assert list_exports(model_dir / "export") == exports


def test_nothing_new_changes_nothing(flow, tmp_path):
    model_dir = _copy(flow, tmp_path)
    before = list_exports(model_dir / "export")
    ckpt = latest_checkpoint(model_dir / "checkpoints")
    (tmp_path / "empty.csv").write_text("visitor_id,article_id,session_duration\n")
    prepare(str(tmp_path / "empty.csv"), tmp_path / "same", append_to=flow / "data")
    result = update(model_dir, tmp_path / "same")
    assert result.users_solved == result.items_solved == 0
    assert result.export_path == before[-1]  # the export it had, no new one
    assert list_exports(model_dir / "export") == before
    after = latest_checkpoint(model_dir / "checkpoints")
    assert after.path == ckpt.path
    np.testing.assert_array_equal(as_array(after.user_factors), as_array(ckpt.user_factors))


def test_a_crash_before_the_export_leaves_the_old_one_and_a_rerun_finishes_the_same(
    flow, tmp_path, monkeypatch
):
    whole = _copy(flow, tmp_path, "whole")
    update(whole, flow / "data2")
    crashed = _copy(flow, tmp_path, "crashed")
    before = list_exports(crashed / "export")
    import walsrec.serving.export as export_module

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as a process killed between checkpoint and export

    monkeypatch.setattr(export_module, "write_export", killed)
    with pytest.raises(KeyboardInterrupt):
        update(crashed, flow / "data2")
    assert list_exports(crashed / "export") == before  # the previous export still serves
    monkeypatch.undo()
    result = update(crashed, flow / "data2")
    assert result.already
    a = read_export(list_exports(whole / "export")[-1])
    b = read_export(list_exports(crashed / "export")[-1])
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)


def test_data_that_does_not_extend_the_models_is_refused(flow, tmp_path):
    model_dir = _copy(flow, tmp_path)
    (tmp_path / "other.csv").write_text("visitor_id,article_id,session_duration\nzz,a1,3\n")
    prepare(str(tmp_path / "other.csv"), tmp_path / "other", **COLUMNS)
    with pytest.raises(
        InvalidParameterError, match=r"users\.txt, line 1: 'zz' where the model's data has"
    ):
        update(model_dir, tmp_path / "other")
    with pytest.raises(InvalidParameterError, match="'sweeps' parameter of update must be"):
        update(model_dir, flow / "data2", sweeps=0)


def test_the_cli_updates_and_serves_a_new_visitor(flow, tmp_path, capsys):
    model_dir = _copy(flow, tmp_path)
    code = main(["update", "--model-dir", str(model_dir), "--data", str(flow / "data2"),
                 "--sweeps", "2", "--full-sweeps", "1", "--quiet"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "(2 pass(es), 1 full sweep(s))" in out and "ndcg@10" in out
    old, new = load_prepared(flow / "data"), load_prepared(flow / "data2")
    newcomer = new.train.users.id(len(old.train.users))
    assert main(["recommend", "--model", str(model_dir), "--user", newcomer, "--k", "3"]) == 0
    out, _ = capsys.readouterr()
    assert f"Top 3 items recommended for user {newcomer!r}" in out


@pytest.mark.slow
def test_kill_9_at_any_point_then_a_rerun_gives_the_uninterrupted_model(flow, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    whole = _copy(flow, tmp_path, "whole")
    update(whole, flow / "data2")
    want = read_export(list_exports(whole / "export")[-1])
    args = [sys.executable, "-m", "walsrec", "update", "--data", str(flow / "data2"), "--quiet"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # the command starts in about 0.7 s and updates in about 0.5 s on the development machine
    for i, delay in enumerate((0.7, 0.85, 1.0, 1.15, 1.4)):
        model_dir = _copy(flow, tmp_path, f"killed{i}")
        before = list_exports(model_dir / "export")
        proc = subprocess.Popen([*args, "--model-dir", str(model_dir)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        exports = list_exports(model_dir / "export")
        assert exports[: len(before)] == before  # nothing served before is lost
        read_export(exports[-1])  # the newest export is whole: the old one, or the new
        done = subprocess.run([*args, "--model-dir", str(model_dir)], env=env,
                              capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr
        got = read_export(list_exports(model_dir / "export")[-1])
        np.testing.assert_array_equal(got.user_factors, want.user_factors)
        np.testing.assert_array_equal(got.item_factors, want.item_factors)


def test_a_running_service_picks_the_update_up(flow, tmp_path):
    from fastapi.testclient import TestClient

    from walsrec.serving.app import ServiceSettings, create_app

    model_dir = _copy(flow, tmp_path)
    old, new = load_prepared(flow / "data"), load_prepared(flow / "data2")
    newcomer = new.train.users.id(len(old.train.users))
    with TestClient(create_app(ServiceSettings(str(model_dir), poll_interval=0))) as c:
        before = c.get("/model").json()["version"]
        assert c.get(f"/recommendations/{newcomer}?k=3").status_code == 404  # unknown yet
        result = update(model_dir, flow / "data2")
        assert c.app.state.watcher.check_once() is True
        assert c.get("/model").json()["version"] == int(result.export_path.name) != before
        answer = c.get(f"/recommendations/{newcomer}?k=3").json()
        assert answer["fallback"] is False and len(answer["items"]) == 3


def test_killed_after_the_checkpoint_then_the_data_prepared_again_still_exports(
    flow, tmp_path, monkeypatch
):
    whole = _copy(flow, tmp_path, "whole")
    update(whole, flow / "data2")
    crashed = _copy(flow, tmp_path, "crashed")
    shutil.copytree(flow / "data2", tmp_path / "data2")
    import walsrec.training.update as update_module

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # after the checkpoint, before metrics and export

    monkeypatch.setattr(update_module, "_append_metrics", killed)
    with pytest.raises(KeyboardInterrupt):
        update(crashed, tmp_path / "data2")
    monkeypatch.undo()
    # the same increment prepared again into the same place (a pipeline's rerun does so)
    (tmp_path / "again.csv").write_text((flow / "new.csv").read_text())
    prepare(str(tmp_path / "again.csv"), tmp_path / "data2", append_to=flow / "data",
            overwrite=True)  # fmt: skip
    result = update(crashed, tmp_path / "data2")
    got = read_export(result.export_path)
    want = read_export(list_exports(whole / "export")[-1])
    np.testing.assert_array_equal(got.user_factors, want.user_factors)
    assert len(list_exports(crashed / "export")) == len(list_exports(whole / "export"))


def test_a_model_trained_from_a_relative_path_updates_from_anywhere(flow, tmp_path, monkeypatch):
    shutil.copytree(flow / "data", tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    train(data="data", model_dir="m", sweeps=2, embedding_dim=3, regularization=0.1, threads=1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = update(tmp_path / "m", flow / "data2")
    assert result.new_users > 0 and result.export_path is not None


def test_a_hybrids_update_refits_b_on_the_new_data_with_its_weights_frozen(flow, tmp_path):
    import json

    from walsrec.model import _reference as ref
    from walsrec.serving.model import load_model

    settings = {k: v for k, v in TRAIN.items() if k != "quiet"}
    model_dir = tmp_path / "hybrid"
    train(data=str(flow / "data"), model_dir=str(model_dir), regularization=0.05,
          item_item="on", blend_weight=0.4, item_regularization=15.0, **settings)  # fmt: skip
    before = load_model(model_dir)
    assert before.hybrid and before.blend_weight == 0.4
    result = update(model_dir, flow / "data2")
    after = load_model(result.export_path)
    new = load_prepared(flow / "data2").train.user_items
    assert after.hybrid and after.blend_weight == 0.4
    assert after.item_weights.shape == (new.shape[1], new.shape[1]) != before.item_weights.shape
    want = ref.ease_weights(new, 15.0)
    np.testing.assert_allclose(after.item_weights, want, atol=1e-5 * np.abs(want).max())
    meta = json.loads((result.export_path / "model.json").read_text())
    assert meta["item_item"]["regularization"] == 15.0
    assert after.recommend(after.users.id(after.n_users - 1), k=3).items  # a new visitor
