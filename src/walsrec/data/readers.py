"""Reading interaction files: CSV/TSV, Parquet and JSON lines, plain or compressed.

Inputs are local paths, globs or fsspec URLs (``file://``, ``memory://``, ``gs://``,
``s3://`` when the filesystem package is installed). Every row-level problem is reported
with the file, the line (CSV and JSON lines: the physical line where the row starts,
counting the header, blank lines and the lines inside quoted fields; Parquet: the row),
the column and the value, or skipped and counted with ``on_bad_rows="skip"``.

The result has standard column names: ``user`` and ``item`` (text), ``rating``
(float64, when a rating column is named) and ``time`` (int64 or float64, when a time
column is named).

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
"""

from __future__ import annotations

import csv
import glob as globlib
import io
import json
import os
import sys
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
            matches = [item] if os.path.isfile(item) else []
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


def _peek_text(path: str, codec: str | None, n: int = 65536) -> str:
    with _open(path, codec) as f:
        data = f.read(n)
    # pyarrow skips a byte order mark (Excel and Notepad write one) before the header, so
    # the header read here must skip it too
    return data.decode("utf-8", errors="replace").removeprefix("\ufeff")


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
        missing time or a rating that is not a finite number, beyond float32's range or an
        integer beyond 2**53 (negative, when ``nonnegative_rating``) are dropped and
        counted instead of raising. Text that is not UTF-8 and times that are neither
        numbers nor timestamps are errors either way.
    nonnegative_rating : bool, default False
        Treat a negative rating as bad (for transforms that cannot take one).

    Returns
    -------
    ReadResult
        ``table`` with columns ``user``, ``item`` and, when named, ``rating`` (float64) and
        ``time``; plus the expanded ``sources`` and bad-row counts.

    Raises
    ------
    DataFormatError
        Naming the file, line (or row), column and value of the first problem.
    OSError
        When a file cannot be read (its message names the file).
    """
    if on_bad_rows not in ("error", "skip"):
        raise InvalidParameterError(
            f"The 'on_bad_rows' parameter must be 'error' or 'skip'. Got {on_bad_rows!r} instead."
        )
    if format is not None and format not in FORMATS:
        raise InvalidParameterError(
            f"The 'format' parameter must be one of {', '.join(FORMATS)}. Got {format!r} instead."
        )
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

    try:
        with _open(path, codec) as f:
            table = pj.read_json(f)
    except pa.ArrowInvalid as exc:
        # pyarrow's "row N" counts from 0 within a block, without blank lines: find the line
        bad = _first_invalid_json_line(path, codec)
        if bad is not None:
            raise DataFormatError(f"{path}, line {bad[0]}: not valid JSON ({bad[1]}).") from None
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
                    json.loads(line)
                except ValueError as exc:
                    return number, exc.args[0] if exc.args else str(exc)
    return None


def _detect_delimiter(first_line: str, path: str) -> str:
    if ".tsv" in path.rsplit("/", 1)[-1].lower():
        return "\t"
    counts = {d: first_line.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def _read_csv(path, codec, roles, delimiter, columns, on_bad_rows, result):
    import pyarrow.csv as pcsv

    text = _peek_text(path, codec)
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
            # straddles two blocks breaks the parse (about 30% slower reading)
            parse_options=pcsv.ParseOptions(
                delimiter=delimiter, invalid_row_handler=handler, newlines_in_values=True
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


@contextmanager
def _catch_unraisable(handler, caught: list):
    """Collect, instead of printing, what pyarrow reports as unraisable from ``handler``.

    pyarrow decodes a bad row's text before calling the handler; when the row is not
    UTF-8 that raises inside pyarrow, which prints "Exception ignored in ..." with a
    traceback on stderr and fails the read. The caller reports the failure, in one message.
    """
    previous = sys.unraisablehook

    def hook(unraisable):
        if unraisable.object is handler:
            caught.append(unraisable.exc_value)
        else:
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


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


def _utf8_errors(col) -> int | None:
    """Row of the first value of a text or bytes column that is not UTF-8 (None: all are).

    pyarrow's JSON and Parquet readers do not check text, and CSV ids are read as bytes;
    a cast to string checks. The first bad row is found by halving: O(n) work in
    O(log n) casts.
    """
    as_bytes = col.cast(pa.large_binary() if _is_large(col.type) else pa.binary())
    target = pa.large_string() if _is_large(col.type) else pa.string()
    try:
        as_bytes.cast(target)
        return None
    except pa.ArrowInvalid:
        return _first_failure(as_bytes, lambda part: part.cast(target))


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


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _validate(table, roles, locate, on_bad_rows, nonnegative, result) -> pa.Table:
    """Check ids, ratings and times; raise on the first problem or drop and count."""
    n = table.num_rows
    keep = np.ones(n, dtype=bool)

    def error(pos, role, message):
        value = table.column(role)[pos].as_py()
        raise DataFormatError(
            f"{locate(pos)}, column {roles[role]!r}: {message.format(value=repr(value))}"
        )

    def problem(mask, reason, role, message):
        mask = mask & keep
        if not mask.any():
            return
        if on_bad_rows == "error":
            error(_first(mask), role, message)
        result.bad_reasons[reason] += int(mask.sum())
        result.n_bad_rows += int(mask.sum())
        keep[mask] = False

    def replace(role, col):
        nonlocal table
        table = table.set_column(table.column_names.index(role), role, col)
        return col

    def as_text(role):
        """The role's text or bytes column as strings; text that is not UTF-8 is an error."""
        col = table.column(role)
        bad = _utf8_errors(col)
        if bad is not None:  # shown as bytes: as text it could not be shown at all
            replace(role, col.cast(pa.large_binary() if _is_large(col.type) else pa.binary()))
            error(bad, role, "the value {value} is not UTF-8 text; convert the file to UTF-8.")
        return replace(role, col.cast(pa.string()))

    for role in ("user", "item"):
        col = table.column(role)
        if _kind(col.type) in ("text", "bytes", "null"):
            col = as_text(role)
        if col.null_count:
            problem(
                pc.is_null(col).to_numpy(zero_copy_only=False),
                "missing id",
                role,
                "the id is missing.",
            )
        col = pc.fill_null(col, "")
        empty = pc.equal(pc.utf8_length(col), 0).to_numpy(zero_copy_only=False)
        problem(empty, "missing id", role, "the id is empty.")
        multiline = pc.match_substring_regex(col, "[\n\r\x00]").to_numpy(zero_copy_only=False)
        problem(
            multiline,
            "id with a newline or NUL",
            role,
            "the id {value} contains a newline or NUL character; ids must be one line.",
        )
    if "rating" in roles:
        col = table.column("rating")
        kind = _kind(col.type)
        if kind in ("text", "bytes"):
            text = pc.utf8_trim_whitespace(pc.fill_null(as_text("rating"), ""))
            numeric = pc.match_substring_regex(text, _NUMBER_RE).to_numpy(zero_copy_only=False)
            problem(
                ~numeric, "rating not a number", "rating", "the rating {value} is not a number."
            )
            problem(
                numeric & _integer_text_beyond_exact(text),
                "integer rating beyond 2**53",
                "rating",
                _BEYOND_EXACT,
            )
            col = pc.if_else(pa.array(numeric), text, "nan").cast(pa.float64())
        elif kind == "integer":
            beyond = pc.greater(col, _MAX_EXACT_INT)
            if pa.types.is_signed_integer(col.type):
                beyond = pc.or_(beyond, pc.less(col, -_MAX_EXACT_INT))
            beyond = pc.fill_null(beyond, False)
            problem(
                beyond.to_numpy(zero_copy_only=False),
                "integer rating beyond 2**53",
                "rating",
                _BEYOND_EXACT,
            )
            col = pc.if_else(beyond, 0, col)  # dropped rows: keeps the cast below exact
        values = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
        if col.null_count:
            problem(
                pc.is_null(col).to_numpy(zero_copy_only=False),
                "rating missing",
                "rating",
                "the rating is missing.",
            )
            values = np.where(np.isnan(values), 0.0, values)
        problem(
            ~np.isfinite(values),
            "rating not finite",
            "rating",
            "the rating {value} is not a finite number.",
        )
        # Ratings are stored as float32 (the TFRecords' float lists), where these are inf.
        with np.errstate(invalid="ignore"):
            problem(
                np.abs(values) > _FLOAT32_MAX,
                "rating beyond float32 range",
                "rating",
                "the rating {value} is beyond float32's range (magnitudes up to 3.4e38), "
                "in which ratings are stored.",
            )
        if nonnegative:
            with np.errstate(invalid="ignore"):
                problem(
                    values < 0,
                    "negative rating",
                    "rating",
                    "the rating {value} is negative, which the rating transform cannot take.",
                )
        replace("rating", col.cast(pa.float64()))
    if "time" in roles:
        col = table.column("time")
        if _kind(col.type) in ("text", "bytes"):
            col = _parse_times(as_text("time"), lambda pos, msg: error(pos, "time", msg))
        if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
            col = pc.cast(col, pa.int64())
        if col.null_count:
            problem(
                pc.is_null(col).to_numpy(zero_copy_only=False),
                "time missing",
                "time",
                "the time is missing.",
            )
        replace("time", col)
    if not keep.all():
        table = table.filter(pa.array(keep))
    return table


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


def _parse_times(col, error):
    """Text times as numbers or timestamps (int64 seconds); ``error(row, message)`` raises.

    A column is numbers when most of its values are, and timestamps otherwise; the first
    value of the other sort is the error (not skippable: the column's sort is a guess).
    """
    text = pc.utf8_trim_whitespace(col)
    numeric = pc.fill_null(pc.match_substring_regex(text, _NUMBER_RE), False)
    numeric = numeric.to_numpy(zero_copy_only=False)
    present = pc.is_valid(text).to_numpy(zero_copy_only=False)
    if 2 * int(numeric.sum()) > int(present.sum()):
        bad = present & ~numeric
        if bad.any():
            error(_first(bad), "the time {value} is not a number, as the column's others are.")
        try:
            return pc.cast(text, pa.int64())
        except pa.ArrowInvalid:
            return pc.cast(text, pa.float64())
    try:
        return pc.cast(text, pa.timestamp("s"))
    except pa.ArrowInvalid:
        pos = _first_failure(text, lambda part: pc.cast(part, pa.timestamp("s")))
        error(
            pos,
            f"the time {{value}} is neither a number nor a timestamp such as {_TIME_EXAMPLE}.",
        )
