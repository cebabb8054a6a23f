from __future__ import annotations

import json
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from walsrec.data.prepare import load_prepared, prepare, transform_ratings
from walsrec.data.tfrecord import read_tfrecords
from walsrec.datasets import generate_visits
from walsrec.errors import DataFormatError, InvalidParameterError


def _csv(tmp_path, text, name="in.csv"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def _dense(data):
    return data.user_items.toarray()


def test_prepare_writes_the_documented_layout(tmp_path):
    src = _csv(tmp_path, "user,item,rating\n10,b,1\n2,a,2\n10,a,3\n")
    meta = prepare(src, tmp_path / "out", rating_col="rating", shards=2)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "train", "vocab"]
    assert (out / "vocab" / "users.txt").read_text() == "2\n10\n"  # numeric order
    assert (out / "vocab" / "items.txt").read_text() == "a\nb\n"
    names = sorted(p.name for p in (out / "train").iterdir())
    assert names == [
        "items_for_user-00000-of-00002.tfrecord",
        "items_for_user-00001-of-00002.tfrecord",
        "native",
        "users_for_item-00000-of-00002.tfrecord",
        "users_for_item-00001-of-00002.tfrecord",
    ]
    on_disk = json.loads((out / "meta.json").read_text())
    assert on_disk["format_version"] == 1
    assert on_disk["counts"]["train_interactions"] == 3 == meta["counts"]["train_interactions"]
    expected = np.array([[2, 0], [3, 1]], dtype=np.float32)
    data = load_prepared(out)
    np.testing.assert_array_equal(_dense(data.train), expected)
    assert data.eval is None
    rows = read_tfrecords(str(out / "train" / "items_for_user-*"), vocab_size=2)
    cols = read_tfrecords(str(out / "train" / "users_for_item-*"), vocab_size=2)
    np.testing.assert_array_equal(rows.toarray(), expected)
    np.testing.assert_array_equal(cols.toarray(), expected.T)
    # the native copy is memory-mapped, not read into memory
    assert _is_memory_mapped(data.train.user_items.data)
    assert _is_memory_mapped(data.train.item_users.indices)
    assert not _is_memory_mapped(load_prepared(out, mmap=False).train.user_items.data)


def _is_memory_mapped(arr) -> bool:
    import mmap

    while arr is not None:
        if isinstance(arr, np.memmap | mmap.mmap):
            return True
        arr = getattr(arr, "base", None)
    return False


def test_gzip_tfrecords(tmp_path):
    src = _csv(tmp_path, "user,item\na,x\nb,y\n")
    prepare(src, tmp_path / "out", compression="gzip")
    files = sorted(p.name for p in (tmp_path / "out" / "train").glob("*.gz"))
    assert files == [
        "items_for_user-00000-of-00001.tfrecord.gz",
        "users_for_item-00000-of-00001.tfrecord.gz",
    ]
    m = read_tfrecords(str(tmp_path / "out" / "train" / "items_for_user-*"), vocab_size=2)
    np.testing.assert_array_equal(m.toarray(), np.eye(2))


@pytest.mark.parametrize(
    "how,expected",
    [("sum", 6.0), ("max", 3.0), ("mean", 2.0), ("first", 1.0), ("last", 3.0)],
)
def test_duplicates(tmp_path, how, expected):
    src = _csv(tmp_path, "user,item,rating\na,x,1\nb,x,5\na,x,2\na,x,3\n")
    prepare(src, tmp_path / "o", rating_col="rating", duplicates=how)
    assert _dense(load_prepared(tmp_path / "o").train)[0, 0] == expected


def test_rating_transforms():
    v = np.array([1.0, 2.0, 4.0, 30.0])
    np.testing.assert_allclose(transform_ratings(v, "none")[0], v)
    np.testing.assert_allclose(transform_ratings(v, "binary")[0], 1.0)
    np.testing.assert_allclose(transform_ratings(v, "log1p")[0], np.log1p(v))
    out, info = transform_ratings(v, "scaled-median", scale=0.3, cap=1.0)
    assert info["median"] == 3.0
    np.testing.assert_allclose(out, [0.1, 0.2, 0.4, 1.0])  # 0.3*30/3 = 3 -> capped at 1
    with pytest.raises(
        DataFormatError,
        match=r"'scaled-median' needs a positive median rating; "
        r"the median is 0.0",
    ):
        transform_ratings(np.zeros(3), "scaled-median")


def test_scaled_median_applies_after_summing_duplicates(tmp_path):
    src = _csv(tmp_path, "u,i,d\na,x,10\na,x,10\nb,x,10\nc,y,40\n")
    prepare(
        src,
        tmp_path / "o",
        user_col="u",
        item_col="i",
        rating_col="d",
        rating_transform="scaled-median",
    )
    m = _dense(load_prepared(tmp_path / "o").train)
    # sums are 20, 10, 40 -> median 20 -> 0.3, 0.15, 0.6
    np.testing.assert_allclose(m, [[0.3, 0], [0.15, 0], [0, 0.6]], rtol=1e-6)


def test_min_interaction_filters_repeat_until_stable(tmp_path):
    # item z has 2 users; dropping user c (1 interaction) leaves z with 1 -> z dropped ->
    # user b then has 1 interaction -> dropped as well.
    rows = ["a,x", "a,y", "d,x", "d,y", "b,x", "b,z", "c,z"]
    src = _csv(tmp_path, "user,item\n" + "\n".join(rows) + "\n")
    meta = prepare(src, tmp_path / "o", min_user_interactions=2, min_item_interactions=2)
    data = load_prepared(tmp_path / "o")
    assert data.train.users.to_list() == ["a", "d"]
    assert data.train.items.to_list() == ["x", "y"]
    assert meta["counts"]["pairs_removed_by_filters"] == 3


def test_nothing_left_after_filtering_is_an_error_and_leaves_nothing(tmp_path):
    src = _csv(tmp_path, "user,item\na,x\nb,y\n")
    with pytest.raises(
        DataFormatError,
        match=r"No interactions are left after filtering "
        r"\(2 distinct pairs read; min_user_interactions=5",
    ):
        prepare(src, tmp_path / "o", min_user_interactions=5)
    assert sorted(os.listdir(tmp_path)) == ["in.csv"]


def _visits(tmp_path, n=20_000, seed=3):
    table = generate_visits(n, seed=seed)
    path = tmp_path / "visits.csv"
    pcsv.write_csv(table, path)
    return str(path), table


KW = dict(
    user_col="visitor_id",
    item_col="article_id",
    rating_col="session_duration",
    time_col="timestamp",
)


@pytest.mark.parametrize("split", ["random", "user", "time"])
def test_splits_hold_out_about_the_fraction_and_only_known_ids(tmp_path, split):
    src, _ = _visits(tmp_path)
    meta = prepare(src, tmp_path / "o", eval_fraction=0.2, split=split, seed=1, **KW)
    data = load_prepared(tmp_path / "o")
    train, ev = data.train.user_items, data.eval.user_items
    c = meta["counts"]
    total = c["train_interactions"] + c["eval_interactions"] + c["eval_dropped_not_in_train"]
    assert total == c["distinct_pairs"]
    assert 0.15 < (c["eval_interactions"] + c["eval_dropped_not_in_train"]) / total < 0.25
    assert train.multiply(ev).nnz == 0  # disjoint
    assert (np.diff(train.indptr) > 0).all()  # every user in the vocabulary is in train
    assert (np.bincount(train.indices, minlength=train.shape[1]) > 0).all()
    if split != "random":  # per-user splits never hold out a user's only interaction
        eval_users = np.flatnonzero(np.diff(ev.indptr))
        assert (np.diff(train.indptr)[eval_users] >= 1).all()


def test_time_split_holds_out_each_users_latest(tmp_path):
    # each user's clock differs, so every item is latest for someone and early for others
    rows = [f"u{u},i{i},{(i + 3 * u) % 10}" for u in range(4) for i in range(10)]
    src = _csv(tmp_path, "user,item,t\n" + "\n".join(rows) + "\n")
    prepare(src, tmp_path / "o", time_col="t", eval_fraction=0.3, split="time", seed=0)
    data = load_prepared(tmp_path / "o")
    ev = data.eval.user_items.tocsr()
    for u in range(4):
        held = sorted((int(data.train.items.id(j)[1:]) + 3 * u) % 10 for j in ev[u].indices)
        assert held == [7, 8, 9]  # floor(0.3 * 10 + U[0, 1)) = 3 latest


def test_user_split_keeps_single_interaction_users_in_train(tmp_path):
    rows = ["a,x", "b,y", "b,x", "c,y"]
    src = _csv(tmp_path, "user,item\n" + "\n".join(rows) + "\n")
    for seed in range(5):
        prepare(src, tmp_path / "o", eval_fraction=0.5, split="user", seed=seed, overwrite=True)
        data = load_prepared(tmp_path / "o")
        assert data.train.users.to_list() == ["a", "b", "c"]
        assert data.eval.nnz == 1


def test_same_seed_same_output_and_input_order_does_not_matter(tmp_path):
    src, table = _visits(tmp_path, n=5_000)
    shuffled = table.take(pa.array(np.random.default_rng(0).permutation(table.num_rows)))
    pcsv.write_csv(shuffled, tmp_path / "shuffled.csv")
    prepare(src, tmp_path / "a", eval_fraction=0.0, **KW)
    prepare(str(tmp_path / "shuffled.csv"), tmp_path / "b", eval_fraction=0.0, **KW)
    for rel in [
        "vocab/users.txt",
        "vocab/items.txt",
        "train/items_for_user-00000-of-00001.tfrecord",
        "train/native/user_items.data.npy",
    ]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_existing_output_is_refused_then_replaced_with_overwrite(tmp_path):
    src = _csv(tmp_path, "user,item\na,x\n")
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(
        InvalidParameterError,
        match=r"exists and is not empty; pass "
        r"overwrite=True \(--overwrite\)",
    ):
        prepare(src, out)
    assert (out / "keep.txt").read_text() == "precious"
    # not a DATA_DIR: even --overwrite leaves it alone
    with pytest.raises(InvalidParameterError, match=r"is not empty and is not a DATA_DIR"):
        prepare(src, out, overwrite=True)
    assert (out / "keep.txt").read_text() == "precious"
    (out / "keep.txt").unlink()
    prepare(src, out)
    prepare(src, out, overwrite=True)
    assert (out / "meta.json").is_file()
    assert sorted(os.listdir(tmp_path)) == ["in.csv", "o"]


def test_failure_keeps_the_previous_output_intact(tmp_path):
    good = _csv(tmp_path, "user,item\na,x\n")
    prepare(good, tmp_path / "o")
    before = (tmp_path / "o" / "meta.json").read_text()
    bad = _csv(tmp_path, "user,item,rating\na,x,oops\n", name="bad.csv")
    with pytest.raises(DataFormatError, match=r"bad\.csv, line 2, column 'rating'"):
        prepare(bad, tmp_path / "o", rating_col="rating", overwrite=True)
    assert (tmp_path / "o" / "meta.json").read_text() == before
    assert sorted(os.listdir(tmp_path)) == ["bad.csv", "in.csv", "o"]


def test_skip_bad_rows_is_reported_in_meta(tmp_path):
    src = _csv(tmp_path, "user,item,rating\na,x,1\nb,y,zz\nc,z,-1\n")
    meta = prepare(
        src, tmp_path / "o", rating_col="rating", rating_transform="log1p", on_bad_rows="skip"
    )
    assert meta["counts"]["bad_rows_skipped"] == 2
    assert meta["counts"]["bad_rows_by_reason"] == {"rating not a number": 1, "negative rating": 1}


@pytest.mark.parametrize(
    "kw,match",
    [
        (
            dict(rating_transform="sqrt"),
            r"'rating_transform' parameter of prepare must be one "
            r"of none, binary, log1p, scaled-median. Got 'sqrt'",
        ),
        (
            dict(eval_fraction=1.0),
            r"'eval_fraction' parameter of prepare must be a float in "
            r"the range \[0, 1\). Got 1.0",
        ),
        (
            dict(split="day"),
            r"'split' parameter of prepare must be one of random, user, time. "
            r"Got 'day'",
        ),
        (dict(shards=0), r"'shards' parameter of prepare must be an int >= 1. Got 0"),
        (
            dict(duplicates="median"),
            r"'duplicates' parameter of prepare must be one of sum, "
            r"max, mean, first, last. Got 'median'",
        ),
        (
            dict(eval_fraction=0.2, split="time"),
            r"'split' parameter of prepare is 'time', which "
            r"needs 'time_col'",
        ),
        (
            dict(compression="zip"),
            r"'compression' parameter of prepare must be None, 'none' or "
            r"'gzip'. Got 'zip'",
        ),
        (dict(scale=0), r"'scale' parameter of prepare must be a float > 0. Got 0"),
    ],
)
def test_invalid_parameters(tmp_path, kw, match):
    src = _csv(tmp_path, "user,item\na,x\n")
    with pytest.raises(InvalidParameterError, match=match):
        prepare(src, tmp_path / "o", **kw)
    assert not (tmp_path / "o").exists()


def test_ml100k_matches_the_tensorflow_written_records(shared_data, tmp_path):
    prepare(str(shared_data / "ml100k.csv"), tmp_path / "o", rating_col="rating")
    data = load_prepared(tmp_path / "o")
    tf_dir = shared_data / "tensorflow-written" / "ml100k"
    assert data.train.users.to_list() == (tf_dir / "user_ids.txt").read_text().split()
    assert data.train.items.to_list() == (tf_dir / "item_ids.txt").read_text().split()
    tf_rows = read_tfrecords(str(tf_dir / "items_for_user-*-of-00003.tfrecord"), vocab_size=1682)
    assert (tf_rows != data.train.user_items).nnz == 0
    assert data.train.nnz == 100_000


# ------------------------------------------------ issue 15: hardening (items 7 and 9)
def test_sum_of_duplicates_beyond_float32_names_user_and_item(tmp_path):
    # each rating fits float32, their sum did not: it was written as inf and refused as
    # "matrix row 0, column 0"
    src = _csv(tmp_path, "user,item,rating\nb,y,1\na,x,3e38\na,x,2e38\n")
    with pytest.raises(
        DataFormatError,
        match=r"User 'a', item 'x': its 2 rows combine \(duplicates='sum', rating transform "
        r"'none'\) to 5e\+38, beyond float32's range \(magnitudes up to 3\.4e38\)",
    ):
        prepare(src, tmp_path / "o", rating_col="rating")
    assert sorted(os.listdir(tmp_path)) == ["in.csv"]
    prepare(src, tmp_path / "o", rating_col="rating", duplicates="max")  # 3e38 fits


def test_rating_beyond_float32_is_skipped_with_on_bad_rows_skip(tmp_path):
    src = _csv(tmp_path, "user,item,rating\na,x,1\nb,y,1e39\nc,y,-1e308\n")
    meta = prepare(src, tmp_path / "o", rating_col="rating", on_bad_rows="skip")
    assert meta["counts"]["bad_rows_by_reason"] == {"rating beyond float32 range": 2}
    assert load_prepared(tmp_path / "o").train.users.to_list() == ["a"]


def test_a_failed_write_names_the_output_directory(tmp_path, monkeypatch):
    import walsrec.data.prepare as prepare_module

    def short_write(*args):  # what numpy raises on a full file system: no errno, no path
        raise OSError("89990 requested and 26592 written")

    monkeypatch.setattr(prepare_module, "_write", short_write)
    src = _csv(tmp_path, "user,item\na,x\n")
    with pytest.raises(
        OSError,
        match=r"cannot write the prepared data \(89990 requested and 26592 written: a short "
        r"write, is the file system full\?\)",
    ) as e:
        prepare(src, tmp_path / "o")
    assert e.value.filename == str(tmp_path / "o")
    assert sorted(os.listdir(tmp_path)) == ["in.csv"]


def test_ids_with_a_plus_sign(tmp_path):
    src = _csv(tmp_path, "user,item\n+1,x\n2,x\n1,y\n")
    prepare(src, tmp_path / "o")
    # numeric order, ties in the number broken by the text
    assert load_prepared(tmp_path / "o").train.users.to_list() == ["+1", "1", "2"]


def test_overwrite_never_deletes_an_input(tmp_path, monkeypatch):
    """The issue's reproduction: `prepare in/r.csv --out in --overwrite` deleted r.csv."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "r.csv").write_text("user,item\n1,a\n2,b\n")
    with pytest.raises(
        InvalidParameterError,
        match=r"The 'out' directory 'in' contains or is the input 'in/r\.csv'; writing there "
        r"would destroy it",
    ):
        prepare("in/r.csv", "in", overwrite=True)
    with pytest.raises(InvalidParameterError, match=r"contains or is the input 'in/\*\.csv'"):
        prepare(["in/*.csv"], ".", overwrite=True)
    assert (tmp_path / "in" / "r.csv").read_text() == "user,item\n1,a\n2,b\n"


def test_overwrite_replaces_only_a_data_dir_or_an_empty_directory(tmp_path):
    src = _csv(tmp_path, "user,item\n1,a\n2,b\n")
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(
        InvalidParameterError,
        match=r"The 'out' directory '.*photos' is not empty and is not a DATA_DIR \(it has no "
        r"walsrec's meta\.json\)",
    ):
        prepare(src, other, overwrite=True)
    assert (other / "cat.jpg").exists()
    (tmp_path / "empty").mkdir()
    prepare(src, tmp_path / "empty", overwrite=True)
    prepare(src, tmp_path / "empty", overwrite=True)  # now a DATA_DIR: replaced
    assert load_prepared(tmp_path / "empty").train.users.to_list() == ["1", "2"]


def test_a_data_dir_left_renamed_aside_by_a_killed_run_is_put_back(tmp_path):
    src = _csv(tmp_path, "user,item\n1,a\n2,b\n")
    out = tmp_path / "d"
    prepare(src, out)
    # what a run killed between its two renames leaves: no DATA_DIR, the old one aside
    # under a dead process's name
    aside = tmp_path / ".d.old-999999999-0a0b0c0d"
    aside.mkdir()
    out.rename(aside / "old")
    t = time.time() - 60  # older than the grace period a new temporary gets
    os.utime(aside, (t, t))
    assert load_prepared(out).train.users.to_list() == ["1", "2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "in.csv"]


# ------------------------------------------ issue 15: the probe's and review's findings
def test_combined_rating_beyond_float32_is_skipped_with_on_bad_rows_skip(tmp_path):
    # was the error naming the user and item, even with on_bad_rows="skip"
    src = _csv(tmp_path, "user,item,rating\na,x,1\nb,y,3e38\nb,x,2\nb,y,3e38\nb,y,1\n")
    meta = prepare(src, tmp_path / "o", rating_col="rating", on_bad_rows="skip")
    assert meta["counts"]["bad_rows_skipped"] == 3
    assert meta["counts"]["bad_rows_by_reason"] == {"combined rating beyond float32 range": 3}
    assert meta["counts"]["rows_read"] == 5
    assert meta["counts"]["distinct_pairs"] == 2
    data = load_prepared(tmp_path / "o")
    assert data.train.users.to_list() == ["a", "b"] and data.train.items.to_list() == ["x"]
    np.testing.assert_array_equal(_dense(data.train), [[1], [2]])
    with pytest.raises(DataFormatError, match=r"User 'b', item 'y': its 3 rows combine"):
        prepare(src, tmp_path / "o2", rating_col="rating")


@pytest.mark.parametrize("split", ["time", "random"])
def test_date_times_split_by_time(tmp_path, split):
    # was "Unsupported cast from date32[day] to int64"
    text = "user,item,rating,ts\n1,10,3,2020-01-01\n1,11,3,2020-01-03\n2,11,5,2020-01-02\n"
    src = _csv(tmp_path, text)
    kw = dict(rating_col="rating", time_col="ts", split=split, eval_fraction=0.5)
    meta = prepare(src, tmp_path / "o", **kw)
    assert meta["counts"]["rows_read"] == 3
    if split == "time":  # user 1's latest, 2020-01-03 (item 11), is held out
        data = load_prepared(tmp_path / "o")
        np.testing.assert_array_equal(_dense(data.train), [[3, 0], [0, 5]])
        np.testing.assert_array_equal(_dense(data.eval), [[0, 3], [0, 0]])
