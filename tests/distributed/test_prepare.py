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


def test_json_lines_named_by_a_glob_url_the_workers_expand_alike(client, tmp_path):
    rng = np.random.default_rng(4)
    root = tmp_path / "in"
    root.mkdir()
    for f in range(3):
        lines = [
            json.dumps({"u": f"u{rng.integers(50)}", "i": int(rng.integers(30)), "r": 1.5})
            for _ in range(200)
        ]
        (root / f"events-{f}.jsonl").write_text("\n".join(lines) + "\n")
    url = f"file://{root}/events-*.jsonl"
    kw = dict(user_col="u", item_col="i", rating_col="r", eval_fraction=0.2, split="user")
    one = prepare(url, tmp_path / "one", **kw)
    two = prepare_dask(client, url, tmp_path / "two", partitions=2, **kw)
    assert two["sources"] == one["sources"] and len(one["sources"]) == 3
    assert _differences(tmp_path / "one", tmp_path / "two") == []


@pytest.mark.parametrize("seed", range(8))
def test_any_rows_any_cut_into_files_and_ranges(client, tmp_path, seed):
    # drawn here, not by hypothesis: the cluster's threads touch the random module, which
    # hypothesis takes for a strategy using it
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 121))
    users = rng.choice(["1", "2", "10", "02", "a", "b", "é", "-3"], n).tolist()
    items = rng.choice(["1", "2", "10", "+2", "x", "y"], n).tolist()
    values = rng.choice([0.5, 1.0, 2.0, 3.5], n).tolist()
    times = rng.integers(0, 6, n).tolist()
    t = pa.table({"u": users, "i": items, "r": values, "t": times})
    files = _files(tmp_path / "in", t, int(rng.integers(1, 5)))
    kw = dict(
        user_col="u",
        item_col="i",
        rating_col="r",
        time_col="t",
        eval_fraction=0.3,
        split=["random", "user", "time"][seed % 3],
        duplicates=["sum", "first", "last", "mean", "max"][seed % 5],
        shards=2,
        seed=seed,
    )
    prepare(files, tmp_path / "one", **kw)
    prepare_dask(client, files, tmp_path / "two", partitions=int(rng.integers(1, 7)), **kw)
    assert _differences(tmp_path / "one", tmp_path / "two") == []


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


@pytest.mark.parametrize("stage", ["read ", "writing"])
def test_a_worker_killed_mid_prepare_costs_a_recomputation(
    own_client, visit_files, tmp_path, stage
):
    """A worker process is SIGKILLed after the files are read, or while the DATA_DIR is
    being written (its nanny starts a new one): what it held is recomputed from the files,
    written pieces are joined once, and the DATA_DIR is still one process's."""
    import signal
    import threading

    client = own_client  # this test kills a worker
    kw = dict(**VISITS, eval_fraction=0.2, split="user", shards=3, compression="gzip")
    prepare(visit_files, tmp_path / "one", **kw)
    killed = []

    def kill_one(message):
        if message.startswith(stage) and not killed:
            victim = sorted(client.run(os.getpid).items())[0][1]
            threading.Timer(0.05, os.kill, (victim, signal.SIGKILL)).start()
            killed.append(victim)

    prepare_dask(client, visit_files, tmp_path / "two", progress=kill_one, partitions=4, **kw)
    assert len(killed) == 1
    assert _differences(tmp_path / "one", tmp_path / "two") == []


def test_the_client_never_reads_a_row(client, visit_files, tmp_path, monkeypatch):
    import walsrec.data.prepare as one
    import walsrec.data.readers as readers

    def refuse(*args, **kwargs):
        raise AssertionError("the client read the table")

    # the workers are other processes: only this one is patched
    monkeypatch.setattr(readers, "read_table", refuse)
    monkeypatch.setattr(one, "read_table", refuse)
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
