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
        ("3", "soon", r"x\.csv, line 7, column 'ts': the time 'soon' is not a number, as the"),
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
    # was "line 2: column 't' is neither numbers nor timestamps (first value '2026-01-01')"
    p = _write(tmp_path / "x.csv", b"user,item,t\na,x,2026-01-01\n\nb,y,2026-01-02\nc,z,3\n")
    with pytest.raises(
        DataFormatError,
        match=r"x\.csv, line 5, column 't': the time '3' is neither a number nor a timestamp "
        r"such as 2026-01-02T15:04:05\.",
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
