"""Reading interaction files: CSV/TSV, Parquet and JSON lines, plain or compressed.

Inputs are local paths, globs or fsspec URLs (``file://``, ``memory://``, ``gs://``,
``s3://`` when the filesystem package is installed). Every row-level problem is reported
with the file, the line (CSV: physical line, header included; JSON lines: line; Parquet:
row), the column and the value, or skipped and counted with ``on_bad_rows="skip"``.

The result has standard column names: ``user`` and ``item`` (text), ``rating``
(float64, when a rating column is named) and ``time`` (int64 or float64, when a time
column is named).
"""

from __future__ import annotations

import csv
import glob as globlib
import io
import os
from collections import Counter
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
    return None if from_suffix is None else from_suffix


def _peek_text(path: str, codec: str | None, n: int = 65536) -> str:
    with _open(path, codec) as f:
        data = f.read(n)
    return data.decode("utf-8", errors="replace")


class _Locator:
    """Turns a row number of one file's table into 'file F, line L' text."""

    def __init__(self, path: str, fmt: str, first_line: int):
        self.path, self.fmt, self.first_line = path, fmt, first_line

    def __call__(self, row: int) -> str:
        if self.fmt == "parquet":
            return f"{self.path}, row {row + 1}"
        return f"{self.path}, line {row + self.first_line}"


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
        With "skip", rows with a wrong number of fields, a missing or multi-line id or a
        rating that is not a finite number (negative, when ``nonnegative_rating``) are
        dropped and counted instead of raising.
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
        table, locate = _read_one(path, roles, delimiter, columns, format, on_bad_rows, result)
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
    if fmt == "parquet":
        table = _read_parquet(path, wanted)
        return _standardise(table, roles, path), _Locator(path, fmt, 1)
    if fmt == "jsonl":
        table = _read_json(path, codec, wanted)
        return _standardise(table, roles, path), _Locator(path, fmt, 1)
    return _read_csv(path, codec, roles, delimiter, columns, on_bad_rows, result)


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
        raise DataFormatError(f"{path}: invalid JSON lines ({exc}).") from None
    _missing(path, wanted, table.column_names)
    return table.select(wanted)


def _detect_delimiter(first_line: str, path: str) -> str:
    if ".tsv" in path.rsplit("/", 1)[-1].lower():
        return "\t"
    counts = {d: first_line.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def _read_csv(path, codec, roles, delimiter, columns, on_bad_rows, result):
    import pyarrow.csv as pcsv

    text = _peek_text(path, codec)
    first_line = text.split("\n", 1)[0].rstrip("\r")
    if delimiter is None:
        delimiter = _detect_delimiter(first_line, path)
    if columns is not None:
        names = list(columns)
        first_data_line = 1
    else:
        names = next(csv.reader(io.StringIO(first_line), delimiter=delimiter), [])
        names = [n.strip() for n in names]
        first_data_line = 2
    wanted = list(dict.fromkeys(roles.values()))
    _missing(path, wanted, names)
    column_types = {roles["user"]: pa.string(), roles["item"]: pa.string()}
    bad_rows = []
    skipped = [0]  # rows with a wrong number of fields, in the last read only

    def handler(row):
        if on_bad_rows == "skip":
            skipped[0] += 1
            return "skip"
        bad_rows.append(row)
        return "error"

    def read(types, use_threads=True):
        skipped[0] = 0
        return pcsv.read_csv(
            _open(path, codec),
            read_options=pcsv.ReadOptions(
                column_names=names if columns is not None else None,
                use_threads=use_threads,
                block_size=1 << 24,
            ),
            parse_options=pcsv.ParseOptions(delimiter=delimiter, invalid_row_handler=handler),
            convert_options=pcsv.ConvertOptions(
                column_types=types,
                include_columns=wanted,
                strings_can_be_null=False,
                null_values=[""],
            ),
        )

    try:
        types = dict(column_types)
        if "rating" in roles:
            types[roles["rating"]] = pa.float64()
        try:
            table = read(types)
        except pa.ArrowInvalid as exc:
            if bad_rows or "conversion error" not in str(exc):
                raise
            # Some rating is not a number: read it as text and report or skip it below.
            types[roles["rating"]] = pa.string()
            table = read(types)
    except pa.ArrowInvalid as exc:
        if bad_rows:
            row = bad_rows[0]
            if row.number is None:  # multi-threaded parsing does not know the line
                bad_rows.clear()
                try:
                    read(column_types, use_threads=False)
                except pa.ArrowInvalid:
                    pass
                row = bad_rows[0] if bad_rows else row
            line = f"line {row.number}" if row.number is not None else "a line"
            raise DataFormatError(
                f"{path}, {line}: expected {row.expected_columns} fields separated by "
                f"{delimiter!r}, found {row.actual_columns}: {row.text[:200]!r}."
            ) from None
        raise DataFormatError(f"{path}: cannot be parsed as CSV ({exc}).") from None
    if skipped[0]:
        result.bad_reasons["wrong number of fields"] += skipped[0]
        result.n_bad_rows += skipped[0]
    return _standardise(table, roles, path), _Locator(path, "csv", first_data_line)


def _standardise(table: pa.Table, roles: dict, path: str) -> pa.Table:
    cols = {}
    for role, name in roles.items():
        col = table.column(name)
        if role in ("user", "item"):
            if pa.types.is_floating(col.type):
                raise DataFormatError(
                    f"{path}: column {name!r} holds floating-point numbers; ids must be text "
                    "or integers (write them without a decimal point)."
                )
            col = col.cast(pa.string())
        cols[role] = col
    return pa.table(cols)


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _validate(table, roles, locate, on_bad_rows, nonnegative, result) -> pa.Table:
    """Check ids, ratings and times; raise on the first problem or drop and count."""
    n = table.num_rows
    keep = np.ones(n, dtype=bool)

    def problem(mask, reason, role, message):
        mask = mask & keep
        if not mask.any():
            return
        if on_bad_rows == "error":
            pos = _first(mask)
            value = table.column(role)[pos].as_py()
            raise DataFormatError(
                f"{locate(pos)}, column {roles[role]!r}: {message.format(value=repr(value))}"
            )
        result.bad_reasons[reason] += int(mask.sum())
        result.n_bad_rows += int(mask.sum())
        keep[mask] = False

    for role in ("user", "item"):
        col = table.column(role)
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
        if not pa.types.is_floating(col.type) and not pa.types.is_integer(col.type):
            text = pc.fill_null(col.cast(pa.string()), "")
            numeric = pc.match_substring_regex(text, _NUMBER_RE).to_numpy(zero_copy_only=False)
            problem(
                ~numeric, "rating not a number", "rating", "the rating {value} is not a number."
            )
            col = pc.if_else(pa.array(numeric), text, "nan").cast(pa.float64())
            table = table.set_column(table.column_names.index("rating"), "rating", col)
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
        if nonnegative:
            with np.errstate(invalid="ignore"):
                problem(
                    values < 0,
                    "negative rating",
                    "rating",
                    "the rating {value} is negative, which the rating transform cannot take.",
                )
        if col.type != pa.float64():
            table = table.set_column(
                table.column_names.index("rating"), "rating", col.cast(pa.float64())
            )
    if "time" in roles:
        col = table.column("time")
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            try:
                col = pc.cast(col, pa.timestamp("s"))
            except pa.ArrowInvalid:
                raise DataFormatError(
                    f"{locate(0)}: column {roles['time']!r} is neither numbers nor timestamps "
                    f"(first value {table.column('time')[0].as_py()!r})."
                ) from None
        if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
            col = pc.cast(col, pa.int64())
        if col.null_count:
            problem(
                pc.is_null(col).to_numpy(zero_copy_only=False),
                "time missing",
                "time",
                "the time is missing.",
            )
        table = table.set_column(table.column_names.index("time"), "time", col)
    if not keep.all():
        table = table.filter(pa.array(keep))
    return table
