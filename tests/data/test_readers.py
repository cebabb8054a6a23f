from __future__ import annotations

import bz2
import concurrent.futures
import datetime
import decimal
import gzip
import json
import types

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


# ------------------------------------------------ issue 15: hardening (items 7 to 10)
def _write(path, data: bytes):
    path.write_bytes(data)
    return str(path)


def test_bad_utf8_id_names_file_line_and_bytes(tmp_path):
    # was "cannot be parsed as CSV (In CSV column #0: ...)", without the line
    p = _write(tmp_path / "x.csv", b"user,item,rating\na,x,1\n\n\xff1,y,2\n")
    with pytest.raises(
        DataFormatError,
        match=r"x\.csv, line 4, column 'user': the value b'\\xff1' is not UTF-8 text; "
        r"convert the file to UTF-8\.",
    ):
        read_table(p, rating_col="rating")
    # not skippable: a file in another encoding would lose every id with an accent
    with pytest.raises(DataFormatError, match=r"line 4, column 'user': the value b'\\xff1'"):
        read_table(p, rating_col="rating", on_bad_rows="skip")


def test_bad_utf8_in_jsonl_parquet_and_time_columns(tmp_path):
    # JSON lines: was a UnicodeDecodeError traceback
    p = _write(tmp_path / "x.jsonl", b'{"user":"a","item":"x"}\n\n{"user":"b","item":"\xe9"}\n')
    with pytest.raises(
        DataFormatError, match=r"x\.jsonl, line 3, column 'item': the value b'\\xe9' is not"
    ):
        read_table(p)
    pq.write_table(
        pa.table({"user": pa.array([b"a", b"\xff"]), "item": ["x", "y"]}), tmp_path / "x.parquet"
    )
    with pytest.raises(DataFormatError, match=r"x\.parquet, row 2, column 'user': the value b'"):
        read_table(str(tmp_path / "x.parquet"))
    # a time that is not UTF-8 was read silently, as bytes
    p = _write(tmp_path / "t.csv", b"user,item,ts\na,x,1\nb,y,\xff\n")
    with pytest.raises(DataFormatError, match=r"t\.csv, line 3, column 'ts': the value b'\\xff'"):
        read_table(p, time_col="ts")


def test_bad_utf8_in_a_row_with_wrong_field_count_is_one_error(tmp_path, capfd):
    # pyarrow cannot hand such a row to the bad-row handler: it printed "Exception ignored"
    p = _write(tmp_path / "x.csv", b"user,item,rating\na,x,1\n\xff\n")
    with pytest.raises(
        DataFormatError, match=r"x\.csv, line 3: not UTF-8 text \('\ufffd', U\+FFFD marking"
    ):
        read_table(p, rating_col="rating")
    # with skip, the row with a wrong field count before it is skipped, not named
    p = _write(tmp_path / "y.csv", b"user,item,rating\na,x\n\nb,y,1\n\xe9t\xe9\n")
    with pytest.raises(
        DataFormatError,
        match=r"y\.csv, line 5: not UTF-8 text \('\ufffdt\ufffd', U\+FFFD marking the bytes "
        r"that are not\); convert the file to UTF-8\.",
    ):
        read_table(p, rating_col="rating", on_bad_rows="skip")
    assert capfd.readouterr().err == ""


def test_file_named_gz_that_is_not_gzip(tmp_path):
    p = _write(tmp_path / "x.csv.gz", CSV.encode())  # was OSError: zlib inflate failed
    with pytest.raises(
        DataFormatError,
        match=r"x\.csv\.gz: the name says gzip, but the file does not start as a gzip file "
        r"does \(its first bytes are b'user'\); rename it",
    ):
        read_table(p)
    p = _write(tmp_path / "y.csv.gz", gzip.compress(CSV.encode())[:30])
    with pytest.raises(
        DataFormatError, match=r"y\.csv\.gz: cannot be decompressed as gzip \(.*\)\."
    ):
        read_table(p)


def test_os_error_without_a_path_gets_one(tmp_path, monkeypatch):
    import walsrec.data.readers as readers

    def fail(*args):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(readers, "_read_csv", fail)
    p = _write(tmp_path / "x.csv", CSV.encode())
    with pytest.raises(OSError, match=r"cannot read it \(\[Errno 5\] Input/output error\)") as e:
        read_table(p)
    assert e.value.filename == p and e.value.errno == 5


@pytest.mark.parametrize(
    "name,table,column_type",
    [
        ("x.parquet", pa.table({"user": [[1], [2]], "item": ["x", "y"]}), r"list<.*>"),
        ("x.parquet", pa.table({"user": [{"a": 1}, {"a": 2}], "item": ["x", "y"]}), r"struct<.*>"),
        ("x.parquet", pa.table({"user": [True, False], "item": ["x", "y"]}), "bool"),
        ("x.jsonl", [{"user": {"id": 1}, "item": "x"}], r"struct<id: int64>"),
        ("x.jsonl", [{"user": [1, 2], "item": "x"}], r"list<item: int64>"),
    ],
)
def test_id_columns_of_lists_objects_or_booleans_are_refused(tmp_path, name, table, column_type):
    path = tmp_path / name
    if name.endswith(".parquet"):
        pq.write_table(table, path)
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in table))
    with pytest.raises(
        DataFormatError,
        match=rf"{name.replace('.', '[.]')}: column 'user' holds {column_type} values; "
        "ids must be text or integers",
    ):
        read_table(str(path))


def test_rating_column_of_lists_or_booleans_is_refused(tmp_path):
    pq.write_table(
        pa.table({"user": ["a"], "item": ["x"], "rating": [[1.0]]}), tmp_path / "x.parquet"
    )
    with pytest.raises(
        DataFormatError, match=r"column 'rating' holds list<.*> values; ratings must be numbers"
    ):
        read_table(str(tmp_path / "x.parquet"), rating_col="rating")
    (tmp_path / "x.jsonl").write_text('{"user":"a","item":"x","rating":true}\n')
    with pytest.raises(
        DataFormatError, match=r"column 'rating' holds bool values; ratings must be numbers"
    ):
        read_table(str(tmp_path / "x.jsonl"), rating_col="rating")


BEYOND_2_53 = r"is an integer beyond 2\*\*53, which float64 cannot hold exactly"


def test_integer_rating_beyond_2_53_is_refused_in_every_format(tmp_path):
    big = 2**53 + 1  # read as float64 it became 2**53 without a word
    p = _write(tmp_path / "x.csv", f"user,item,rating\na,x,1\nb,y,{big}\n".encode())
    with pytest.raises(
        DataFormatError, match=rf"x\.csv, line 3, column 'rating': the rating '{big}' {BEYOND_2_53}"
    ):
        read_table(p, rating_col="rating")
    p = _write(tmp_path / "x.jsonl", f'{{"user":"a","item":"x","rating":{big}}}\n'.encode())
    with pytest.raises(DataFormatError, match=rf"x\.jsonl, line 1, .* rating {big} {BEYOND_2_53}"):
        read_table(p, rating_col="rating")
    for dtype in (pa.int64(), pa.uint64()):
        table = pa.table({"user": ["a"], "item": ["x"], "rating": pa.array([big], dtype)})
        pq.write_table(table, tmp_path / "x.parquet")
        with pytest.raises(DataFormatError, match=rf"x\.parquet, row 1, .* {big} {BEYOND_2_53}"):
            read_table(str(tmp_path / "x.parquet"), rating_col="rating")


def test_integer_rating_beyond_2_53_is_skippable_and_floats_are_read_rounded(tmp_path):
    rows = ["a,x,1", "b,x,-9007199254740992", "c,x,00009007199254740993", "d,x,1e20", "e,x,2e16"]
    p = _write(tmp_path / "x.csv", ("user,item,rating\n" + "\n".join(rows) + "\n").encode())
    res = read_table(p, rating_col="rating", on_bad_rows="skip")
    assert res.table.to_pydict() == {
        "user": ["a", "b", "d", "e"],
        "item": ["x"] * 4,
        "rating": [1.0, -(2.0**53), 1e20, 2e16],
    }
    assert res.bad_reasons == {"integer rating beyond 2**53": 1}


@pytest.mark.parametrize("bad", ["1e39", "-1e308", "1e308", "3.5e38"])
def test_rating_beyond_float32_is_a_bad_row(tmp_path, bad):
    # was written as inf, and refused later as "matrix row 1, column 1", not skippable
    p = _write(tmp_path / "x.csv", f"user,item,rating\na,x,1\n\nb,y,{bad}\nc,z,3e38\n".encode())
    with pytest.raises(
        DataFormatError,
        match=rf"x\.csv, line 4, column 'rating': the rating .*{bad.lstrip('-')}.* is beyond "
        r"float32's range \(magnitudes up to 3\.4e38\), in which ratings are stored\.",
    ):
        read_table(p, rating_col="rating")
    res = read_table(p, rating_col="rating", on_bad_rows="skip")
    assert res.table.column("user").to_pylist() == ["a", "c"]
    assert res.bad_reasons == {"rating beyond float32 range": 1}


def test_parquet_rating_beyond_float32(tmp_path):
    pq.write_table(
        pa.table({"user": ["a", "b"], "item": ["x", "y"], "rating": [1.0, -1e308]}),
        tmp_path / "x.parquet",
    )
    with pytest.raises(DataFormatError, match=r"x\.parquet, row 2, .* -1e\+308 is beyond float32"):
        read_table(str(tmp_path / "x.parquet"), rating_col="rating")


# Line 7 holds the bad row: before it, a blank line and a quoted field over three lines.
LINES = 'user,item,rating,ts,note\na,x,1,10,\n\nb,y,2,20,"two\n\nlines"\nd,z,{rating},{ts},\n'


@pytest.mark.parametrize(
    "rating,ts,match",
    [
        ("abc", "30", r"x\.csv, line 7, column 'rating': the rating 'abc' is not a number"),
        ("nan", "30", r"x\.csv, line 7, column 'rating': the rating nan is not a finite"),
        ("1e39", "30", r"x\.csv, line 7, column 'rating': the rating '1e39' is beyond"),
        ("3", "soon", r"x\.csv, line 7, column 'ts': the time 'soon' is neither a number"),
        ("3", "30,40", r"x\.csv, line 7: expected 5 fields separated by ',', found 6: "),
    ],
)
def test_lines_count_blank_lines_and_lines_inside_quoted_fields(tmp_path, rating, ts, match):
    # the row was named as line 4 (pyarrow's row count), and a bad time as line 2
    p = _write(tmp_path / "x.csv", LINES.format(rating=rating, ts=ts).encode())
    with pytest.raises(DataFormatError, match=match):
        read_table(p, rating_col="rating", time_col="ts", on_bad_rows="error")


def test_lines_after_skipped_rows_and_in_headerless_files(tmp_path):
    text = 'a,x,1\nb,y\n\n"c\nd",z\ne,z,1\n\xff,z,2\n'
    p = _write(tmp_path / "x.csv", text.encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"x\.csv, line 7, column 'user': the value b'\\xff'"):
        read_table(p, columns=["user", "item", "rating"], on_bad_rows="skip")


def test_bad_timestamp_names_its_line(tmp_path):
    # was "line 2: column 't' is neither numbers nor timestamps (first value '2026-01-01')",
    # then "the time '3' is neither a number nor a timestamp" (it is a number)
    p = _write(tmp_path / "x.csv", b"user,item,t\na,x,2026-01-01\n\nb,y,2026-01-02\nc,z,3\n")
    with pytest.raises(
        DataFormatError,
        match=r"x\.csv, line 5, column 't': the time '3' is a number, but the column's times "
        r"are timestamps, as most of its values are \(a time column holds either numbers "
        r"\(Unix seconds\) or timestamps such as 2026-01-02T15:04:05, not both\)\.",
    ):
        read_table(p, time_col="t")


def test_jsonl_lines_count_blank_lines(tmp_path):
    p = _write(tmp_path / "x.jsonl", b'{"user":"a","item":"x"}\n\n  \n{"user":"","item":"y"}\n')
    with pytest.raises(DataFormatError, match=r"x\.jsonl, line 4, column 'user': the id is empty"):
        read_table(p)
    p = _write(tmp_path / "y.jsonl", b'{"user":"a","item":"x"}\n\n{"user":"b","item":"y"\n')
    with pytest.raises(DataFormatError, match=r"y\.jsonl, line 3: not valid JSON \(Expecting"):
        read_table(p)


def test_quoted_line_breaks_across_parse_blocks(tmp_path, monkeypatch):
    import walsrec.data.readers as readers

    # an unused column with line breaks; a quoted field straddling two blocks broke the parse
    monkeypatch.setattr(readers, "_CSV_BLOCK_SIZE", 1000)
    rows = "".join(f'u{i},i{i},"a note\nover two lines"\n' for i in range(200))
    p = _write(tmp_path / "x.csv", ("user,item,note\n" + rows + "u,i,\n").encode())
    assert read_table(p).table.num_rows == 201
    p = _write(tmp_path / "y.csv", ("user,item,note\n" + rows + ",i,\n").encode())
    with pytest.raises(DataFormatError, match=r"y\.csv, line 402, column 'user': the id is empty"):
        read_table(p)


@pytest.mark.parametrize("compress", [False, True])
def test_utf8_byte_order_mark_before_the_header(tmp_path, compress):
    # was "column 'user' not found; the columns are '\ufeffuser', 'item', ..."
    data = "\ufeff".encode() + CSV.encode()
    p = _write(tmp_path / "x.csv", gzip.compress(data) if compress else data)
    assert _read(p) == EXPECTED
    p = _write(tmp_path / "y.csv", "\ufeffu1,i1,1.5\n".encode())
    assert _read(p, columns=["user", "item", "rating"]) == {
        "user": ["u1"],
        "item": ["i1"],
        "rating": [1.5],
    }


# ------------------------------------------ issue 15: the probe's and review's findings
def test_dates_and_timestamps_are_unix_seconds(tmp_path):
    # a CSV of dates (read as date32) and Parquet dates crashed: "Unsupported cast from
    # date32[day] to int64"; timestamps in ms/us/ns came out as ms/us/ns counts
    p = _write(tmp_path / "x.csv", b"user,item,ts\na,x,2020-01-01\nb,y,2020-01-02\n")
    assert read_table(p, time_col="ts").table.column("time").to_pylist() == [
        1577836800,
        1577923200,
    ]
    day = 1577836800
    columns = {
        "date32": pa.array([datetime.date(2020, 1, 1)], pa.date32()),
        "date64": pa.array([datetime.date(2020, 1, 1)], pa.date64()),
        "ns": pa.array([day * 10**9], pa.timestamp("ns")),
        "ms_fraction": pa.array([day * 1000 + 250], pa.timestamp("ms")),
        "utc": pa.array([day * 10**6], pa.timestamp("us", tz="Europe/Paris")),
        "decimal": pa.array([decimal.Decimal(day)], pa.decimal128(12, 0)),
    }
    pq.write_table(pa.table({"user": ["a"], "item": ["x"], **columns}), tmp_path / "x.parquet")
    for name in columns:
        got = read_table(str(tmp_path / "x.parquet"), time_col=name).table.column("time")
        assert got.to_pylist() == [day + 0.25 if name == "ms_fraction" else day], name


@pytest.mark.parametrize(
    "column,data_type",
    [
        (pa.array([1], pa.time64("us")), r"time64\[us\]"),
        (pa.array([1], pa.duration("s")), r"duration\[s\]"),
        (pa.array([[1]]), r"list<element: int64>"),
    ],
)
def test_time_of_day_and_duration_columns_are_refused(tmp_path, column, data_type):
    pq.write_table(pa.table({"user": ["a"], "item": ["x"], "t": column}), tmp_path / "x.parquet")
    with pytest.raises(
        DataFormatError,
        match=rf"x\.parquet: column 't' holds {data_type} values; times must be numbers or "
        r"timestamps\.",
    ):
        read_table(str(tmp_path / "x.parquet"), time_col="t")


def test_uint64_rating_of_2_63_or_more_is_a_bad_row(tmp_path):
    # was ArrowInvalid "Integer value 9223372036854775808 not in range"
    table = pa.table(
        {"user": ["a", "b"], "item": ["x", "y"], "rating": pa.array([1, 2**63], pa.uint64())}
    )
    pq.write_table(table, tmp_path / "x.parquet")
    path = str(tmp_path / "x.parquet")
    with pytest.raises(
        DataFormatError,
        match=r"x\.parquet, row 2, column 'rating': the rating 9223372036854775808 is an "
        r"integer beyond 2\*\*53",
    ):
        read_table(path, rating_col="rating")
    res = read_table(path, rating_col="rating", on_bad_rows="skip")
    assert res.table.column("rating").to_pylist() == [1.0]
    assert res.bad_reasons == {"integer rating beyond 2**53": 1}


@pytest.mark.parametrize(
    "times,match",
    [
        # was "line 2 ... '100' is neither a number nor a timestamp"
        (
            ["100", "2020-13-45"],
            r"line 3, column 'ts': the time '2020-13-45' is neither a number \(Unix seconds\) "
            r"nor a timestamp such as 2026-01-02T15:04:05\.",
        ),
        # was "'100' is neither a number nor a timestamp"
        (
            ["2020-01-01", "2020-01-02", "100"],
            r"line 4, column 'ts': the time '100' is a number, but the column's times are "
            r"timestamps, as most of its values are",
        ),
        (
            ["100", "2020-01-01"],
            r"line 3, column 'ts': the time '2020-01-01' is a timestamp, but the column's "
            r"times are numbers, as its first value is",
        ),
        (
            ["2020-01-01", "100"],
            r"line 3, column 'ts': the time '100' is a number, but the column's times are "
            r"timestamps, as its first value is",
        ),
        (
            ["1", "2", "2020-01-01T00:00:00Z", "3"],
            r"line 4, column 'ts': the time '2020-01-01T00:00:00Z' is a timestamp, but the "
            r"column's times are numbers, as most of its values are",
        ),
        (
            ["2020-01-01T00:00:00Z", "2020-01-01T00:00:01"],
            r"line 3, column 'ts': the timestamp '2020-01-01T00:00:01' cannot be read with "
            r"the column's earlier ones: some have a time zone",
        ),
    ],
)
def test_a_time_column_holds_numbers_or_timestamps(tmp_path, times, match):
    rows = "".join(f"u{i},i{i},{t}\n" for i, t in enumerate(times))
    p = _write(tmp_path / "x.csv", ("user,item,ts\n" + rows).encode())
    with pytest.raises(DataFormatError, match=r"x\.csv, " + match):
        read_table(p, time_col="ts", on_bad_rows="skip")  # not skippable: a guessed kind


def test_iso_timestamps_with_a_zone_or_fractions_are_read(tmp_path):
    # were "neither a number nor a timestamp"
    text = "user,item,ts\na,x,2020-01-01T00:00:00.5Z\nb,y,2020-01-01T02:00:01+02:00\nc,z,x\n"
    p = _write(tmp_path / "x.csv", text.replace("c,z,x\n", "").encode())
    assert read_table(p, time_col="ts").table.column("time").to_pylist() == [
        1577836800.5,
        1577836801.0,
    ]
    p = _write(tmp_path / "y.csv", text.replace("00:00:00.5Z", "00:00:00").encode())
    with pytest.raises(DataFormatError, match=r"y\.csv, line 3, column 'ts': the timestamp"):
        read_table(p, time_col="ts")


@pytest.mark.parametrize("bad,shown", [("nan", "nan"), ("-inf", "-inf"), ("1e400", "inf")])
def test_non_finite_times_are_bad_rows(tmp_path, bad, shown):
    # were accepted, and sorted as the latest (or earliest) interactions
    p = _write(tmp_path / "x.csv", f"user,item,ts\na,x,100\n\nb,y,{bad}\nc,z,5\n".encode())
    with pytest.raises(
        DataFormatError,
        match=rf"x\.csv, line 4, column 'ts': the time {shown} is not a finite number\.",
    ):
        read_table(p, time_col="ts")
    res = read_table(p, time_col="ts", on_bad_rows="skip")
    assert res.table.column("time").to_pylist() == [100.0, 5.0]
    assert res.bad_reasons == {"time not finite": 1}
    pq.write_table(
        pa.table({"user": ["a", "b"], "item": ["x", "y"], "t": [1.0, float(bad)]}),
        tmp_path / "x.parquet",
    )
    with pytest.raises(DataFormatError, match=r"x\.parquet, row 2, column 't': the time "):
        read_table(str(tmp_path / "x.parquet"), time_col="t")


@pytest.mark.parametrize("depth", [300, 20_000])
@pytest.mark.parametrize("balanced", [True, False])
@pytest.mark.parametrize("scan_bytes", [None, 7])
def test_deeply_nested_json_lines_are_refused(tmp_path, monkeypatch, depth, balanced, scan_bytes):
    import walsrec.data.readers as readers

    # 20,000 levels balanced crashed pyarrow's JSON reader (segmentation fault); unbalanced,
    # json.loads raised RecursionError (at 200,000 levels: a traceback)
    if scan_bytes:  # lines across the depth check's chunks
        monkeypatch.setattr(readers, "_JSON_SCAN_BYTES", scan_bytes)
    value = "[" * depth + ("]" * depth if balanced else "")
    text = f'{{"user":"a","item":"x"}}\n\n{{"user":{value},"item":"y"}}\n'
    p = _write(tmp_path / "x.jsonl", text.encode())
    with pytest.raises(
        DataFormatError, match=r"x\.jsonl, line 3: JSON nested deeper than 256 levels"
    ):
        read_table(p)


def test_json_lines_with_many_brackets_but_little_nesting_are_read(tmp_path, monkeypatch):
    import walsrec.data.readers as readers

    monkeypatch.setattr(readers, "_JSON_SCAN_BYTES", 64)  # lines across scan chunks
    many = json.dumps({"user": "[" * 1000 + "{", "item": "x", "tags": [{}] * 300})
    lines = [json.dumps({"user": "a", "item": "y"})] * 5 + [many, "", many]
    assert read_table(_write(tmp_path / "x.jsonl", "\n".join(lines).encode())).table.num_rows == 7


def test_invalid_json_nested_beyond_pythons_recursion_limit(tmp_path, monkeypatch):
    import walsrec.data.readers as readers

    # with the depth check off, json.loads on the error path raised RecursionError
    monkeypatch.setattr(readers, "_MAX_JSON_DEPTH", 10**9)
    text = '{"user":"a","item":"x"}\n{"user":' + "[" * 200_000 + "\n"
    with pytest.raises(
        DataFormatError, match=r"x\.jsonl, line 2: not valid JSON \(nested too deeply"
    ):
        read_table(_write(tmp_path / "x.jsonl", text.encode()))


@pytest.mark.parametrize(
    "second,match",
    [
        (
            '{"user":"b","item":"y","rating":"x"}',
            r"line 4, column 'rating': the value \"x\" is a JSON string, where the values "
            r"before it are numbers \(line 1: 3\); a column holds one kind of value\.",
        ),
        (
            '{"user":"b","item":"y","rating":{"a":"x"}}',
            r"line 4, column 'rating': the value \{\"a\": \"x\"\} is a JSON object, where",
        ),
        (
            "[1, 2]",
            r"line 4: the line is a JSON array \(\[1, 2\]\), where line 1 is a JSON object; "
            r"every line must be an object of fields",
        ),
    ],
)
def test_jsonl_kind_changes_name_the_line(tmp_path, second, match):
    # named pyarrow's "row 1" (of a parse block, blank lines not counted)
    text = '{"user":"a","item":"x","rating":3}\n\n\n' + second + "\n"
    with pytest.raises(DataFormatError, match=r"x\.jsonl, " + match):
        read_table(_write(tmp_path / "x.jsonl", text.encode()), rating_col="rating")


def _parse_option_spy(monkeypatch):
    import pyarrow.csv as pcsv

    seen = []
    real = pcsv.ParseOptions

    def spy(*args, **kwargs):
        seen.append(kwargs.get("newlines_in_values"))
        return real(*args, **kwargs)

    monkeypatch.setattr(pcsv, "ParseOptions", spy)
    return seen


@pytest.mark.parametrize("size", ["small", "large"])
def test_slow_quoted_line_break_parsing_only_when_a_quote_follows_the_first_line(
    tmp_path, monkeypatch, size
):
    import walsrec.data.readers as readers

    # newlines_in_values was always on: about 15% of the parse time
    monkeypatch.setattr(readers, "_CSV_BLOCK_SIZE", 1000)
    seen = _parse_option_spy(monkeypatch)
    n = 20 if size == "small" else 5000  # the large files do not fit in the 64 KiB peek
    plain = "".join(f"u{i},i{i},{i}\n" for i in range(n))
    p = _write(tmp_path / "plain.csv", ('"user","item","note"\n' + plain).encode())
    assert read_table(p).table.num_rows == n
    assert seen == [False]
    quoted = ("user,item,note\n" + "".join(f'u{i},i{i},"a\nb"\n' for i in range(n))).encode()
    for name, data in [("q.csv", quoted), ("q.csv.gz", gzip.compress(quoted))]:
        seen.clear()
        p = _write(tmp_path / name, data)
        assert read_table(p).table.num_rows == n
        assert seen == [True]
    seen.clear()
    p = _write(tmp_path / "plain.csv.gz", gzip.compress(("user,item,note\n" + plain).encode()))
    read_table(p)
    assert seen == [size == "large"]  # a compressed file is searched only when it is small


def test_unraisable_hook_is_restored_when_readers_overlap():
    import sys

    import walsrec.data.readers as readers

    # A in, B in, A out, B out: B put back A's hook, and during B the hook was not B's
    original = sys.unraisablehook
    first, second = (lambda row: None), (lambda row: None)
    caught_first, caught_second = [], []
    a = readers._catch_unraisable(first, caught_first)
    b = readers._catch_unraisable(second, caught_second)
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)
    sys.unraisablehook(types.SimpleNamespace(object=second, exc_value=ValueError("b")))
    b.__exit__(None, None, None)
    assert sys.unraisablehook is original
    assert [str(e) for e in caught_second] == ["b"] and caught_first == []


def test_readers_in_threads_report_bad_utf8_and_restore_the_hook(tmp_path):
    import sys

    original = sys.unraisablehook
    data = b"user,item,rating\na,x,1\n\xff,y\n"
    paths = [_write(tmp_path / f"x{i}.csv", data) for i in range(8)]

    def read(path):
        with pytest.raises(DataFormatError, match=r"line 3: not UTF-8 text"):
            read_table(path, rating_col="rating")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(read, paths * 4))
    assert sys.unraisablehook is original


def test_ids_with_control_characters(tmp_path):
    # the newline check now runs its regex only when some byte is below 0x0E
    p = _write(tmp_path / "x.csv", b'user,item\n"a\tb",x\n"c\rd",y\n')
    with pytest.raises(
        DataFormatError, match=r"x\.csv, line 3, column 'user': the id 'c\\rd' contains a newline"
    ):
        read_table(p)
    assert read_table(p, on_bad_rows="skip").table.column("user").to_pylist() == ["a\tb"]
    pq.write_table(pa.table({"user": ["a", "b"], "item": ["x", "y\x00"]}), tmp_path / "x.parquet")
    with pytest.raises(DataFormatError, match=r"x\.parquet, row 2, column 'item': the id 'y\\x00'"):
        read_table(str(tmp_path / "x.parquet"))


def test_json_number_beyond_float64_names_its_line(tmp_path):
    # was "invalid JSON lines (JSON parse error: Number too big to be stored in double. in
    # row 0)"
    text = '{"user":"a","item":"x","ts":5}\n\n{"user":"b","item":"y","ts":1e400}\n'
    with pytest.raises(
        DataFormatError,
        match=r"x\.jsonl, line 3: not valid JSON \(the number 1e400 is too large for a float64\)",
    ):
        read_table(_write(tmp_path / "x.jsonl", text.encode()), time_col="ts")
