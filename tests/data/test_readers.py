from __future__ import annotations

import bz2
import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from walsrec.data.readers import expand_inputs, read_table
from walsrec.errors import DataFormatError, InvalidParameterError

CSV = "user,item,rating,ts\nu1,i1,1.5,10\nu2,i1,2,20\nu1,i2,3,30\n"
EXPECTED = {"user": ["u1", "u2", "u1"], "item": ["i1", "i1", "i2"], "rating": [1.5, 2.0, 3.0]}


def _read(path, **kw):
    kw.setdefault("rating_col", "rating")
    return read_table(str(path), **kw).table.to_pydict()


def test_csv_with_header(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text(CSV)
    assert _read(p) == EXPECTED


@pytest.mark.parametrize("delim", ["\t", ";", "|"])
def test_delimiter_is_detected(tmp_path, delim):
    p = tmp_path / "x.txt"
    p.write_text(CSV.replace(",", delim))
    assert _read(p) == EXPECTED


def test_explicit_delimiter_and_headerless_columns(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("u1;i1;1.5\nu2;i1;2\nu1;i2;3\n")
    got = _read(p, delimiter=";", columns=["user", "item", "rating"])
    assert got == EXPECTED


def test_ids_are_read_as_text_exactly(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("user,item\n007,1\n7,01\n")
    got = read_table(str(p)).table.to_pydict()
    assert got == {"user": ["007", "7"], "item": ["1", "01"]}


@pytest.mark.parametrize("suffix,opener", [(".gz", gzip.open), (".bz2", bz2.open)])
def test_compressed_csv(tmp_path, suffix, opener):
    p = tmp_path / f"x.csv{suffix}"
    with opener(p, "wt") as f:
        f.write(CSV)
    assert _read(p) == EXPECTED


def test_zstd_csv(tmp_path):
    p = tmp_path / "x.csv.zst"
    with pa.CompressedOutputStream(str(p), "zstd") as f:
        f.write(CSV.encode())
    assert _read(p) == EXPECTED


def test_gzip_detected_from_content_without_suffix(tmp_path):
    p = tmp_path / "x.csv"
    p.write_bytes(gzip.compress(CSV.encode()))
    assert _read(p) == EXPECTED


def test_parquet_and_jsonl(tmp_path):
    pq.write_table(
        pa.table({"user": [1, 2, 1], "item": ["i1", "i1", "i2"], "rating": [1.5, 2, 3]}),
        tmp_path / "x.parquet",
    )
    got = _read(tmp_path / "x.parquet")
    assert got == {**EXPECTED, "user": ["1", "2", "1"]}
    lines = [
        json.dumps({"user": u, "item": i, "rating": r})
        for u, i, r in zip(*EXPECTED.values(), strict=True)
    ]
    (tmp_path / "x.jsonl.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
    assert _read(tmp_path / "x.jsonl.gz") == EXPECTED


def test_globs_and_several_files_keep_order(tmp_path):
    (tmp_path / "b.csv").write_text("user,item\nu2,i2\n")
    (tmp_path / "a.csv").write_text("user,item\nu1,i1\n")
    (tmp_path / "c.csv").write_text("user,item\nu3,i3\n")
    res = read_table([str(tmp_path / "[ab].csv"), str(tmp_path / "c.csv")])
    assert res.table.column("user").to_pylist() == ["u1", "u2", "u3"]
    assert [p.rsplit("/", 1)[-1] for p in res.sources] == ["a.csv", "b.csv", "c.csv"]


def test_fsspec_memory_and_file_urls(tmp_path):
    import fsspec

    with fsspec.open("memory://walsrec-test/x.csv.gz", "wb") as f:
        f.write(gzip.compress(CSV.encode()))
    assert _read("memory://walsrec-test/x.csv.gz") == EXPECTED
    assert read_table("memory://walsrec-test/*.csv.gz", rating_col="rating").table.num_rows == 3
    (tmp_path / "y.csv").write_text(CSV)
    assert _read(f"file://{tmp_path}/y.csv") == EXPECTED


def test_time_column_iso_timestamps(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("user,item,when\na,x,2026-01-02T00:00:00\nb,x,2026-01-01T00:00:00\n")
    t = read_table(str(p), time_col="when").table
    assert np.diff(t.column("time").to_numpy())[0] == -86_400


# ------------------------------------------------------------------ errors, with locations
def test_missing_column_lists_columns(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text(CSV)
    with pytest.raises(
        DataFormatError,
        match=r"x\.csv: column 'score' not found; the columns "
        r"are 'user', 'item', 'rating', 'ts'",
    ):
        read_table(str(p), rating_col="score")


def test_unparseable_rating_names_file_line_column_value(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("user,item,rating\na,x,1\nb,x,2\nc,y,abc\n")
    with pytest.raises(
        DataFormatError, match=r"x\.csv, line 4, column 'rating': the rating 'abc' is not a number"
    ):
        read_table(str(p), rating_col="rating")


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_non_finite_rating(tmp_path, bad):
    p = tmp_path / "x.csv"
    p.write_text(f"user,item,rating\na,x,1\nb,x,{bad}\n")
    with pytest.raises(
        DataFormatError, match=r"x\.csv, line 3, column 'rating': the rating .* is not a finite"
    ):
        read_table(str(p), rating_col="rating")


def test_negative_rating_when_not_allowed(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("user,item,rating\na,x,1\nb,x,-2\n")
    with pytest.raises(
        DataFormatError,
        match=r"line 3, column 'rating': the rating -2.0 is "
        "negative, which the rating transform cannot take",
    ):
        read_table(str(p), rating_col="rating", nonnegative_rating=True)
    assert read_table(str(p), rating_col="rating").table.num_rows == 2


def test_id_with_newline_is_an_error(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text('user,item\na,x\n"b\nc",y\n')
    with pytest.raises(
        DataFormatError,
        match=r"line 3, column 'user': the id 'b\\nc' contains "
        "a newline",
    ):
        read_table(str(p))


def test_empty_id_is_an_error(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("user,item\na,x\n,y\n")
    with pytest.raises(DataFormatError, match=r"line 3, column 'user': the id is empty"):
        read_table(str(p))


def test_wrong_field_count_names_the_line(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("user,item,rating\na,x,1\nb,x\nc,y,2\n")
    with pytest.raises(
        DataFormatError,
        match=r"x\.csv, line 3: expected 3 fields separated by "
        r"',', found 2: 'b,x'",
    ):
        read_table(str(p), rating_col="rating")


def test_parquet_row_is_named(tmp_path):
    pq.write_table(
        pa.table({"user": ["a", "b"], "item": ["x", "y"], "rating": [1.0, np.nan]}),
        tmp_path / "x.parquet",
    )
    with pytest.raises(DataFormatError, match=r"x\.parquet, row 2, column 'rating'"):
        read_table(str(tmp_path / "x.parquet"), rating_col="rating")


def test_skip_bad_rows_counts_each_reason(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("user,item,rating\na,x,1\nb,x\nc,y,abc\nd,y,nan\n,y,1\ne,z,2\n")
    res = read_table(str(p), rating_col="rating", on_bad_rows="skip")
    assert res.table.column("user").to_pylist() == ["a", "e"]
    assert res.n_bad_rows == 4
    assert res.n_rows_read == 6
    assert res.bad_reasons == {
        "wrong number of fields": 1,
        "rating not a number": 1,
        "rating not finite": 1,
        "missing id": 1,
    }


def test_no_files_match(tmp_path):
    with pytest.raises(DataFormatError, match=r"no files match the pattern '.*nothing-\*\.csv'"):
        expand_inputs(str(tmp_path / "nothing-*.csv"))
    with pytest.raises(DataFormatError, match=r"file not found: '.*absent\.csv'"):
        expand_inputs(str(tmp_path / "absent.csv"))


def test_unknown_format_and_bad_options(tmp_path):
    p = tmp_path / "x.xlsx"
    p.write_text(CSV)
    with pytest.raises(DataFormatError, match=r"x\.xlsx: cannot tell the format"):
        read_table(str(p))
    assert read_table(str(p), format="csv").table.num_rows == 3
    with pytest.raises(
        InvalidParameterError,
        match=r"'on_bad_rows' parameter must be 'error' "
        r"or 'skip'. Got 'ignore'",
    ):
        read_table(str(p), on_bad_rows="ignore")
    with pytest.raises(
        InvalidParameterError,
        match=r"'delimiter' parameter must be a single "
        r"character. Got '::'",
    ):
        read_table(str(p), delimiter="::")


def test_float_ids_are_refused(tmp_path):
    pq.write_table(pa.table({"user": [1.5], "item": ["x"]}), tmp_path / "x.parquet")
    with pytest.raises(DataFormatError, match=r"column 'user' holds floating-point numbers"):
        read_table(str(tmp_path / "x.parquet"))
