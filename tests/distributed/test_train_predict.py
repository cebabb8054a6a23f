from __future__ import annotations

import numpy as np
import pytest

from walsrec.errors import InvalidParameterError
from walsrec.serving.export import read_export
from walsrec.training.config import load_config
from walsrec.training.loop import train


def _settings(data_dir, model_dir, **extra):
    return dict(
        data=str(data_dir),
        model_dir=str(model_dir),
        embedding_dim=5,
        dtype="float64",
        threads=1,
        seed=4,
        targets="values",  # so that the evaluations include rmse (not for binary targets)
        # a number: λ auto on Dask has tests of its own (test_regularization.py)
        regularization=0.05,
        **extra,
    )


def test_train_on_dask_equals_one_machine_and_resumes(client, data_dir, tmp_path):
    address = client.scheduler.address
    one = train(**_settings(data_dir, tmp_path / "one", sweeps=3))
    first = train(**_settings(data_dir, tmp_path / "dask", sweeps=2, dask=address))
    assert first.steps == 4 and first.resumed_from_step is None
    # more sweeps on the same MODEL_DIR resume from the checkpoint, on the cluster
    again = train(**_settings(data_dir, tmp_path / "dask", sweeps=3, dask=address))
    assert again.resumed_from_step == 4 and again.steps == 6
    a, b = read_export(one.export_path), read_export(again.export_path)
    for x, y in ((a.user_factors, b.user_factors), (a.item_factors, b.item_factors)):
        assert np.abs(x - y).max() / np.abs(x).max() < 1e-6
    for ra, rb in zip(one.evaluations, again.evaluations, strict=True):
        assert rb["step"] == ra["step"]
        for key in ("loss", "rwse", "rmse", "ndcg@10"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-6)
    np.testing.assert_allclose(again.model.loss_, one.model.loss_, rtol=1e-6)


def test_dask_setting_is_checked(data_dir, tmp_path):
    with pytest.raises(InvalidParameterError, match="'local:N' with N an int >= 1"):
        load_config(**_settings(data_dir, tmp_path, dask="local:0"))


def test_train_steps_of_a_batch_on_dask_equal_one_machine(client, data_dir, tmp_path):
    """tf.contrib's --batch-size: each step solves a batch of rows or columns."""
    common = dict(batch_size=200, train_steps=9, eval_every=3)
    one = train(**_settings(data_dir, tmp_path / "one", **common))
    on_dask = train(**_settings(data_dir, tmp_path / "d", **common, dask=client.scheduler.address))
    assert on_dask.steps == one.steps == 9
    a, b = read_export(one.export_path), read_export(on_dask.export_path)
    assert np.abs(a.user_factors - b.user_factors).max() / np.abs(a.user_factors).max() < 1e-6
    for ra, rb in zip(one.evaluations, on_dask.evaluations, strict=True):
        assert rb["step"] == ra["step"]
        for key in ("loss", "rmse", "ndcg@10"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-6), key


@pytest.mark.parametrize("fmt", ["csv", "course"])
def test_predict_on_dask_shards_equal_the_single_file(client, data_dir, tmp_path, fmt):
    from walsrec.distributed.predict import predict_dask
    from walsrec.serving.predict import predict

    result = train(**_settings(data_dir, tmp_path / "m", sweeps=1, eval_every=1))
    predict(result.model_dir, tmp_path / "all.out", k=4, format=fmt)
    info = predict_dask(client, result.model_dir, tmp_path / "shards", k=4, format=fmt,
                        partitions=3)  # fmt: skip
    assert len(info["shards"]) == 3 and info["users"] == result.model.user_factors_.shape[0]
    single = (tmp_path / "all.out").read_text().splitlines()
    lines = []
    for shard in info["shards"]:
        text = open(shard).read().splitlines()
        lines += text[1:] if fmt == "csv" else text
    body = single[1:] if fmt == "csv" else single
    assert lines == body


def test_train_on_local_cluster_from_tfrecords(data_dir, tmp_path):
    """``dask="local:1"`` starts (and stops) its own cluster; TFRecord inputs reach the
    workers through MODEL_DIR/cache and its transpose."""
    records = dict(
        train_rows=str(data_dir / "train" / "items_for_user-*"),
        train_cols=str(data_dir / "train" / "users_for_item-*"),
    )
    common = dict(
        model_dir=str(tmp_path / "one"),
        embedding_dim=4,
        dtype="float64",
        threads=1,
        regularization=0.05,
    )
    one = train(**records, **common, sweeps=2)
    common["model_dir"] = str(tmp_path / "dask")
    on_dask = train(**records, **common, sweeps=2, dask="local:1")
    assert (tmp_path / "dask" / "cache" / "train_t.json").is_file()
    a, b = read_export(one.export_path), read_export(on_dask.export_path)
    assert np.abs(a.user_factors - b.user_factors).max() / np.abs(a.user_factors).max() < 1e-6
    np.testing.assert_allclose(on_dask.model.loss_, one.model.loss_, rtol=1e-6)


def test_train_dask_tfrecords_never_parsed_on_the_client(client, data_dir, tmp_path, monkeypatch):
    import walsrec.data.tfrecord as tfr

    records = dict(
        train_rows=str(data_dir / "train" / "items_for_user-*"),
        train_cols=str(data_dir / "train" / "users_for_item-*"),
        eval_rows=str(data_dir / "eval" / "items_for_user-*"),
        eval_cols=str(data_dir / "eval" / "users_for_item-*"),
    )
    # targets "values": the evaluations include rmse (not for binary targets)
    common = dict(
        embedding_dim=4,
        dtype="float64",
        threads=1,
        seed=3,
        sweeps=2,
        targets="values",
        regularization=0.05,
    )
    one = train(**records, **common, model_dir=str(tmp_path / "one"))

    def no_parsing(*args, **kwargs):
        raise AssertionError("the client parsed TFRecords")

    monkeypatch.setattr(tfr, "read_tfrecords", no_parsing)
    on_dask = train(
        **records, **common, model_dir=str(tmp_path / "d"), dask=client.scheduler.address
    )
    a, b = read_export(one.export_path), read_export(on_dask.export_path)
    assert np.abs(a.user_factors - b.user_factors).max() / np.abs(a.user_factors).max() < 1e-6
    for ra, rb in zip(one.evaluations, on_dask.evaluations, strict=True):
        for key in ("loss", "rmse", "ndcg@10", "auc", "coverage"):
            assert abs(rb[key] - ra[key]) <= 1e-6 * abs(ra[key]), key
