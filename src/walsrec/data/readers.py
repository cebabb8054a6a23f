"""Reading interaction files: CSV/TSV, Parquet and JSON lines, plain or compressed.

Inputs are local paths, globs or fsspec URLs (``file://``, ``memory://``, ``gs://``,
``s3://`` when the filesystem package is installed). Every row-level problem is reported
with the file, the line (CSV and JSON lines: the physical line where the row starts,
counting the header, blank lines and the lines inside quoted fields; Parquet: the row),
the column and the value, or skipped and counted with ``on_bad_rows="skip"``.

The result has standard column names: ``user`` and ``item`` (text), ``rating``
(float64, when a rating column is named) and ``time`` (Unix seconds, int64 or float64
where a value has a fraction of a second, when a time column is named).

Rules for values, beyond "a number" and "an id":

- Text must be UTF-8 (a byte order mark before a CSV header is skipped). A file in another
  encoding is an error, never skipped row by row: it would silently drop every id with an
  accent.
- Ratings end up as float32 (the TFRecords' float lists), so a rating larger in magnitude
  than float32's largest value (3.4e38) is a bad row. An integer rating beyond 2**53
  (written as digits, or an integer column) is a bad row as well: float64, which ratings
  are read into, would round it without a word. Written as a decimal number (``1.5e16``)
  it is read, rounded.
- Ids are text or integers; a column of floats, lists, objects or other types is refused
  as a whole.
- Times are Unix seconds. A column of numbers is read as seconds; a column of timestamps
  (Parquet timestamps of any unit or time zone, dates, or ISO 8601 text such as
  ``2026-01-02``, ``2026-01-02T15:04:05``, ``2026-01-02 15:04:05.25`` or
  ``2026-01-02T15:04:05Z``; text without a time zone is UTC, a date is midnight UTC) is
  converted to seconds. A text column holds one kind or the other, never both: its kind is
  the kind of most of its values (numbers against the rest; on a tie, the kind of its
  first value), and its first value of another kind is an error naming the line, the value
  and the kind expected -- not skippable, since the kind was inferred. A time that is not
  a finite number (``nan``, ``inf``, ``1e400``) is a bad row. Time-of-day, duration,
  boolean and nested columns are refused as a whole.
- A JSON line nested deeper than 256 levels is refused (pyarrow's JSON reader crashes on
  deep nesting; interaction data never comes close).
"""

from __future__ import annotations

import csv
import glob as globlib
import io
import json
import math
import mmap
import os
import re
import stat
import sys
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from walsrec._checks import check_option
from walsrec.errors import DataFormatError, InvalidParameterError

__all__ = ["ReadResult", "expand_inputs", "read_table"]

FORMATS = ("csv", "parquet", "jsonl")
_SUFFIX_FORMAT = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".dat": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_SUFFIX_CODEC = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bz2", ".zst": "zstd", ".zstd": "zstd"}
_MAGIC_CODEC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\x28\xb5\x2f\xfd", "zstd"))
_DELIMITERS = (",", "\t", ";", "|")
# A decimal or scientific number, optionally signed; nan/inf are caught after parsing.
_NUMBER_RE = r"^\s*[-+]?((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|nan|NaN|inf|Inf|infinity|Infinity)\s*$"
# Bytes per CSV parsing block (a module constant so that tests can cross block boundaries).
_CSV_BLOCK_SIZE = 1 << 24
# float64 holds every integer up to 2**53 exactly, and not all of them beyond.
_MAX_EXACT_INT = 2**53
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_TIME_EXAMPLE = "2026-01-02T15:04:05"


@dataclass
class ReadResult:
    """What :func:`read_table` read."""

    table: pa.Table
    sources: list[str]
    n_rows_read: int = 0
    n_bad_rows: int = 0
    bad_reasons: Counter = field(default_factory=Counter)


def _is_url(path: str) -> bool:
    return "://" in path


def expand_inputs(inputs) -> list[str]:
    """Expand paths, globs and URLs (in the order given; each glob sorted)."""
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    out: list[str] = []
    for item in inputs:
        item = os.fspath(item)
        has_magic = globlib.has_magic(item)
        if _is_url(item):
            import fsspec

            fs, path = fsspec.core.url_to_fs(item)
            if has_magic:
                matches = [fs.unstrip_protocol(p) for p in sorted(fs.glob(path))]
            elif fs.exists(path):
                matches = [item]
            else:
                matches = []
        elif has_magic:
            matches = sorted(p for p in globlib.glob(item) if os.path.isfile(p))
        else:
            try:
                mode = os.stat(item).st_mode
            except PermissionError as exc:  # a folder on the way cannot be searched
                raise OSError(exc.errno, exc.strerror, item) from None
            except OSError:
                mode = 0
            if stat.S_ISDIR(mode):
                raise DataFormatError(
                    f"Input {item!r} is a directory; give its files, or a glob such as "
                    f"'{item.rstrip('/')}/*.csv'."
                )
            matches = [item] if stat.S_ISREG(mode) else []
        if not matches:
            what = "no files match the pattern" if has_magic else "file not found:"
            raise DataFormatError(f"Input {what} {item!r}.")
        out.extend(matches)
    return out


def _split_suffixes(path: str) -> tuple[str | None, str | None]:
    """(codec, format) from the file name, e.g. ``x.csv.zst`` -> ("zstd", "csv")."""
    name = path.rsplit("/", 1)[-1].lower()
    base, ext = os.path.splitext(name)
    codec = _SUFFIX_CODEC.get(ext)
    if codec is not None:
        base, ext = os.path.splitext(base)
    return codec, _SUFFIX_FORMAT.get(ext)


def _open_raw(path: str):
    if _is_url(path):
        import fsspec

        fs, p = fsspec.core.url_to_fs(path)
        return pa.PythonFile(fs.open(p, "rb"), mode="r")
    return pa.OSFile(path, "rb")


def _open(path: str, codec: str | None):
    raw = _open_raw(path)
    return pa.CompressedInputStream(raw, codec) if codec else raw


def _detect_codec(path: str, from_suffix: str | None) -> str | None:
    with _open_raw(path) as f:
        head = f.read(4)
    for magic, codec in _MAGIC_CODEC:
        if head.startswith(magic):
            return codec
    if from_suffix is not None:
        # Decompressing would fail deep in the reader with a bare OSError. A common cause:
        # a browser that decompressed a download and kept its name.
        raise DataFormatError(
            f"{path}: the name says {from_suffix}, but the file does not start as a "
            f"{from_suffix} file does (its first bytes are {head!r}); rename it without the "
            "compression suffix if it is not compressed."
        )
    return None


_PEEK_BYTES = 65536


def _peek(path: str, codec: str | None, n: int = _PEEK_BYTES) -> bytes:
    with _open(path, codec) as f:
        return f.read(n)


def _line_breaks_in_quotes_possible(path: str, codec: str | None, head: bytes) -> bool:
    """Whether a quoted CSV field could hold a line break.

    pyarrow parses such files about 15% slower (``newlines_in_values``). A quoted field
    with a line break has its closing quote after a line break, so a file with no ``"``
    after its first line break has none. The search is a byte search where the bytes are
    cheap to get: the whole file when ``head`` holds it, or a local uncompressed file
    memory-mapped (``mmap.find``, memchr speed, stopping at the first quote). A compressed
    or remote file would have to be decompressed or fetched once more for it, which costs
    more than the slower parse: it is assumed to have one.
    """
    breaks = [i for i in (head.find(b"\n"), head.find(b"\r")) if i >= 0]
    if not breaks:  # no line break (one line), or a first line longer than the peek
        return len(head) == _PEEK_BYTES
    start = min(breaks)
    if len(head) < _PEEK_BYTES:  # the whole file
        return head.find(b'"', start) >= 0
    if codec is not None or _is_url(path):
        return True
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return m.find(b'"', start) >= 0
    except (OSError, ValueError):  # a file that cannot be memory-mapped
        return True


def _text_lines(path: str, codec: str | None, newline: str | None):
    """The file as text, for the error path; undecodable bytes become U+FFFD."""
    return io.TextIOWrapper(
        _open(path, codec), encoding="utf-8-sig", errors="replace", newline=newline
    )


class _Locator:
    """Turns a row number of one file's table into 'file F, line L' text.

    CSV and JSON lines rows are named by the physical line where they start. Blank lines
    (which the parsers skip), quoted fields spanning several lines and, with
    ``on_bad_rows="skip"``, skipped rows make that differ from the row number, so the line
    is found by reading the file again, with Python's csv module (whose quoting rules are
    pyarrow's) -- only on the error path, and only up to the row asked for.
    """

    def __init__(self, path, fmt, codec=None, delimiter=",", n_fields=0, has_header=True):
        self.path, self.fmt, self.codec = path, fmt, codec
        self.delimiter, self.n_fields, self.has_header = delimiter, n_fields, has_header

    def __call__(self, row: int) -> str:
        if self.fmt == "parquet":
            return f"{self.path}, row {row + 1}"
        line = self.line_of(row)
        if line is None:  # the file could not be read again as the parser read it
            return f"{self.path}, data row {row + 1}"
        return f"{self.path}, line {line}"

    def records(self):
        """(first physical line, fields) of each non-blank record; fields None for JSON."""
        if self.fmt == "jsonl":
            with _text_lines(self.path, self.codec, "\n") as text:
                for number, line in enumerate(text, 1):
                    if line.strip():  # pyarrow skips blank lines
                        yield number, None
            return
        with _text_lines(self.path, self.codec, "") as text:
            reader = csv.reader(text, delimiter=self.delimiter, quotechar='"', strict=False)
            end = 0  # the last physical line of the previous record
            for fields in reader:
                start, end = end + 1, reader.line_num
                if fields:  # [] is a blank line, which pyarrow skips
                    yield start, fields

    def data_records(self):
        """Records after the header; CSV ones with the wrong number of fields included."""
        records = self.records()
        if self.fmt == "csv" and self.has_header:
            next(records, None)
        return records

    def line_of(self, row: int) -> int | None:
        """Physical line of the table's ``row`` (rows with a wrong field count are not rows)."""
        try:
            rows = (
                line
                for line, fields in self.data_records()
                if fields is None or len(fields) == self.n_fields
            )
            return next((line for i, line in enumerate(rows) if i == row), None)
        except csv.Error:  # e.g. a field longer than the csv module's limit
            return None

    def first_wrong_field_count(self, undecodable=False) -> tuple[int, list[str]] | None:
        """(line, fields) of the first record with a wrong number of fields.

        With ``undecodable``, of the first such record that is not UTF-8 (with
        ``on_bad_rows="skip"``, the others before it were skipped).
        """
        try:
            return next(
                (
                    (line, f)
                    for line, f in self.data_records()
                    if len(f) != self.n_fields and (not undecodable or "\ufffd" in "".join(f))
                ),
                None,
            )
        except csv.Error:
            return None


def read_table(
    inputs,
    *,
    user_col: str = "user",
    item_col: str = "item",
    rating_col: str | None = None,
    time_col: str | None = None,
    delimiter: str | None = None,
    columns: list[str] | None = None,
    format: str | None = None,
    on_bad_rows: str = "error",
    nonnegative_rating: bool = False,
) -> ReadResult:
    """Read interaction files into one table with standard column names.

    Parameters
    ----------
    inputs : str, path or list of them
        Files, globs or fsspec URLs. Compression (gzip, bz2, zstd) is detected from the
        file's first bytes.
    user_col, item_col : str
        Id columns (read as text, exactly as written).
    rating_col, time_col : str, optional
        Interaction value and timestamp columns.
    delimiter : str, optional
        CSV delimiter; detected from the first line when omitted (``, \\t ; |``).
    columns : list of str, optional
        Column names of headerless CSV files.
    format : {"csv", "parquet", "jsonl"}, optional
        Overrides the format implied by the file suffix.
    on_bad_rows : {"error", "skip"}, default "error"
        With "skip", rows with a wrong number of fields, a missing or multi-line id, a
        time that is missing or not finite, or a rating that is not a finite number,
        beyond float32's range or an integer beyond 2**53 (negative, when
        ``nonnegative_rating``) are dropped and counted instead of raising. Text that is
        not UTF-8, times of another kind than their column's (see the module docstring)
        and JSON nested too deeply are errors either way.
    nonnegative_rating : bool, default False
        Treat a negative rating as bad (for transforms that cannot take one).

    Returns
    -------
    ReadResult
        ``table`` with columns ``user``, ``item`` and, when named, ``rating`` (float64) and
        ``time`` (Unix seconds, int64 or float64); plus the expanded ``sources`` and
        bad-row counts.

    Raises
    ------
    DataFormatError
        Naming the file, line (or row), column and value of the first problem.
    OSError
        When a file cannot be read (its message names the file).
    """
    check_option(on_bad_rows, "on_bad_rows", "parameter", ("error", "skip"))
    if format is not None:  # None: the format the file suffix implies
        check_option(format, "format", "parameter", FORMATS, one_of=True, show_option=str)
    if delimiter is not None and len(delimiter) != 1:
        raise InvalidParameterError(
            f"The 'delimiter' parameter must be a single character. Got {delimiter!r} instead."
        )
    roles = {"user": user_col, "item": item_col}
    if rating_col is not None:
        roles["rating"] = rating_col
    if time_col is not None:
        roles["time"] = time_col
    sources = expand_inputs(inputs)
    result = ReadResult(table=pa.table({}), sources=sources)
    tables = []
    for path in sources:
        try:
            table, locate = _read_one(path, roles, delimiter, columns, format, on_bad_rows, result)
        except OSError as exc:
            if exc.filename is None and path not in str(exc):  # say which file
                raise OSError(exc.errno, f"cannot read it ({exc})", path) from exc
            raise
        result.n_rows_read += table.num_rows
        table = _validate(table, roles, locate, on_bad_rows, nonnegative_rating, result)
        tables.append(table)
    result.n_rows_read += result.bad_reasons["wrong number of fields"]
    result.table = pa.concat_tables(tables, promote_options="permissive") if tables else None
    return result


def _read_one(path, roles, delimiter, columns, fmt_override, on_bad_rows, result):
    codec_suffix, fmt = _split_suffixes(path)
    fmt = fmt_override or fmt
    if fmt is None:
        raise DataFormatError(
            f"{path}: cannot tell the format from the file name; name it .csv, .tsv, "
            ".parquet or .jsonl (optionally .gz/.bz2/.zst), or pass format= (--format)."
        )
    codec = _detect_codec(path, codec_suffix) if fmt != "parquet" else None
    wanted = list(dict.fromkeys(roles.values()))
    try:
        if fmt == "parquet":
            table = _read_parquet(path, wanted)
            return _standardise(table, roles, path), _Locator(path, fmt)
        if fmt == "jsonl":
            table = _read_json(path, codec, wanted)
            return _standardise(table, roles, path), _Locator(path, fmt, codec)
        return _read_csv(path, codec, roles, delimiter, columns, on_bad_rows, result)
    except OSError as exc:
        # pyarrow's decompressors raise OSError without an errno on corrupt data; an
        # errno means the operating system failed (permissions, disk), which stays OSError
        if codec is not None and exc.errno is None:
            raise DataFormatError(f"{path}: cannot be decompressed as {codec} ({exc}).") from None
        raise


def _missing(path, wanted, found):
    missing = [c for c in wanted if c not in found]
    if missing:
        raise DataFormatError(
            f"{path}: column {missing[0]!r} not found; the columns are "
            f"{', '.join(repr(c) for c in found)}."
        )


def _read_parquet(path, wanted):
    import pyarrow.parquet as pq

    try:
        if _is_url(path):
            import fsspec

            fs, p = fsspec.core.url_to_fs(path)
            with fs.open(p, "rb") as f:
                pfile = pq.ParquetFile(f)
                _missing(path, wanted, pfile.schema_arrow.names)
                return pfile.read(columns=wanted)
        pfile = pq.ParquetFile(path)
        _missing(path, wanted, pfile.schema_arrow.names)
        return pfile.read(columns=wanted)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataFormatError(f"{path}: not a readable Parquet file ({exc}).") from None


def _read_json(path, codec, wanted):
    import pyarrow.json as pj

    _check_json_depth(path, codec)
    try:
        with _open(path, codec) as f:
            table = pj.read_json(f)
    except pa.ArrowInvalid as exc:
        # pyarrow's "row N" counts from 0 within a block, without blank lines: find the line
        bad = _first_invalid_json_line(path, codec)
        if bad is not None:
            raise DataFormatError(f"{path}, line {bad[0]}: not valid JSON ({bad[1]}).") from None
        changed = _JSON_KIND_CHANGE.search(str(exc))
        found = _first_kind_change(path, codec, *changed.groups()) if changed else None
        if found is not None:
            raise DataFormatError(f"{path}, {found}") from None
        raise DataFormatError(f"{path}: invalid JSON lines ({exc}).") from None
    try:
        names = table.column_names
    except UnicodeDecodeError:  # pyarrow's JSON reader does not check UTF-8
        raise DataFormatError(f"{path}: a field name is not UTF-8 text.") from None
    _missing(path, wanted, names)
    return table.select(wanted)


def _first_invalid_json_line(path, codec) -> tuple[int, str] | None:
    """(line, reason) of the first line that is not one JSON value, on the error path."""
    with _text_lines(path, codec, "\n") as text:
        for number, line in enumerate(text, 1):
            if line.strip():
                try:
                    json.loads(line, parse_float=_json_float)
                except ValueError as exc:
                    return number, exc.args[0] if exc.args else str(exc)
                except RecursionError:
                    return number, "nested too deeply to be read"
    return None


def _json_float(text: str) -> float:
    """A JSON number, refused where pyarrow refuses it: beyond float64 ("1e400")."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:50]} is too large for a float64")
    return value


# pyarrow's message when a field's JSON kind differs from the one its block started with
_JSON_KIND_CHANGE = re.compile(r"Column\(([^)]*)\) changed from (\w+) to (\w+)")


def _json_kind(value) -> str:
    """pyarrow's name for the JSON kind of a parsed value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _first_kind_change(path, codec, field_path, before, after) -> str | None:
    """'line L, column C: ...' for pyarrow's "Column(/a/b) changed from X to Y in row N".

    Its row counts from the start of a parse block: the line is found by reading the file
    again, on the error path, for the first value of kind Y after one of kind X.
    """
    keys = field_path.split("/")[1:]
    first = None  # (line, value) of the first value of the kind `before`
    with _text_lines(path, codec, "\n") as text:
        for number, line in enumerate(text, 1):
            if not line.strip():
                continue
            value = json.loads(line)  # the caller found every line valid
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            kind = _json_kind(value)
            if first is None and kind == before:
                first = number, value
            elif first is not None and kind == after:
                shown = json.dumps(value)[:200]
                if not keys:
                    return (
                        f"line {number}: the line is a JSON {after} ({shown}), where line "
                        f"{first[0]} is a JSON {before}; every line must be an object of "
                        'fields, such as {"user": 1, "item": 2}.'
                    )
                where = f"column {keys[0]!r}" + (
                    f" (its field {'/'.join(keys[1:])!r})" if len(keys) > 1 else ""
                )
                return (
                    f"line {number}, {where}: the value {shown} is a JSON {after}, "
                    f"where the values before it are {before}s (line {first[0]}: "
                    f"{json.dumps(first[1])[:200]}); a column holds one kind of value."
                )
    return None


# pyarrow's JSON reader crashes (stack overflow) on deeply nested lines: near 10,000 levels
# with 8 MiB stacks; interaction data has two or three
_MAX_JSON_DEPTH = 256
_JSON_SCAN_BYTES = 1 << 24
_JSON_STRING_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')


def _check_json_depth(path, codec) -> None:
    """Refuse a line nested deeper than ``_MAX_JSON_DEPTH``, before pyarrow reads the file.

    A line's depth is at most its number of ``[`` and ``{`` bytes, which is at most its
    length: brackets are counted only in chunks with a line longer than the limit, and
    lines with too many are measured exactly. About 7 ms per 16 MiB of short lines
    (pyarrow's parse: about 55 ms).
    """
    suspects = []  # lines with more opening brackets than the limit
    number = 1  # the line that the next chunk goes on with
    carry_len = carry_opens = 0  # its bytes and opening brackets in earlier chunks
    with _open(path, codec) as f:
        while chunk := f.read(_JSON_SCAN_BYTES):
            data = np.frombuffer(chunk, dtype=np.uint8)
            ends = np.flatnonzero(data == ord("\n"))
            tail = int(ends[-1]) + 1 if ends.size else 0  # where the unfinished line starts
            lengths = np.diff(ends, prepend=-1) if ends.size else ends
            if ends.size:
                lengths[0] += carry_len
            unfinished = (0 if ends.size else carry_len) + data.size - tail
            if max(lengths.max(initial=0), unfinished) > _MAX_JSON_DEPTH:
                # "[" and "{" are the bytes that are "{" with bit 0x20 set
                line = np.searchsorted(ends, np.flatnonzero((data | 0x20) == ord("{")))
                counts = np.bincount(line, minlength=ends.size + 1)
                counts[0] += carry_opens
                too_many = np.flatnonzero(counts[: ends.size] > _MAX_JSON_DEPTH)
                suspects.extend((number + too_many).tolist())
                carry_opens = int(counts[ends.size])
            else:  # the unfinished line's bytes here are few
                opens = int(np.count_nonzero((data[tail:] | 0x20) == ord("{")))
                carry_opens = (0 if ends.size else carry_opens) + opens
            carry_len = unfinished
            number += ends.size
    if carry_opens > _MAX_JSON_DEPTH:
        suspects.append(number)
    if not suspects:
        return
    wanted = set(suspects)
    with _text_lines(path, codec, "\n") as text:
        for number, line in enumerate(text, 1):
            if number in wanted and _json_depth(line) > _MAX_JSON_DEPTH:
                raise DataFormatError(
                    f"{path}, line {number}: JSON nested deeper than {_MAX_JSON_DEPTH} levels "
                    "(arrays and objects within each other); a line of interactions is one "
                    "object of plain fields."
                )
            if number >= suspects[-1]:
                return


def _json_depth(line: str) -> int:
    """How deeply a JSON text nests arrays and objects (brackets inside strings ignored)."""
    stripped = _JSON_STRING_RE.sub('""', line).encode()
    data = np.frombuffer(stripped, dtype=np.uint8)
    step = ((data == ord("[")) | (data == ord("{"))).astype(np.int64)
    step -= (data == ord("]")) | (data == ord("}"))
    return int(np.cumsum(step).max()) if step.size else 0


def _detect_delimiter(first_line: str, path: str) -> str:
    if ".tsv" in path.rsplit("/", 1)[-1].lower():
        return "\t"
    counts = {d: first_line.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def _read_csv(path, codec, roles, delimiter, columns, on_bad_rows, result):
    import pyarrow.csv as pcsv

    head = _peek(path, codec)
    # pyarrow skips a byte order mark (Excel and Notepad write one) before the header, so
    # the header read here must skip it too
    text = head.decode("utf-8", errors="replace").removeprefix("\ufeff")
    newlines_in_values = _line_breaks_in_quotes_possible(path, codec, head)
    # pyarrow skips blank lines before the header as well
    first_line = next((ln for ln in text.split("\n") if ln.rstrip("\r")), "").rstrip("\r")
    if delimiter is None:
        delimiter = _detect_delimiter(first_line, path)
    if columns is not None:
        names = list(columns)
    else:
        names = next(csv.reader(io.StringIO(first_line), delimiter=delimiter), [])
        names = [n.strip() for n in names]
    wanted = list(dict.fromkeys(roles.values()))
    _missing(path, wanted, names)
    locate = _Locator(path, "csv", codec, delimiter, len(names), has_header=columns is None)
    # Ids are read as bytes and checked as UTF-8 in _validate, which names the line of a
    # bad one; pyarrow's own check names only the column.
    column_types = {roles["user"]: pa.binary(), roles["item"]: pa.binary()}
    bad_rows = []
    skipped = [0]  # rows with a wrong number of fields, in the last read only

    def handler(row):
        if on_bad_rows == "skip":
            skipped[0] += 1
            return "skip"
        bad_rows.append(row)
        return "error"

    def read(types):
        skipped[0] = 0
        return pcsv.read_csv(
            _open(path, codec),
            read_options=pcsv.ReadOptions(
                column_names=names if columns is not None else None,
                block_size=_CSV_BLOCK_SIZE,
            ),
            # newlines_in_values: without it a quoted field with a line break that
            # straddles two blocks breaks the parse (about 15% slower reading)
            parse_options=pcsv.ParseOptions(
                delimiter=delimiter,
                invalid_row_handler=handler,
                newlines_in_values=newlines_in_values,
            ),
            convert_options=pcsv.ConvertOptions(
                column_types=types,
                include_columns=wanted,
                strings_can_be_null=False,
                null_values=[""],
            ),
        )

    undecodable = []  # pyarrow could not hand a bad row to the handler: not UTF-8
    try:
        with _catch_unraisable(handler, undecodable):
            types = dict(column_types)
            if "rating" in roles:
                types[roles["rating"]] = pa.float64()
            try:
                table = read(types)
            except pa.ArrowInvalid as exc:
                if bad_rows or undecodable or "conversion error" not in str(exc):
                    raise
                # Some rating is not a number: read it as text and report or skip it below.
                types[roles["rating"]] = pa.binary()
                table = read(types)
            if "rating" in roles and _any_beyond_exact_ints(table.column(roles["rating"])):
                # Read as float64, 9007199254740993 became ...992 without a word: read the
                # text again, to refuse integers written out beyond 2**53 (but not 1e20).
                types[roles["rating"]] = pa.binary()
                table = read(types)
    except pa.ArrowInvalid as exc:
        if bad_rows or undecodable:
            # pyarrow's row numbers skip blank lines and count multi-line records once
            found = locate.first_wrong_field_count(undecodable=bool(undecodable))
            if found is None:
                raise DataFormatError(f"{path}: cannot be parsed as CSV ({exc}).") from None
            line, fields = found
            text = delimiter.join(fields)
            if undecodable:
                raise DataFormatError(
                    f"{path}, line {line}: not UTF-8 text ({text[:200]!r}, U+FFFD marking "
                    "the bytes that are not); convert the file to UTF-8."
                ) from None
            raise DataFormatError(
                f"{path}, line {line}: expected {len(names)} fields separated by "
                f"{delimiter!r}, found {len(fields)}: {text[:200]!r}."
            ) from None
        raise DataFormatError(f"{path}: cannot be parsed as CSV ({exc}).") from None
    if skipped[0]:
        result.bad_reasons["wrong number of fields"] += skipped[0]
        result.n_bad_rows += skipped[0]
    return _standardise(table, roles, path), locate


# Readers active in any thread, by id of their handler: one process-wide hook serves them
# all, so that threads reading at once never restore each other's hook.
_unraisable_lock = threading.Lock()
_unraisable_sinks: dict[int, tuple[object, list]] = {}
_hook_replaced = [None]  # the hook that was there before ours


def _route_unraisable(unraisable) -> None:
    sink = _unraisable_sinks.get(id(unraisable.object))
    if sink is not None and sink[0] is unraisable.object:
        sink[1].append(unraisable.exc_value)
    else:
        (_hook_replaced[0] or sys.__unraisablehook__)(unraisable)


@contextmanager
def _catch_unraisable(handler, caught: list):
    """Collect, instead of printing, what pyarrow reports as unraisable from ``handler``.

    pyarrow decodes a bad row's text before calling the handler; when the row is not
    UTF-8 that raises inside pyarrow, which prints "Exception ignored in ..." with a
    traceback on stderr and fails the read. The caller reports the failure, in one message.
    Thread-safe: ``sys.unraisablehook`` is set while any reader is active, and put back
    by the last one out (unless someone replaced it meanwhile).
    """
    with _unraisable_lock:
        if not _unraisable_sinks:
            _hook_replaced[0] = sys.unraisablehook
            sys.unraisablehook = _route_unraisable
        _unraisable_sinks[id(handler)] = (handler, caught)
    try:
        yield
    finally:
        with _unraisable_lock:
            del _unraisable_sinks[id(handler)]
            if not _unraisable_sinks:
                if sys.unraisablehook is _route_unraisable:
                    sys.unraisablehook = _hook_replaced[0]
                _hook_replaced[0] = None


def _any_beyond_exact_ints(col) -> bool:
    """Whether a float64 column holds a magnitude of 2**53 or more."""
    if not pa.types.is_floating(col.type):
        return False
    for part in (col, None):
        if part is None:  # some magnitude is that large, or infinite: look again without inf
            part = pc.filter(col, pc.is_finite(col))
        if len(part) == part.null_count:
            return False
        low, high = (x.as_py() for x in pc.min_max(part).values())  # NaN is skipped
        if -_MAX_EXACT_INT < low and high < _MAX_EXACT_INT:
            return False
    return True


_KINDS = (
    ("text", (pa.types.is_string, pa.types.is_large_string)),
    ("bytes", (pa.types.is_binary, pa.types.is_large_binary)),
    ("integer", (pa.types.is_integer,)),
    ("float", (pa.types.is_floating, pa.types.is_decimal)),
    ("timestamp", (pa.types.is_timestamp, pa.types.is_date)),
    ("null", (pa.types.is_null,)),
)
# What each role accepts, and how a refusal is worded.
_ACCEPTED = {
    "user": ({"text", "bytes", "integer", "null"}, "ids must be text or integers"),
    "item": ({"text", "bytes", "integer", "null"}, "ids must be text or integers"),
    "rating": ({"text", "bytes", "integer", "float", "null"}, "ratings must be numbers"),
    "time": (
        {"text", "bytes", "integer", "float", "timestamp", "null"},
        "times must be numbers or timestamps",
    ),
}


def _kind(data_type) -> str:
    for kind, tests in _KINDS:
        if any(test(data_type) for test in tests):
            return kind
    return "other"  # lists, structs (JSON objects), maps, booleans, ...


def _standardise(table: pa.Table, roles: dict, path: str) -> pa.Table:
    """Rename to the standard names; refuse a column whose type cannot hold its role."""
    cols = {}
    for role, name in roles.items():
        col = table.column(name)
        if pa.types.is_dictionary(col.type):  # e.g. a pandas categorical in Parquet
            col = col.cast(col.type.value_type)
        kind = _kind(col.type)
        if role in ("user", "item") and kind == "float":
            raise DataFormatError(
                f"{path}: column {name!r} holds floating-point numbers; ids must be text "
                "or integers (write them without a decimal point)."
            )
        accepted, rule = _ACCEPTED[role]
        if kind not in accepted:
            raise DataFormatError(f"{path}: column {name!r} holds {col.type} values; {rule}.")
        if role in ("user", "item") and kind == "integer":
            col = col.cast(pa.string())
        cols[role] = col
    return pa.table(cols)


def _as_utf8(col) -> tuple[pa.ChunkedArray | None, int | None]:
    """A text or bytes column as strings, or the row of its first value that is not UTF-8.

    pyarrow's JSON and Parquet readers do not check text, and CSV ids are read as bytes;
    the cast to string checks (once). The first bad row is found by halving: O(n) work in
    O(log n) casts.
    """
    as_bytes = col.cast(pa.large_binary() if _is_large(col.type) else pa.binary())
    target = pa.large_string() if _is_large(col.type) else pa.string()
    try:
        return as_bytes.cast(target), None
    except pa.ArrowInvalid:
        return None, _first_failure(as_bytes, lambda part: part.cast(target))


def _is_large(data_type) -> bool:
    return pa.types.is_large_string(data_type) or pa.types.is_large_binary(data_type)


def _first_failure(values, convert) -> int:
    """Index of the first value that ``convert`` refuses, given that it refuses them all."""
    lo, hi = 0, len(values)
    while hi - lo > 1:  # the failure is in values[lo:hi]
        mid = (lo + hi) // 2
        try:
            convert(values.slice(lo, mid - lo))
            lo = mid
        except pa.ArrowInvalid:
            hi = mid
    return lo


def _may_hold_control_bytes(col) -> bool:
    """Whether a text column may hold a byte below 0x0E (newlines and NUL among them).

    numpy's minimum over the chunks' data buffers, without a copy: 1.4 ms for 5M ids,
    where a regex over the values takes 0.2 s. A buffer may hold bytes outside the values
    (of a slice, or under a null), so True means maybe.
    """
    for chunk in col.chunks if isinstance(col, pa.ChunkedArray) else [col]:
        data = chunk.buffers()[2]
        if data is not None and data.size and np.frombuffer(data, np.uint8).min() < 0x0E:
            return True
    return False


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _validate(table, roles, locate, on_bad_rows, nonnegative, result) -> pa.Table:
    """Check ids, ratings and times; raise on the first problem or drop and count."""
    checks = _RowChecks(table, roles, locate, on_bad_rows, result)
    for role in ("user", "item"):
        _check_ids(checks, role)
    if "rating" in roles:
        _check_ratings(checks, nonnegative)
    if "time" in roles:
        _check_times(checks)
    return checks.kept_rows()


class _RowChecks:
    """What :func:`_validate`'s checks share: the table, its columns replaced as they are
    converted, the rows kept so far, and what a problem does (raise, or drop and count)."""

    def __init__(self, table: pa.Table, roles: dict, locate, on_bad_rows: str, result):
        self.table = table
        self.roles = roles
        self.locate = locate
        self.on_bad_rows = on_bad_rows
        self.result = result
        self.keep = np.ones(table.num_rows, dtype=bool)

    def error(self, pos, role, message):
        """Raise the DataFormatError of row ``pos``'s value of ``role``."""
        value = self.table.column(role)[pos].as_py()
        raise DataFormatError(
            f"{self.locate(pos)}, column {self.roles[role]!r}: {message.format(value=repr(value))}"
        )

    def problem(self, mask, reason, role, message):
        """Rows of ``mask`` (among those kept) are bad: raise on the first, or drop them
        and count them under ``reason``."""
        mask = mask & self.keep
        if not mask.any():
            return
        if self.on_bad_rows == "error":
            self.error(_first(mask), role, message)
        self.result.bad_reasons[reason] += int(mask.sum())
        self.result.n_bad_rows += int(mask.sum())
        self.keep[mask] = False

    def missing(self, col, reason, role, message):
        """The rows where ``col`` (the role's column) is null are a :meth:`problem`."""
        if col.null_count:
            self.problem(pc.is_null(col).to_numpy(zero_copy_only=False), reason, role, message)

    def replace(self, role, col):
        """Put ``col`` in place of the role's column; returns it."""
        self.table = self.table.set_column(self.table.column_names.index(role), role, col)
        return col

    def as_text(self, role):
        """The role's text or bytes column as strings; text that is not UTF-8 is an error."""
        col = self.table.column(role)
        text, bad = _as_utf8(col)
        if bad is not None:  # shown as bytes: as text it could not be shown at all
            self.replace(role, col.cast(pa.large_binary() if _is_large(col.type) else pa.binary()))
            self.error(bad, role, "the value {value} is not UTF-8 text; convert the file to UTF-8.")
        return self.replace(role, text.cast(pa.string()))

    def kept_rows(self) -> pa.Table:
        """The table without the rows dropped."""
        if not self.keep.all():
            return self.table.filter(pa.array(self.keep))
        return self.table


def _check_ids(checks: _RowChecks, role: str) -> None:
    """User or item ids (``role``): present, not empty, on one line."""
    col = checks.table.column(role)
    if _kind(col.type) in ("text", "bytes", "null"):
        col = checks.as_text(role)
    checks.missing(col, "missing id", role, "the id is missing.")
    col = pc.fill_null(col, "")
    empty = pc.equal(pc.binary_length(col), 0).to_numpy(zero_copy_only=False)
    checks.problem(empty, "missing id", role, "the id is empty.")
    if _may_hold_control_bytes(col):  # else the regex is skipped: 0.2 s per 5M ids
        multiline = pc.match_substring_regex(col, "[\n\r\x00]")
        checks.problem(
            multiline.to_numpy(zero_copy_only=False),
            "id with a newline or NUL",
            role,
            "the id {value} contains a newline or NUL character; ids must be one line.",
        )


def _check_ratings(checks: _RowChecks, nonnegative: bool) -> None:
    """Ratings as float64: numbers, present, finite, within float32's range (and not
    negative with ``nonnegative``)."""
    col = _numeric_ratings(checks)
    values = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
    if col.null_count:
        checks.missing(col, "rating missing", "rating", "the rating is missing.")
        values = np.where(np.isnan(values), 0.0, values)
    checks.problem(
        ~np.isfinite(values),
        "rating not finite",
        "rating",
        "the rating {value} is not a finite number.",
    )
    # Ratings are stored as float32 (the TFRecords' float lists), where these are inf.
    with np.errstate(invalid="ignore"):
        checks.problem(
            np.abs(values) > _FLOAT32_MAX,
            "rating beyond float32 range",
            "rating",
            "the rating {value} is beyond float32's range (magnitudes up to 3.4e38), "
            "in which ratings are stored.",
        )
    if nonnegative:
        with np.errstate(invalid="ignore"):
            checks.problem(
                values < 0,
                "negative rating",
                "rating",
                "the rating {value} is negative, which the rating transform cannot take.",
            )
    checks.replace("rating", col.cast(pa.float64()))


def _numeric_ratings(checks: _RowChecks):
    """The rating column as numbers: text that is not a number, or an integer beyond 2**53
    (as text or in an integer column), is a problem, its rating NaN or 0 from here on."""
    col = checks.table.column("rating")
    kind = _kind(col.type)
    if kind in ("text", "bytes"):
        text = pc.utf8_trim_whitespace(pc.fill_null(checks.as_text("rating"), ""))
        numeric = pc.match_substring_regex(text, _NUMBER_RE).to_numpy(zero_copy_only=False)
        checks.problem(
            ~numeric, "rating not a number", "rating", "the rating {value} is not a number."
        )
        checks.problem(
            numeric & _integer_text_beyond_exact(text),
            "integer rating beyond 2**53",
            "rating",
            _BEYOND_EXACT,
        )
        col = pc.if_else(pa.array(numeric), text, "nan").cast(pa.float64())
    elif kind == "integer":
        # a uint64 scalar for unsigned columns: compared with an int64 one, pyarrow
        # casts the column to int64 and fails on values of 2**63 and more
        signed = pa.types.is_signed_integer(col.type)
        limit = pa.scalar(_MAX_EXACT_INT, pa.int64() if signed else pa.uint64())
        beyond = pc.greater(col, limit)
        if signed:
            beyond = pc.or_(beyond, pc.less(col, -_MAX_EXACT_INT))
        beyond = pc.fill_null(beyond, False)
        checks.problem(
            beyond.to_numpy(zero_copy_only=False),
            "integer rating beyond 2**53",
            "rating",
            _BEYOND_EXACT,
        )
        # dropped rows: keeps the cast below exact
        col = pc.if_else(beyond, pa.scalar(0, col.type), col)
    return col


def _check_times(checks: _RowChecks) -> None:
    """Times as Unix seconds (text parsed as numbers or timestamps): present and finite."""
    col = checks.table.column("time")
    if _kind(col.type) in ("text", "bytes"):
        col = _parse_times(checks.as_text("time"), lambda pos, msg: checks.error(pos, "time", msg))
    col = _unix_seconds(col)
    checks.missing(col, "time missing", "time", "the time is missing.")
    if pa.types.is_floating(col.type):  # the value shown is the text, unless pyarrow's
        # CSV reader took the column for floats (1e400 is then shown as inf)
        finite = pc.fill_null(pc.is_finite(col), True).to_numpy(zero_copy_only=False)
        checks.problem(
            ~finite, "time not finite", "time", "the time {value} is not a finite number."
        )
    checks.replace("time", col)


_BEYOND_EXACT = (
    "the rating {value} is an integer beyond 2**53, which float64 cannot hold exactly; give "
    "it as a floating-point number (such as 1.5e16) to have it rounded."
)


def _integer_text_beyond_exact(text) -> np.ndarray:
    """Mask of the texts that are whole numbers in digits beyond 2**53 in magnitude."""
    is_int = pc.match_substring_regex(text, r"^[-+]?\d+$")
    digits = pc.replace_substring_regex(text, r"^[-+]?0*", "")
    n_digits = pc.utf8_length(digits)
    limit = str(_MAX_EXACT_INT)
    # equal lengths of digits compare as numbers do
    beyond = pc.or_(
        pc.greater(n_digits, len(limit)),
        pc.and_(pc.equal(n_digits, len(limit)), pc.greater(digits, limit)),
    )
    return pc.and_(is_int, beyond).to_numpy(zero_copy_only=False)


# How text times are parsed, in order: the first that reads every timestamp of a column
# wins (whole seconds, fractions, with a time zone or offset, both)
_TIMESTAMP_TYPES = (
    pa.timestamp("s"),
    pa.timestamp("ns"),
    pa.timestamp("s", tz="UTC"),
    pa.timestamp("ns", tz="UTC"),
)
_TIME_RULE = (
    "a time column holds either numbers (Unix seconds) or timestamps such as "
    f"{_TIME_EXAMPLE}, not both"
)
_NEITHER = (
    f"the time {{value}} is neither a number (Unix seconds) nor a timestamp such as "
    f"{_TIME_EXAMPLE}."
)


def _parse_times(col, error):
    """Text times as numbers or timestamps; ``error(row, message)`` raises.

    The column's kind is the kind of most of its values, numbers against the rest (on a
    tie, of its first value); its first value of another kind is the error (not
    skippable: the kind is a guess). The module docstring states the rule.
    """
    text = pc.utf8_trim_whitespace(col)
    numeric = pc.fill_null(pc.match_substring_regex(text, _NUMBER_RE), False)
    numeric = numeric.to_numpy(zero_copy_only=False)
    present = pc.is_valid(text).to_numpy(zero_copy_only=False)
    n_numbers, n_present = int(numeric.sum()), int(present.sum())
    tie = 2 * n_numbers == n_present
    by = "as its first value is" if tie else "as most of its values are"
    if 2 * n_numbers > n_present or (tie and n_present and numeric[_first(present)]):
        bad = present & ~numeric
        if bad.any():
            pos = _first(bad)
            if _timestamps(text.slice(pos, 1)) is None:
                error(pos, _NEITHER)
            error(
                pos,
                f"the time {{value}} is a timestamp, but the column's times are numbers, "
                f"{by} ({_TIME_RULE}).",
            )
        try:
            return pc.cast(text, pa.int64())
        except pa.ArrowInvalid:  # decimals, exponents, a + sign, beyond int64
            return pc.cast(text, pa.float64())
    parsed = _timestamps(text)
    if parsed is not None:
        return parsed
    # the first value that no way of parsing reads with the values before it
    pos = max(_first_failure(text, lambda part, t=t: pc.cast(part, t)) for t in _TIMESTAMP_TYPES)
    if numeric[pos]:
        error(
            pos,
            f"the time {{value}} is a number, but the column's times are timestamps, "
            f"{by} ({_TIME_RULE}).",
        )
    if _timestamps(text.slice(pos, 1)) is not None:
        error(
            pos,
            "the timestamp {value} cannot be read with the column's earlier ones: some have "
            "a time zone or offset and some not (or some have fractions of a second and "
            "some are outside 1678-2261); give all of them a time zone, or none.",
        )
    error(pos, _NEITHER)


def _timestamps(text):
    """Text as timestamps, in the first of ``_TIMESTAMP_TYPES`` that reads all; else None."""
    for data_type in _TIMESTAMP_TYPES:
        try:
            return pc.cast(text, data_type)
        except pa.ArrowInvalid:
            continue
    return None


_SUBSECOND = {"ms": 1e3, "us": 1e6, "ns": 1e9}


def _unix_seconds(col):
    """A time column as Unix seconds: int64, or float64 for fractions and floats.

    Timestamps of any unit and time zone and dates (midnight UTC) become seconds; integers
    int64 (a uint64 beyond int64, float64); floats and decimals float64; nulls stay.
    """
    data_type = col.type
    if pa.types.is_date(data_type):
        col = pc.cast(col, pa.timestamp("ms"))
        data_type = col.type
    if pa.types.is_timestamp(data_type):
        if data_type.unit == "s":
            return pc.cast(col, pa.int64())
        try:  # a safe cast refuses to drop fractions of a second
            return pc.cast(col, pa.timestamp("s", tz=data_type.tz)).cast(pa.int64())
        except pa.ArrowInvalid:
            # float64 rounds ticks beyond 2**53 (to 1 us or less in ns, near today)
            ticks = pc.cast(pc.cast(col, pa.int64()), pa.float64(), safe=False)
            return pc.divide(ticks, _SUBSECOND[data_type.unit])
    if pa.types.is_integer(data_type):
        if pa.types.is_uint64(data_type) and len(col) > col.null_count:
            if pc.max(col).as_py() > np.iinfo(np.int64).max:
                return pc.cast(col, pa.float64(), safe=False)
        return pc.cast(col, pa.int64())
    if pa.types.is_floating(data_type) or pa.types.is_decimal(data_type):
        return pc.cast(col, pa.float64())
    return col
