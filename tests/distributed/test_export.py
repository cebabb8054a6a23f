"""Checkpoints and exports written by the workers as row blocks; read back everywhere."""

from __future__ import annotations

import json

import numpy as np
import pytest

from walsrec.distributed.wals import DaskWALS
from walsrec.errors import DataFormatError, InvalidParameterError
from walsrec.serving.export import list_exports, read_export, read_export_rows
from walsrec.serving.model import Recommender, load_model
from walsrec.training.loop import train


def _settings(data_dir, model_dir, **extra):
    settings = dict(
        data=str(data_dir),
        model_dir=str(model_dir),
        embedding_dim=5,
        dtype="float32",
        item_item="off",  # EASE is fitted on one machine only
        threads=1,
        seed=4,
        sweeps=2,
        regularization=0.5,
    )
    return {**settings, **extra}


@pytest.fixture(scope="module")
def trained(client, data_dir, tmp_path_factory):
    """The same model trained on one machine and on the cluster, the cluster never
    gathering a factor matrix into this process nor this process reading the matrices or
    the user vocabulary."""
    import walsrec.data.native as native
    import walsrec.data.prepare as prepare
    import walsrec.training.inputs as inputs
    from walsrec.data.vocabulary import Vocabulary

    root = tmp_path_factory.mktemp("export")
    one = train(**_settings(data_dir, root / "one"))
    patch = pytest.MonkeyPatch()

    def no_gathering(self, which):
        raise AssertionError(f"the client gathered the {which} factors")

    def refuse(what):
        def call(*args, **kwargs):
            raise AssertionError(f"the client read {what}")

        return call

    load_vocab = Vocabulary.load.__func__

    def no_users(cls, path, name="ids"):
        assert "users" not in str(path), f"the client read {path}"
        return load_vocab(cls, path, name)

    patch.setattr(DaskWALS, "_gather_factors", no_gathering)
    patch.setattr(native, "load_csr", refuse("a native matrix"))
    patch.setattr(inputs, "load_csr", refuse("a native matrix"))
    patch.setattr(prepare, "load_prepared", refuse("the DATA_DIR"))
    patch.setattr(Vocabulary, "load", classmethod(no_users))
    try:
        on_dask = train(**_settings(data_dir, root / "dask", dask=client.scheduler.address))
    finally:
        patch.undo()
    return one, on_dask


def test_item_item_auto_is_off_on_a_cluster_and_says_why(client, data_dir, tmp_path):
    settings = _settings(data_dir, tmp_path / "m", dask=client.scheduler.address, sweeps=1)
    on_dask = train(**{**settings, "item_item": "auto"})
    record = json.loads((on_dask.model_dir / "item_item.json").read_text())
    assert record["item_item"] is False
    assert record["reason"] == "off: EASE is fitted on one machine, not on Dask"
    assert "item_item" not in json.loads((on_dask.export_path / "model.json").read_text())


def test_checkpoints_and_exports_of_the_workers_are_row_blocks(trained):
    _, on_dask = trained
    ckpt = on_dask.model_dir / "checkpoints" / "step-000000004"
    for name in ("user_factors", "item_factors"):
        manifest = json.loads((ckpt / name / "manifest.json").read_text())
        assert manifest["kind"] == "dense" and len(manifest["blocks"]) == 4  # 2 per worker
        assert not (ckpt / f"{name}.npy").exists()
    export = on_dask.export_path
    assert json.loads((export / "model.json").read_text())["format_version"] == 2
    for name in ("user_factors", "item_factors", "vocab/users", "train/user_items"):
        assert (export / name / "manifest.json").is_file(), name


def test_an_export_of_the_workers_holds_what_one_machine_exports(trained):
    one, on_dask = trained
    a, b = read_export(one.export_path), read_export(on_dask.export_path)
    assert a.users == b.users and a.items == b.items
    assert (a.user_items != b.user_items).nnz == 0
    assert b.user_items.dtype == a.user_items.dtype
    np.testing.assert_array_equal(
        b.item_popularity, np.bincount(a.user_items.indices, minlength=a.user_items.shape[1])
    )
    for x, y in ((a.user_factors, b.user_factors), (a.item_factors, b.item_factors)):
        assert x.dtype == y.dtype == np.float32
        np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-5 * np.abs(x).max())
    assert b.meta["counts"] == a.meta["counts"]
    # "auto" α and w0 resolved on the workers: the same, to the order of the sums
    ha, hb = a.meta["hyperparameters"], b.meta["hyperparameters"]
    assert ha.keys() == hb.keys()
    for key, value in ha.items():
        if isinstance(value, float):
            assert hb[key] == pytest.approx(value, rel=1e-12), key
        else:
            assert hb[key] == value, key


def test_the_baseline_and_evaluations_on_the_workers_equal_one_machine(trained):
    one, on_dask = trained
    pa, pb = one.baseline, on_dask.baseline
    assert pa["model"] == pb["model"] == "most-popular" and pa.keys() == pb.keys()
    for key, value in pa.items():
        if isinstance(value, float):
            assert pb[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    for ra, rb in zip(one.evaluations, on_dask.evaluations, strict=True):
        for key in ("loss", "ndcg@10", "auc"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-3), key


def test_load_model_serves_an_export_of_the_workers(trained):
    one, on_dask = trained
    a, b = load_model(one.export_path), load_model(on_dask.export_path)
    np.testing.assert_array_equal(b.item_popularity, a.item_popularity)
    user = a.users.id(7)
    ra, rb = a.recommend(user, k=5), b.recommend(user, k=5)
    np.testing.assert_allclose(rb.scores, ra.scores, rtol=1e-4)
    new = [(a.items.id(3), 1.0), (a.items.id(11), 2.0)]
    np.testing.assert_allclose(
        b.recommend_for_interactions(new, k=5).scores,
        a.recommend_for_interactions(new, k=5).scores,
        rtol=1e-3,
    )


def test_a_rerun_with_nothing_to_do_exports_nothing_new(client, trained, data_dir):
    _, on_dask = trained
    before = list_exports(on_dask.model_dir / "export")
    again = train(**_settings(data_dir, on_dask.model_dir, dask=client.scheduler.address))
    assert again.export_path == before[-1]
    assert list_exports(on_dask.model_dir / "export") == before


@pytest.mark.parametrize("which", ["one", "dask"])
def test_read_export_rows_equals_the_slices_of_the_whole(trained, which):
    result = trained[0] if which == "one" else trained[1]
    whole = read_export(result.export_path)
    pop = np.bincount(whole.user_items.indices, minlength=whole.user_items.shape[1])
    n = whole.user_factors.shape[0]
    for lo, hi in [(0, n), (0, 1), (149, 151), (n - 1, n), (300, 300)]:
        part = read_export_rows(result.export_path, lo, hi)
        assert part.rows == (lo, hi)
        np.testing.assert_array_equal(part.user_factors, whole.user_factors[lo:hi])
        np.testing.assert_array_equal(part.item_factors, whole.item_factors)
        assert part.users.to_list() == whole.users.to_list()[lo:hi]
        assert (part.user_items != whole.user_items[lo:hi]).nnz == 0
        np.testing.assert_array_equal(part.item_popularity, pop)
    with pytest.raises(InvalidParameterError, match=rf"Users 10:{n + 1} are outside the {n} users"):
        read_export_rows(result.export_path, 10, n + 1)


def test_a_recommender_of_some_users_ranks_them_but_cannot_fold_in(trained):
    _, on_dask = trained
    whole = load_model(on_dask.export_path)
    part = Recommender(read_export_rows(on_dask.export_path, 100, 200))
    user = whole.users.id(150)
    assert part.recommend(user, k=5).items == whole.recommend(user, k=5).items
    with pytest.raises(InvalidParameterError, match=r"holds users 100:200 of .* only"):
        part.recommend_for_interactions([(whole.items.id(0), 1.0)])


def test_predict_dask_on_an_export_of_the_workers_equals_one_file(client, trained, tmp_path):
    from walsrec.distributed.predict import predict_dask
    from walsrec.serving.predict import predict

    _, on_dask = trained
    predict(on_dask.export_path, tmp_path / "all.csv", k=4)
    info = predict_dask(client, on_dask.export_path, tmp_path / "shards", k=4, partitions=3)
    lines = []
    for shard in info["shards"]:
        lines += open(shard).read().splitlines()[1:]
    assert lines == (tmp_path / "all.csv").read_text().splitlines()[1:]


def test_an_altered_factor_block_of_an_export_is_refused(trained, tmp_path):
    import shutil

    _, on_dask = trained
    copy = tmp_path / "export"
    shutil.copytree(on_dask.export_path, copy)
    block = copy / "item_factors" / "block-00001.npy"
    raw = bytearray(block.read_bytes())
    raw[-1] ^= 0x10
    block.write_bytes(bytes(raw))
    with pytest.raises(DataFormatError, match=r"item_factors/block-00001.npy: its SHA-256 differs"):
        load_model(copy)
    (copy / "train" / "user_items" / "manifest.json").unlink()
    with pytest.raises(DataFormatError, match=r"user_items/manifest.json: missing"):
        read_export_rows(copy, 0, 10)


def test_early_stopping_on_dask_exports_the_best_checkpoint(client, data_dir, tmp_path):
    common = dict(sweeps=6, eval_every=1, early_stopping_metric="ndcg@10", patience=1)
    one = train(**_settings(data_dir, tmp_path / "one", **common))
    on_dask = train(
        **_settings(data_dir, tmp_path / "dask", **common, dask=client.scheduler.address)
    )
    assert (on_dask.model_dir / "checkpoints" / "best" / "user_factors" / "manifest.json").is_file()
    a, b = read_export(one.export_path), read_export(on_dask.export_path)
    assert b.meta["training"]["exported_step"] == a.meta["training"]["exported_step"]
    # the test is about something: the best model is not the last one trained
    assert b.meta["training"]["exported_step"] < on_dask.steps
    np.testing.assert_allclose(b.user_factors, a.user_factors, rtol=1e-4, atol=1e-5)


def test_evaluate_export_on_the_workers_equals_one_machine(client, trained, data_dir):
    from walsrec.evaluation import evaluate_export

    one, on_dask = trained
    here = evaluate_export(one.export_path, data_dir, k=10, ease=False)
    there = evaluate_export(on_dask.export_path, data_dir, k=10, client=client)
    assert there["users_evaluated"] == here["users_evaluated"] > 0
    assert there["model"].keys() == here["model"].keys()
    for key, value in here["model"].items():
        assert there["model"][key] == pytest.approx(value, rel=1e-3), key
    for key, value in here["most-popular"].items():
        assert there["most-popular"][key] == pytest.approx(value, rel=1e-9), key
    # a single-machine export evaluates on the workers too (its .npy factors)
    again = evaluate_export(one.export_path, data_dir, k=10, client=client)
    assert again["model"] == pytest.approx(here["model"], rel=1e-9)
    with pytest.raises(InvalidParameterError, match=r"'ease' parameter of evaluate_export"):
        evaluate_export(one.export_path, data_dir, ease=True, client=client)


def test_evaluate_on_the_workers_refuses_another_datasets_model(
    client, trained, data_dir, tmp_path
):
    import shutil

    from walsrec.evaluation import evaluate_export

    _, on_dask = trained
    # the same matrices, other user ids: same sizes, different vocabularies
    shutil.copytree(data_dir, tmp_path / "data")
    users = (tmp_path / "data" / "vocab" / "users.txt").read_text().splitlines()
    (tmp_path / "data" / "vocab" / "users.txt").write_text("".join(f"x{u}\n" for u in users))
    with pytest.raises(DataFormatError, match=r"different users vocabularies \(the same number"):
        evaluate_export(on_dask.export_path, tmp_path / "data", client=client)


def test_the_command_line_predicts_and_evaluates_on_dask(
    client, trained, data_dir, tmp_path, capsys
):
    from walsrec.cli import main

    _, on_dask = trained
    address = client.scheduler.address
    code = main(
        ["predict", "--model", str(on_dask.model_dir), "--out", str(tmp_path / "top"), "--k", "3",
         "--dask", address, "--partitions", "3"]
    )  # fmt: skip
    assert code == 0
    assert "Wrote 3 shards to" in capsys.readouterr().out
    assert len(list((tmp_path / "top").glob("part-*-of-00003.csv"))) == 3
    code = main(
        ["evaluate", "--model", str(on_dask.model_dir), "--data", str(data_dir), "--dask", address,
         "--json"]
    )  # fmt: skip
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["users_evaluated"] > 0 and "ease" not in result
    code = main(
        ["predict", "--model", str(on_dask.model_dir), "--out", str(tmp_path / "u"),
         "--users", str(tmp_path / "ids.txt"), "--dask", address]
    )  # fmt: skip
    assert code == 2
    assert "--users cannot be combined with --dask" in capsys.readouterr().err
    code = main(
        ["evaluate", "--model", str(on_dask.model_dir), "--data", str(data_dir), "--ease", "yes",
         "--dask", address]
    )  # fmt: skip
    assert code == 2
    assert "--ease yes cannot be combined with --dask" in capsys.readouterr().err
    code = main(
        ["evaluate", "--model", str(on_dask.model_dir), "--data", str(data_dir), "--dask",
         "local:0"]
    )  # fmt: skip
    assert code == 2
    assert "The 'dask' option of evaluate must be 'local:N'" in capsys.readouterr().err


def test_a_vocabulary_is_copied_streaming_and_its_lines_counted(tmp_path):
    from walsrec.distributed._tasks import copy_vocabulary

    (tmp_path / "ids.txt").write_bytes(b"a\nb\nc")  # no newline after the last id
    assert copy_vocabulary(str(tmp_path / "ids.txt"), str(tmp_path / "out" / "v.txt"), 3) == 3
    assert (tmp_path / "out" / "v.txt").read_bytes() == b"a\nb\nc\n"
    with pytest.raises(DataFormatError, match=r"ids.txt: 3 lines where the model has 4 ids"):
        copy_vocabulary(str(tmp_path / "ids.txt"), str(tmp_path / "w.txt"), 4)
    assert not (tmp_path / "w.txt").exists() and not list(tmp_path.glob(".w.txt*"))
    copy_vocabulary(None, str(tmp_path / "n.txt"), 70_000)
    assert (tmp_path / "n.txt").read_text().splitlines() == [str(i) for i in range(70_000)]


def test_train_on_dask_checks_the_vocabularies_on_the_workers(client, data_dir, tmp_path):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    users = (copy / "vocab" / "users.txt").read_text().splitlines()
    twice = [*users[:3], users[1], *users[4:]]
    (copy / "vocab" / "users.txt").write_text("".join(f"{u}\n" for u in twice))
    with pytest.raises(DataFormatError, match=rf"users.txt: id '{users[1]}' appears more than"):
        train(**_settings(copy, tmp_path / "m", dask=client.scheduler.address))
    (copy / "vocab" / "users.txt").write_text("".join(f"{u}\n" for u in users[:-1]))
    with pytest.raises(DataFormatError, match=r"users.txt: 59\d ids where the training matrix"):
        train(**_settings(copy, tmp_path / "m", dask=client.scheduler.address))


def test_predict_dask_refuses_to_write_into_the_model(client, trained):
    from walsrec.distributed.predict import predict_dask

    _, on_dask = trained
    with pytest.raises(InvalidParameterError, match=r"'out_dir' argument of predict_dask must"):
        predict_dask(client, on_dask.model_dir, on_dask.model_dir / "top")


def test_predict_dask_serves_the_hybrid_as_one_file(client, trained, data_dir, tmp_path):
    """An export with EASE's weights (trained on one machine): each task's users are
    ranked by the blend, as batch prediction in one process ranks them."""
    from tests._exports import with_item_item
    from walsrec.distributed.predict import predict_dask
    from walsrec.model.ease import EASE
    from walsrec.serving.model import load_model
    from walsrec.serving.predict import predict

    one, _ = trained
    weights = EASE(5.0).fit(read_export(one.export_path).user_items).weights_
    path = with_item_item(
        one.export_path, tmp_path / "model", weights, beta=0.7, regularization=5.0
    )
    predict(path, tmp_path / "all.csv", k=4)
    info = predict_dask(client, path, tmp_path / "shards", k=4, partitions=3)
    lines = []
    for shard in info["shards"]:
        lines += open(shard).read().splitlines()[1:]
    assert lines == (tmp_path / "all.csv").read_text().splitlines()[1:]
    from walsrec.evaluation import evaluate_export

    with pytest.raises(InvalidParameterError, match=r"blends WALS with EASE's item-item weights"):
        evaluate_export(path, data_dir, client=client)
    model = load_model(path)
    first = model.recommend(model.users.id(0), k=4)
    plain = load_model(one.export_path).recommend(model.users.id(0), k=4)
    assert first.items != plain.items or not np.allclose(first.scores, plain.scores)
