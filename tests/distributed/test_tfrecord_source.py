"""TFRecord shards read by the workers (one task per shard), never by the client."""

from __future__ import annotations

import numpy as np
import pytest

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


@pytest.mark.parametrize("sizes", [True, False])
def test_fit_from_shards_equals_one_machine(client, records, user_items, sizes):
    n_users, n_items = user_items.shape
    shape = (n_users, n_items) if sizes else (None, None)
    src = tfrecord_source(records / "items_for_user-*", str(records / "users_for_item-*"), *shape)
    assert len(src.rows_files) == 3 and len(src.cols_files) == 2
    params = dict(embedding_dim=5, sweeps=2, random_state=4, dtype="float64", n_jobs=1)
    # the single-machine reader of the same files (an empty last user or item would make
    # the inferred shape smaller; the generated data has none)
    m = read_tfrecords(src.rows_files, vocab_size=n_items, n_rows=n_users)
    assert (m != user_items).nnz == 0
    ref = WALS(**params).fit(m)
    model = DaskWALS(client=client, partitions=3, ship_whole_above=1.0, **params).fit(src)
    assert model.source_.shape == (n_users, n_items) and model.source_.nnz == m.nnz
    assert _rel(ref.user_factors_, model.user_factors_) < 1e-6
    assert _rel(ref.item_factors_, model.item_factors_) < 1e-6
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
