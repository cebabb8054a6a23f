"""``prepare`` on Dask workers writes the DATA_DIR one process writes, byte for byte."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from walsrec.cli.main import main
from walsrec.data.prepare import load_prepared, prepare
from walsrec.datasets import generate_visits
from walsrec.errors import DataFormatError, InvalidParameterError

pytest.importorskip("distributed")

from walsrec.distributed.prepare import prepare_dask


def _files(root: Path, table: pa.Table, n: int, kind: str = "csv") -> list[str]:
    """``table`` cut into ``n`` files of about equal rows, in order."""
    root.mkdir(parents=True, exist_ok=True)
    cuts = np.linspace(0, table.num_rows, n + 1).astype(int)
    paths = []
    for i in range(n):
        part = table.slice(cuts[i], cuts[i + 1] - cuts[i])
        path = root / f"part-{i}.{kind}"
        if kind == "csv":
            pcsv.write_csv(part, path)
        else:
            pq.write_table(part, path)
        paths.append(str(path))
    return paths


def _differences(a: Path, b: Path) -> list:
    """The files of DATA_DIR ``a`` that ``b`` lacks or holds other bytes of (meta.json
    compared without its time stamp)."""
    found = []
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file())
    for name in names:
        x, y = a / name, b / name
        if name == "meta.json":
            mx, my = json.loads(x.read_text()), json.loads(y.read_text())
            mx.pop("created"), my.pop("created")
            if mx != my:
                found.append((name, mx, my))
        elif x.read_bytes() != y.read_bytes():
            found.append(name)
    return found


VISITS = dict(user_col="visitor_id", item_col="article_id")


@pytest.fixture(scope="module")
def visit_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("visits")
    return _files(root, generate_visits(30_000, seed=3), 4)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {
            "rating_col": "session_duration",
            "rating_transform": "scaled-median",
            "eval_fraction": 0.2,
            "split": "user",
            "shards": 3,
            "compression": "gzip",
        },
        {
            "rating_col": "session_duration",
            "time_col": "timestamp",
            "eval_fraction": 0.1,
            "split": "time",
            "min_user_interactions": 3,
            "min_item_interactions": 5,
            "shards": 2,
            "duplicates": "last",
        },
        {
            "rating_col": "session_duration",
            "eval_fraction": 0.3,
            "duplicates": "first",
            "seed": 5,
            "rating_transform": "log1p",
            "shards": 4,
        },
        {"rating_col": "session_duration", "duplicates": "mean", "rating_transform": "binary"},
        {"rating_col": "session_duration", "duplicates": "max", "eval_fraction": 0.5},
    ],
    ids=["defaults", "scaled-median-user-gzip", "time-filters-last", "first-log1p", "mean", "max"],
)
def test_the_workers_write_the_data_dir_one_process_writes(client, visit_files, tmp_path, kw):
    one = prepare(visit_files, tmp_path / "one", **VISITS, **kw)
    two = prepare_dask(client, visit_files, tmp_path / "two", partitions=3, **VISITS, **kw)
    assert _differences(tmp_path / "one", tmp_path / "two") == []
    one.pop("created"), two.pop("created"), one.pop("seconds"), two.pop("seconds")
    assert one == two
    # and it loads as a DATA_DIR
    assert load_prepared(tmp_path / "two").train.nnz == one["counts"]["train_interactions"]


def test_the_median_is_exact_for_an_even_and_an_odd_number_of_pairs(client, tmp_path):
    for n in (6, 7):
        values = [0.5, 3.0, 1.0, 7.25, 2.0, 100.0, 9.0][:n]
        t = pa.table({"user": [f"u{i}" for i in range(n)], "item": ["x"] * n, "r": values})
        files = _files(tmp_path / f"in{n}", t, 2)
        kw = dict(rating_col="r", rating_transform="scaled-median")
        one = prepare(files, tmp_path / f"one{n}", **kw)
        two = prepare_dask(client, files, tmp_path / f"two{n}", partitions=4, **kw)
        assert two["rating_transform"]["median"] == one["rating_transform"]["median"]
        assert one["rating_transform"]["median"] == float(np.median(values))
        assert _differences(tmp_path / f"one{n}", tmp_path / f"two{n}") == []


def test_ids_integer_in_some_files_only_sort_as_text_and_parquet_inputs_work(client, tmp_path):
    rng = np.random.default_rng(0)
    n = 3000
    users = [str(x) for x in rng.integers(0, 400, n)]
    users[-1] = "zoë"  # one text id, in the last file: every user sorts as text
    items = [f"{x:+d}" if x % 7 == 0 else str(x) for x in rng.integers(-50, 300, n)]
    t = pa.table({"user": users, "item": items, "r": rng.random(n) * 5})
    files = _files(tmp_path / "in", t, 3, kind="parquet")
    kw = dict(rating_col="r", eval_fraction=0.25, split="user", duplicates="sum")
    prepare(files, tmp_path / "one", **kw)
    prepare_dask(client, files, tmp_path / "two", partitions=5, **kw)
    assert _differences(tmp_path / "one", tmp_path / "two") == []
    vocab = (tmp_path / "two" / "vocab" / "users.txt").read_text().split("\n")
    assert vocab[:3] == ["0", "1", "10"]  # text order
    items_vocab = (tmp_path / "two" / "vocab" / "items.txt").read_text().split("\n")
    assert items_vocab[0] == "-50"  # numeric order


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["1", "2", "10", "02", "a", "b", "é", "-3"]),
            st.sampled_from(["1", "2", "10", "+2", "x", "y"]),
            st.sampled_from([0.5, 1.0, 2.0, 3.5]),
            st.integers(0, 5),
        ),
        min_size=1,
        max_size=120,
    ),
    n_files=st.integers(1, 4),
    parts=st.integers(1, 6),
    split=st.sampled_from(["random", "user", "time"]),
    duplicates=st.sampled_from(["sum", "first", "last", "mean", "max"]),
)
def test_any_rows_any_cut_into_files_and_ranges(
    client, tmp_path_factory, rows, n_files, parts, split, duplicates
):
    users, items, values, times = (list(c) for c in zip(*rows, strict=True))
    t = pa.table({"u": users, "i": items, "r": values, "t": times})
    root = tmp_path_factory.mktemp("prop")
    files = _files(root / "in", t, n_files)
    kw = dict(
        user_col="u",
        item_col="i",
        rating_col="r",
        time_col="t",
        eval_fraction=0.3,
        split=split,
        duplicates=duplicates,
        shards=2,
    )
    prepare(files, root / "one", **kw)
    prepare_dask(client, files, root / "two", partitions=parts, **kw)
    assert _differences(root / "one", root / "two") == []


def test_a_bad_row_is_the_same_error_naming_the_first_file_with_one(client, tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    (root / "a.csv").write_text("user,item,r\nu1,x,1\nu2,y,2\n")
    (root / "b.csv").write_text("user,item,r\nu1,x,1\nu3,y,abc\n")
    (root / "c.csv").write_text("user,item,r\nu4,x,\n")
    files = [str(root / n) for n in ("a.csv", "b.csv", "c.csv")]
    with pytest.raises(DataFormatError) as one:
        prepare(files, tmp_path / "one", rating_col="r")
    with pytest.raises(DataFormatError, match=r"b\.csv, line 3, column 'r'") as two:
        prepare_dask(client, files, tmp_path / "two", rating_col="r")
    assert str(two.value) == str(one.value)
    assert not (tmp_path / "two").exists()
    # skipped instead, counted per reason across the files the workers read
    m1 = prepare(files, tmp_path / "one", rating_col="r", on_bad_rows="skip")
    m2 = prepare_dask(client, files, tmp_path / "two", rating_col="r", on_bad_rows="skip")
    assert m2["counts"]["bad_rows_skipped"] == m1["counts"]["bad_rows_skipped"] == 2
    assert m2["counts"]["bad_rows_by_reason"] == m1["counts"]["bad_rows_by_reason"]
    assert _differences(tmp_path / "one", tmp_path / "two") == []


def test_a_pair_summed_beyond_float32_is_the_same_error_or_skipped_rows(client, tmp_path):
    big = 3e38
    t = pa.table(
        {
            "user": ["b", "a", "b", "a", "c", "c"],
            "item": ["y", "x", "y", "z", "x", "x"],
            "r": [big, 1.0, big, 2.0, big, big],
        }
    )
    files = _files(tmp_path / "in", t, 3)
    with pytest.raises(DataFormatError) as one:
        prepare(files, tmp_path / "one", rating_col="r")
    with pytest.raises(DataFormatError, match="User 'b', item 'y': its 2 rows combine") as two:
        prepare_dask(client, files, tmp_path / "two", rating_col="r", partitions=3)
    assert str(two.value) == str(one.value)
    m1 = prepare(files, tmp_path / "one", rating_col="r", on_bad_rows="skip")
    m2 = prepare_dask(
        client, files, tmp_path / "two", rating_col="r", on_bad_rows="skip", partitions=3
    )
    assert m2["counts"] == m1["counts"]
    assert m2["counts"]["bad_rows_by_reason"] == {"combined rating beyond float32 range": 4}


def test_nothing_left_after_filtering_is_the_same_error(client, visit_files, tmp_path):
    kw = dict(**VISITS, min_user_interactions=10_000)
    with pytest.raises(DataFormatError) as one:
        prepare(visit_files, tmp_path / "one", **kw)
    with pytest.raises(DataFormatError, match="No interactions are left after filtering") as two:
        prepare_dask(client, visit_files, tmp_path / "two", **kw)
    assert str(two.value) == str(one.value)


def test_the_client_never_reads_a_row(client, visit_files, tmp_path, monkeypatch):
    import walsrec.data.readers as readers
    import walsrec.distributed.prepare as dp

    def refuse(*args, **kwargs):
        raise AssertionError("the client read the table")

    # the workers are other processes: only this one is patched
    monkeypatch.setattr(readers, "read_table", refuse)
    monkeypatch.setattr(dp, "read_table", refuse)
    meta = prepare_dask(client, visit_files, tmp_path / "two", **VISITS, eval_fraction=0.1)
    assert meta["counts"]["rows_read"] == 30_000


def test_the_cli_prepares_on_the_cluster_and_refuses_partitions_alone(
    client, visit_files, tmp_path, capsys
):
    address = client.scheduler.address
    args = ["--user-col", "visitor_id", "--item-col", "article_id", "--eval-fraction", "0.1"]
    assert main(["prepare", *visit_files, "--out", str(tmp_path / "one"), *args, "--quiet"]) == 0
    code = main(["prepare", *visit_files, "--out", str(tmp_path / "two"), *args, "--dask", address])
    _out, err = capsys.readouterr()
    assert code == 0, err
    assert "prepare: read 30,000 rows from 4 file(s)" in err
    assert _differences(tmp_path / "one", tmp_path / "two") == []
    code = main(["prepare", *visit_files, "--out", str(tmp_path / "three"), "--partitions", "2"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "The 'partitions' parameter of prepare needs 'dask' (--dask)" in err


def test_partitions_must_be_a_positive_int(client, visit_files, tmp_path):
    with pytest.raises(InvalidParameterError, match="'partitions' parameter of prepare must be"):
        prepare_dask(client, visit_files, tmp_path / "two", **VISITS, partitions=0)
    assert not os.path.exists(tmp_path / "two")
