"""TFRecord shards read by the workers (one task per shard), never by the client."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fuzz._mutations import example, frame
from walsrec.data.prepare import load_prepared
from walsrec.data.tfrecord import read_tfrecords, write_tfrecords
from walsrec.distributed.sources import tfrecord_source
from walsrec.distributed.wals import DaskWALS
from walsrec.errors import DataFormatError, InvalidParameterError
from walsrec.model.wals import WALS


@pytest.fixture(scope="module")
def user_items(data_dir):
    return load_prepared(data_dir).train.user_items


@pytest.fixture(scope="module")
def records(user_items, tmp_path_factory):
    """items_for_user in 3 shards, users_for_item in 2 (one of them GZIP)."""
    d = tmp_path_factory.mktemp("records")
    write_tfrecords(user_items, d / "items_for_user", shards=3)
    write_tfrecords(user_items.T.tocsr(), d / "users_for_item", shards=2, compression="gzip")
    return d


def _rel(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(a).max())


def test_fit_from_shards_equals_one_machine(client, records, user_items):
    n_users, n_items = user_items.shape
    src = tfrecord_source(records / "items_for_user-*", str(records / "users_for_item-*"))
    assert len(src.rows_files) == 3 and len(src.cols_files) == 2
    params = dict(embedding_dim=5, sweeps=2, random_state=4, dtype="float64", n_jobs=1)
    # the single-machine reader of the same files
    m = read_tfrecords(src.rows_files, vocab_size=n_items, n_rows=n_users)
    assert (m != user_items).nnz == 0
    ref = WALS(**params).fit(m)
    model = DaskWALS(client=client, partitions=3, ship_whole_above=np.inf, **params).fit(src)
    # the shape inferred on the workers (the generated data has no empty last row/column)
    assert model.source_.shape == (n_users, n_items) and model.source_.nnz == m.nnz
    assert _rel(ref.user_factors_, model.user_factors_) < 1e-6
    assert _rel(ref.item_factors_, model.item_factors_) < 1e-6
    np.testing.assert_allclose(model.loss_, ref.loss_, rtol=1e-6)


def test_worker_killed_while_fitting_from_shards(own_client, records, user_items):
    """The partitions assembled from shards (and BM25's statistics) depend on parsing tasks
    whose results were dropped after loading: a killed worker's partitions are rebuilt
    from the files, and the result is still the one machine's."""
    import os
    import signal
    import threading

    client = own_client  # see the fixture: this test kills a worker

    src = tfrecord_source(records / "items_for_user-*", records / "users_for_item-*",
                          *user_items.shape)  # fmt: skip
    params = dict(embedding_dim=4, sweeps=3, random_state=5, dtype="float64", n_jobs=1)
    params.update(confidence="bm25", targets="binary")
    ref = WALS(**params).fit(user_items)
    killed = []

    def kill_one(sweep, model):
        if sweep == 1:
            victim = sorted(client.run(os.getpid).items())[-1][1]
            threading.Timer(0.02, os.kill, (victim, signal.SIGKILL)).start()
            killed.append(victim)

    model = DaskWALS(client=client, partitions=4, callback=kill_one, **params).fit(src)
    assert killed and killed[0] not in client.run(os.getpid).values()
    assert _rel(ref.user_factors_, model.user_factors_) < 1e-6
    np.testing.assert_allclose(model.loss_, ref.loss_, rtol=1e-6)


def test_shard_errors_name_the_file_and_record(client, records, user_items, tmp_path):
    n_users, n_items = user_items.shape
    rows, cols = records / "items_for_user-*", records / "users_for_item-*"
    model = DaskWALS(3, client=client, partitions=2)
    # swapped: the users_for_item indices run past the items vocabulary
    with pytest.raises(
        DataFormatError,
        match=r"users_for_item-00000-of-00002.tfrecord.gz: record 0 \(0-based\): column index "
        r"\d+ in 'indices' is >= vocab_size=",
    ):
        model.open(tfrecord_source(cols, rows, n_users, n_items))
    # a corrupt byte in a shard: the reader's CRC message, with the file and record
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in records.glob("items_for_user-*"):
        (bad / f.name).write_bytes(f.read_bytes())
    target = bad / "items_for_user-00001-of-00003.tfrecord"
    raw = bytearray(target.read_bytes())
    raw[40] ^= 0xFF
    target.write_bytes(bytes(raw))
    with pytest.raises(
        DataFormatError,
        match=r"items_for_user-00001-of-00003.tfrecord: record 0 \(0-based\), at byte 0: "
        "data CRC mismatch",
    ):
        model.open(tfrecord_source(bad / "items_for_user-*", cols, n_users, n_items))
    # the same user in two shards (shard 2 repeats shard 0's first user)
    dup = tmp_path / "dup"
    first = user_items[:1]
    write_tfrecords(user_items, dup / "items_for_user", shards=2)
    write_tfrecords(first, dup / "items_for_user-extra")
    key = int(np.flatnonzero(np.diff(user_items.indptr))[0])
    with pytest.raises(
        DataFormatError,
        match=rf"items_for_user-extra-00000-of-00001.tfrecord: record 0 \(0-based\): duplicate "
        rf"key {key}, already the key of record 0 \(0-based\) of .*items_for_user-00000-of-00002",
    ):
        model.open(tfrecord_source(dup / "items_for_user-*", cols, n_users, n_items))
    # a key past num_rows
    with pytest.raises(DataFormatError, match=r"key \d+ is >= n_rows=10"):
        model.open(tfrecord_source(rows, cols, 10, n_items))
    # well-formed records of different matrices
    other = tmp_path / "other"
    changed = user_items.copy()
    changed.data[0] += 1.0
    write_tfrecords(changed, other / "items_for_user", shards=2)
    with pytest.raises(DataFormatError, match=r"do not hold the same matrix: .* swapped"):
        model.open(tfrecord_source(other / "items_for_user-*", cols, n_users, n_items))
    with pytest.raises(DataFormatError, match="no files match pattern"):
        tfrecord_source(tmp_path / "nothing-*", cols)
    with pytest.raises(InvalidParameterError, match="'num_rows' argument of tfrecord_source"):
        tfrecord_source(rows, cols, -1)


def test_write_native_dask_equals_save_csr(client, records, user_items, tmp_path):
    """The workers' native copy is byte for byte save_csr's of the single-machine reader's
    matrix, in both orientations; rows alone for held-out data."""
    from walsrec.data.native import save_csr
    from walsrec.distributed.write_native import write_native_dask

    n_users, n_items = user_items.shape
    rows, cols = records / "items_for_user-*", records / "users_for_item-*"
    src = tfrecord_source(rows, cols, n_users, n_items)
    got = write_native_dask(client, src, tmp_path / "w", "train", "train_t", partitions=3)
    assert got.shape == (n_users, n_items) and got.nnz == user_items.nnz
    save_csr(tmp_path / "ref", "train", read_tfrecords(rows, n_items, n_users))
    save_csr(tmp_path / "ref", "train_t", read_tfrecords(cols, n_users, n_items))
    for f in sorted((tmp_path / "ref").iterdir()):
        assert (tmp_path / "w" / f.name).read_bytes() == f.read_bytes(), f.name
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == sorted(
        p.name for p in (tmp_path / "ref").iterdir()
    )
    only_rows = tfrecord_source(rows, None, n_users, n_items)
    assert write_native_dask(client, only_rows, tmp_path / "r", "eval") is None
    assert (tmp_path / "r" / "eval.data.npy").read_bytes() == (
        tmp_path / "ref" / "train.data.npy"
    ).read_bytes()
    with pytest.raises(InvalidParameterError, match="must name users_for_item files"):
        DaskWALS(3, client=client).open(only_rows)


def test_cache_for_train_written_by_the_workers(client, data_dir, tmp_path, monkeypatch):
    """train's MODEL_DIR/cache of TFRecord inputs, written on the workers, is the cache
    load_training_data accepts: the client then parses no record."""
    import walsrec.data.tfrecord as tfr
    from walsrec.data.prepare import load_prepared
    from walsrec.training.config import load_config
    from walsrec.training.inputs import cache_tfrecords_dask, load_training_data

    d = data_dir / "train"
    cfg = load_config(
        model_dir=str(tmp_path / "m"),
        train_rows=str(d / "items_for_user-*"),
        train_cols=str(d / "users_for_item-*"),
        eval_rows=str(data_dir / "eval" / "items_for_user-*"),
    )
    assert cache_tfrecords_dask(client, cfg, tmp_path / "m")
    assert not cache_tfrecords_dask(client, cfg, tmp_path / "m")  # still valid

    def no_parsing(*args, **kwargs):
        raise AssertionError("the client parsed TFRecords")

    monkeypatch.setattr(tfr, "read_tfrecords", no_parsing)
    loaded = load_training_data(cfg, tmp_path / "m")
    prepared = load_prepared(data_dir)
    assert (loaded.train.user_items != prepared.train.user_items).nnz == 0
    assert (loaded.eval != prepared.eval.user_items).nnz == 0
    assert loaded.train.users.ids == prepared.train.users.ids
    # the workers evaluate against the cached held-out matrix
    from walsrec.distributed.evaluate import evaluate_dask
    from walsrec.distributed.wals import native_source
    from walsrec.metrics import evaluate

    model = DaskWALS(4, client=client, sweeps=1, random_state=0, n_jobs=1)
    model.fit(native_source(tmp_path / "m" / "cache", "train", "train_t"))
    got = evaluate_dask(model, tmp_path / "m" / "cache", name="eval", k=5)
    ref = evaluate(model.user_factors_, model.item_factors_, loaded.train.user_items,
                   loaded.eval, k=5)  # fmt: skip
    assert got == pytest.approx(ref, rel=1e-9)


def test_one_huge_key_without_sizes_is_an_error_before_any_allocation(client, tmp_path):
    """Issue 15 item 3 on the cluster: the shape inferred from the shards is bounded by the
    reader's rule, so a 74-byte shard with key 10**9 cannot make the workers allocate."""
    import scipy.sparse as sp

    m = sp.csr_matrix(([1.0], ([0], [3])), shape=(1, 5))
    write_tfrecords(m, tmp_path / "items_for_user")
    write_tfrecords(m.T.tocsr(), tmp_path / "users_for_item")
    shard = next(tmp_path.glob("items_for_user-*"))
    shard.write_bytes(frame([example(10**9, [3], [1.0])]))  # the same record, key 10**9
    model = DaskWALS(2, client=client, partitions=2)
    with pytest.raises(
        DataFormatError,
        match=r"items_for_user-00000-of-00001\.tfrecord \(its largest key\): key 1000000000 is "
        r"too large for n_rows to be taken from the records: without n_rows, keys must be < "
        r"1048592",
    ):
        model.open(
            tfrecord_source(tmp_path / "items_for_user-*", str(tmp_path / "users_for_item-*"))
        )


def test_the_old_name_of_the_train_cache_still_works_with_a_warning():
    import walsrec.distributed.sources as sources
    from walsrec.training.inputs import cache_tfrecords_dask

    with pytest.warns(DeprecationWarning, match=r"moved to walsrec\.training\.inputs"):
        assert sources.cache_tfrecords_dask is cache_tfrecords_dask


def test_the_old_places_of_moved_dask_names_still_work():
    import walsrec.distributed as package
    import walsrec.distributed.sources as sources
    import walsrec.distributed.wals as wals
    from walsrec.distributed.write_native import write_native_dask

    with pytest.warns(DeprecationWarning, match=r"moved to walsrec\.distributed\.write_native"):
        assert sources.write_native_dask is write_native_dask
    assert package.write_native_dask is write_native_dask
    # the native sources live in sources.py; the estimator's module still has them
    assert wals.native_source is sources.native_source is package.native_source
    assert wals.NativeSource is sources.NativeSource is package.NativeSource
