"""Vocabularies: original ids (text) and their indices.

The order is deterministic and independent of the order of the input rows: ids are sorted
numerically when every id is an integer (so ``"2"`` comes before ``"10"``, as in the
course's data and in MovieLens), otherwise by their UTF-8 bytes. On disk a vocabulary is a
text file with one id per line, line number = index.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from walsrec._files import atomic_write_text, read_bytes
from walsrec.errors import DataFormatError, UnknownIdError

__all__ = ["Vocabulary", "id_numbers", "ids_are_integers", "read_lines", "sorted_id_order"]

_INTEGER_ID = r"^[+-]?[0-9]{1,18}$"


def ids_are_integers(ids) -> bool:
    """Whether every id of ``ids`` (text) is an integer of at most 18 digits, so that
    vocabularies sort them numerically (True for no ids)."""
    ids = ids.cast(pa.string()) if ids.type != pa.string() else ids
    return bool(pc.all(pc.match_substring_regex(ids, _INTEGER_ID)).as_py() is not False)


def id_numbers(ids) -> np.ndarray:
    """The int64 value of each integer id (see :func:`ids_are_integers`)."""
    ids = ids.cast(pa.string()) if ids.type != pa.string() else ids
    # pyarrow's cast refuses a leading '+' (ArrowInvalid); the number is the same
    as_int = pc.cast(pc.replace_substring_regex(ids, r"^\+", ""), pa.int64())
    return as_int.to_numpy(zero_copy_only=False)


def sorted_id_order(ids: pa.Array, numeric: bool | None = None) -> np.ndarray:
    """Return the permutation that puts distinct ``ids`` in vocabulary order: numerically
    (ties by text) when ``numeric``, else by UTF-8 bytes; ``numeric=None`` sorts
    numerically when every id is an integer (:func:`ids_are_integers`)."""
    ids = ids.cast(pa.string()) if ids.type != pa.string() else ids
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64)
    if numeric is None:
        numeric = ids_are_integers(ids)
    if numeric:
        table = pa.table({"n": id_numbers(ids), "s": ids})
        order = pc.sort_indices(table, sort_keys=[("n", "ascending"), ("s", "ascending")])
    else:
        order = pc.sort_indices(ids)
    return order.to_numpy()


class Vocabulary:
    """An ordered set of distinct text ids; ``ids[i]`` is the id of index ``i``.

    Parameters
    ----------
    ids : sequence of str or pyarrow string array
        Distinct ids in index order. Use :meth:`from_values` to build the sorted
        vocabulary of arbitrary (repeated, unordered) values.
    name : str, default "ids"
        What the ids are ("users", "items"), used in error messages.
    """

    def __init__(self, ids, name: str = "ids"):
        arr = ids if isinstance(ids, pa.Array | pa.ChunkedArray) else pa.array(ids, pa.string())
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if arr.type != pa.string():
            arr = arr.cast(pa.string())
        self.ids = arr
        self.name = name
        self._lookup: dict[str, int] | None = None

    @classmethod
    def from_values(cls, values, name: str = "ids") -> Vocabulary:
        """The sorted vocabulary of the distinct values in ``values``."""
        distinct = pc.unique(values)
        return cls(distinct.take(pa.array(sorted_id_order(distinct))), name=name)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"Vocabulary(name={self.name!r}, size={len(self)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.ids.equals(other.ids)

    def __hash__(self) -> int:  # pragma: no cover - vocabularies are not dict keys
        return id(self)

    def to_list(self) -> list[str]:
        return self.ids.to_pylist()

    def id(self, index: int) -> str:
        """The original id of ``index``."""
        return self.ids[int(index)].as_py()

    def index(self, id_: str) -> int:
        """The index of one id; raises :class:`UnknownIdError` when it is absent."""
        if self._lookup is None:
            self._lookup = {v: i for i, v in enumerate(self.ids.to_pylist())}
        try:
            return self._lookup[str(id_)]
        except KeyError:
            raise UnknownIdError(
                f"Unknown {self.name[:-1] if self.name.endswith('s') else self.name} id {id_!r}."
            ) from None

    def indices(self, values) -> np.ndarray:
        """Indices of many values at once (vectorised); -1 where a value is absent."""
        arr = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values)
        if arr.type != pa.string():
            arr = arr.cast(pa.string())
        return pc.fill_null(pc.index_in(arr, value_set=self.ids), -1).to_numpy().astype(np.int64)

    def save(self, path: str | os.PathLike) -> None:
        """Write one id per line (UTF-8, ``\\n``), via a temporary file renamed into place."""
        path = Path(path)
        check_ids_text(self.ids, source=f"{self.name} vocabulary")
        text = "\n".join(self.ids.to_pylist()) + "\n" if len(self.ids) else ""
        atomic_write_text(path, text)

    @classmethod
    def load(cls, path: str | os.PathLike, name: str = "ids") -> Vocabulary:
        """Read a vocabulary written by :meth:`save` (or the course's vocabulary files)."""
        return cls.from_lines(read_lines(path), name, path)

    @classmethod
    def from_lines(cls, lines: list[str], name: str, source) -> Vocabulary:
        """A vocabulary of ``lines`` (one id each, read from ``source``, which an error
        names); an id that appears twice is a DataFormatError."""
        vocab = cls(pa.array(lines, pa.string()), name=name)
        if len(pc.unique(vocab.ids)) != len(vocab):
            counts = pc.value_counts(vocab.ids)
            dup = next(c["values"] for c in counts.to_pylist() if c["counts"] > 1)
            raise DataFormatError(f"{source}: id {dup!r} appears more than once.")
        return vocab


def read_lines(path: str | os.PathLike) -> list[str]:
    """The lines of a UTF-8 text file, without their ends (``\n`` or ``\r\n``; the last
    line's may be missing); DataFormatError when it is not UTF-8."""
    try:
        text = read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not UTF-8 text ({exc}).") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def check_ids_text(ids: pa.Array, source: str, line_of=None) -> None:
    """Raise if an id is empty or contains a newline or NUL (it could not be one line)."""
    bad = pc.or_(pc.match_substring_regex(ids, "[\n\r\x00]"), pc.equal(pc.utf8_length(ids), 0))
    bad = pc.fill_null(bad, True)
    if pc.any(bad).as_py():
        pos = int(np.flatnonzero(bad.to_numpy(zero_copy_only=False))[0])
        value = ids[pos].as_py()
        where = line_of(pos) if line_of is not None else f"position {pos}"
        what = "is empty" if not value else "contains a newline or NUL character"
        raise DataFormatError(
            f"{source}, {where}: the id {value!r} {what}; ids must be one line of text."
        )
