"""Row blocks: a matrix stored as contiguous row ranges, one set of files per block, with a
manifest written last.

This is how a Dask cluster's workers store what no single process should hold (factor
matrices, an export's training interactions, its popularity, its user vocabulary): each
worker writes the blocks it keeps, the client then writes ``manifest.json``, which lists
every block's rows, files, sizes and SHA-256 checksums. A directory without a complete
manifest is not a matrix; a reader checks each block against the manifest before it uses
it, so a truncated, swapped or altered block is a :class:`~walsrec.errors.DataFormatError`
naming the file, never a silent wrong model.

Layout of ``DIR/``::

    manifest.json       {"format_version": 1, "kind": "dense" | "csr" | "text",
                         "shape": [...], "dtype": "...",
                         "blocks": [{"rows": [lo, hi], "nnz": ..., "files": {ROLE: {
                                     "name": ..., "bytes": ..., "sha256": ...}}}, ...]}
    block-00000.npy     kind "dense": rows lo:hi of an (n, k) or (n,) array
    block-00000.*.npy   kind "csr": rows lo:hi as a native CSR matrix
    block-00000.json      (walsrec.data.native; its column indices are global)
    block-00000.txt     kind "text": lines lo:hi (one id per line)

Blocks tile ``0:n`` in order without gaps. Readers memory-map each block they need: a
Dask worker reads only its own row range (:meth:`RowBlocks.rows`), one machine may
assemble the whole matrix (:meth:`RowBlocks.to_array`, :meth:`RowBlocks.to_csr`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from walsrec._files import (
    atomic_write_text,
    load_npy,
    read_versioned_json,
    remove_dead_temporaries,
    save_npy,
)
from walsrec.errors import DataFormatError, InvalidParameterError

__all__ = [
    "MANIFEST",
    "RowBlocks",
    "is_row_blocks",
    "open_row_blocks",
    "write_csr_block",
    "write_dense_block",
    "write_manifest",
    "write_text_block",
]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
KINDS = ("dense", "csr", "text")
_CSR_ROLES = ("indptr", "indices", "data", "meta")


_MAX_NPY_HEADER = 65_536 + 16


def _file_name(kind: str, index: int, role: str) -> str:
    """The name of block ``index``'s ``role`` file: the only one a manifest may give."""
    stem = block_stem(index)
    if kind == "dense":
        return f"{stem}.npy"
    if kind == "text":
        return f"{stem}.txt"
    return f"{stem}.json" if role == "meta" else f"{stem}.{role}.npy"


def block_stem(index: int) -> str:
    """``block-IIIII``: the name every file of block ``index`` starts with."""
    return f"block-{index:05d}"


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, read in 4 MiB pieces (bounded memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(1 << 22):
            digest.update(piece)
    return digest.hexdigest()


def _file_entry(path: Path) -> dict:
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_of(path)}


# ----------------------------------------------------------------------------- writing


def write_dense_block(directory: str | os.PathLike, index: int, lo: int, array) -> dict:
    """Write rows ``lo:lo+len(array)`` of a dense matrix as block ``index`` of ``directory``
    (a temporary name renamed into place); returns the block's manifest entry."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arr = np.ascontiguousarray(array)
    path = directory / f"{block_stem(index)}.npy"
    save_npy(path, arr)
    return {"rows": [int(lo), int(lo) + int(arr.shape[0])], "files": {"data": _file_entry(path)}}


def write_csr_block(directory: str | os.PathLike, index: int, lo: int, matrix) -> dict:
    """Write rows ``lo:lo+n`` of a sparse matrix (CSR; global column indices) as block
    ``index`` of ``directory``; returns the block's manifest entry."""
    from walsrec.data.native import save_csr

    directory = Path(directory)
    stem = block_stem(index)
    matrix = sp.csr_matrix(matrix)
    save_csr(directory, stem, matrix)
    files = {role: _file_entry(directory / f"{stem}.{role}.npy") for role in _CSR_ROLES[:3]}
    files["meta"] = _file_entry(directory / f"{stem}.json")
    return {
        "rows": [int(lo), int(lo) + int(matrix.shape[0])],
        "nnz": int(matrix.nnz),
        "files": files,
    }


def write_text_block(directory: str | os.PathLike, index: int, lo: int, lines: list[str]) -> dict:
    """Write lines ``lo:lo+len(lines)`` (one id each) as block ``index`` of ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{block_stem(index)}.txt"
    atomic_write_text(path, "".join(f"{line}\n" for line in lines))
    return {"rows": [int(lo), int(lo) + len(lines)], "files": {"text": _file_entry(path)}}


def _check_tiling(entries: list[dict], n: int, where: str) -> None:
    at = 0
    for i, entry in enumerate(entries):
        lo, hi = entry["rows"]
        if lo != at or hi < lo:
            raise InvalidParameterError(
                f"{where}: block {i} holds rows {lo}:{hi} where rows {at}: come next; the "
                "blocks must tile the rows in order."
            )
        at = hi
    if at != n:
        raise InvalidParameterError(
            f"{where}: the blocks hold rows 0:{at} of a matrix of {n} rows."
        )


def write_manifest(
    directory: str | os.PathLike,
    kind: str,
    shape: tuple[int, ...],
    dtype: str,
    entries: list[dict],
) -> Path:
    """Write ``directory/manifest.json`` for blocks already written (in row order): the
    last file of a row-block matrix, written only once every block is complete."""
    directory = Path(directory)
    if kind not in KINDS:
        raise InvalidParameterError(
            f"The 'kind' argument of write_manifest must be one of {list(KINDS)}. Got {kind!r} "
            "instead."
        )
    _check_tiling(entries, int(shape[0]), str(directory / MANIFEST))
    # what a writer killed mid-file left (a lost worker's task, run again elsewhere); every
    # block's task has finished, so no grace for young ones
    remove_dead_temporaries(directory, grace_s=0.0)
    manifest = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "shape": [int(x) for x in shape],
        "dtype": str(dtype),
        "blocks": entries,
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / MANIFEST
    atomic_write_text(path, json.dumps(manifest, indent=1) + "\n")
    return path


# ----------------------------------------------------------------------------- reading


def is_row_blocks(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory with a manifest (a row-block matrix)."""
    return (Path(path) / MANIFEST).is_file()


def _bad(path: Path, what: str) -> DataFormatError:
    return DataFormatError(f"{path}: {what}; the row blocks are corrupt or incomplete.")


def _check_manifest(meta: dict, path: Path) -> None:
    kind, shape, blocks = meta.get("kind"), meta.get("shape"), meta.get("blocks")
    if kind not in KINDS:
        raise _bad(path, f"'kind' must be one of {list(KINDS)}, got {kind!r}")
    dims = {"dense": (1, 2), "csr": (2,), "text": (1,)}[kind]
    if (
        not isinstance(shape, list)
        or len(shape) not in dims
        or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in shape)
    ):
        raise _bad(path, f"'shape' must be a list of {dims} counts >= 0, got {shape!r}")
    if kind != "text":
        try:
            dt = np.dtype(meta.get("dtype"))
        except TypeError:
            raise _bad(path, f"'dtype' {meta.get('dtype')!r} is not a dtype") from None
        if dt.hasobject or dt.kind not in "fiu":
            raise _bad(path, f"'dtype' {meta.get('dtype')!r} is not a numeric dtype")
    if not isinstance(blocks, list):
        raise _bad(path, f"'blocks' must be a list, got {type(blocks).__name__}")
    roles = {"dense": ("data",), "csr": _CSR_ROLES, "text": ("text",)}[kind]
    row_bytes = 0
    if kind == "dense":
        row_bytes = np.dtype(meta["dtype"]).itemsize * int(np.prod(shape[1:], dtype=np.int64))
    at = 0
    for i, entry in enumerate(blocks):
        rows = entry.get("rows") if isinstance(entry, dict) else None
        files = entry.get("files") if isinstance(entry, dict) else None
        ok_rows = (
            isinstance(rows, list)
            and len(rows) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in rows)
            and rows[0] == at
            and rows[1] >= rows[0]
        )
        if not ok_rows:
            raise _bad(path, f"block {i}'s rows {rows!r} do not follow rows 0:{at}")
        at = rows[1]
        if not isinstance(files, dict) or sorted(files) != sorted(roles):
            raise _bad(path, f"block {i} must list the files {list(roles)}, got {files!r}")
        for role, f in files.items():
            good = (
                isinstance(f, dict)
                and f.get("name") == _file_name(kind, i, role)
                and isinstance(f.get("bytes"), int)
                and not isinstance(f.get("bytes"), bool)
                and f["bytes"] >= 0
                and isinstance(f.get("sha256"), str)
                and len(f["sha256"]) == 64
            )
            if not good:
                raise _bad(path, f"block {i}'s {role} file entry {f!r} is malformed")
        if kind == "dense":
            # the data's bytes and an .npy header: what reading the block may allocate is
            # bounded by the files' sizes (checked against these before any allocation)
            need, have = (rows[1] - rows[0]) * row_bytes, files["data"]["bytes"]
            if not need <= have <= need + _MAX_NPY_HEADER:
                raise _bad(
                    path,
                    f"block {i} records {have:,} bytes for {rows[1] - rows[0]} rows of "
                    f"{row_bytes} bytes",
                )
        if kind == "csr" and not (isinstance(entry.get("nnz"), int) and entry["nnz"] >= 0):
            raise _bad(path, f"block {i}'s nnz {entry.get('nnz')!r} is not a count")
    if at != shape[0]:
        raise _bad(path, f"the blocks hold rows 0:{at} of the {shape[0]} of 'shape'")


@dataclass(frozen=True)
class RowBlocks:
    """An opened row-block matrix: its manifest, checked; blocks read on demand."""

    directory: Path
    kind: str
    shape: tuple[int, ...]
    dtype: np.dtype | None
    blocks: tuple[dict, ...]

    @property
    def bounds(self) -> list[tuple[int, int]]:
        """Each block's (lo, hi) rows."""
        return [tuple(b["rows"]) for b in self.blocks]

    @property
    def checksums(self) -> list[str]:
        """Each block's data file's SHA-256 (a dense matrix's identity)."""
        role = {"dense": "data", "csr": "data", "text": "text"}[self.kind]
        return [b["files"][role]["sha256"] for b in self.blocks]

    def verified_file(self, i: int, role: str) -> Path:
        """Block ``i``'s ``role`` file, its size and checksum held to the manifest's."""
        f = self.blocks[i]["files"][role]
        path = self.directory / f["name"]
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise DataFormatError(
                f"{path}: missing (block {i} of {self.directory}); the row blocks are incomplete."
            ) from None
        if size != f["bytes"]:
            raise _bad(path, f"{size:,} bytes where the manifest records {f['bytes']:,}")
        if sha256_of(path) != f["sha256"]:
            raise _bad(path, "its SHA-256 differs from the manifest's")
        return path

    def block(self, i: int, mmap: bool = True) -> np.ndarray:
        """Dense block ``i`` (memory-mapped), checked against the manifest: checksum,
        shape, dtype, finite values."""
        path = self.verified_file(i, "data")
        arr = load_npy(path, mmap=mmap)
        lo, hi = self.blocks[i]["rows"]
        want = (hi - lo, *self.shape[1:])
        if arr.shape != want or arr.dtype != self.dtype:
            raise _bad(
                path,
                f"{arr.dtype} of shape {arr.shape} where the manifest gives {self.dtype} "
                f"of shape {want}",
            )
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise DataFormatError(f"{path}: contains NaN or infinity.")
        return arr

    def _overlapping(self, lo: int, hi: int) -> list[int]:
        n = self.shape[0]
        if not (0 <= lo <= hi <= n):
            raise InvalidParameterError(
                f"Rows {lo}:{hi} are outside the {n} rows of {self.directory}."
            )
        return [i for i, (a, b) in enumerate(self.bounds) if a < hi and b > lo]

    def rows(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo:hi`` of a dense matrix, a new array (only the blocks they span read;
        each checked before the array is allocated)."""
        spans = [(i, self.block(i)) for i in self._overlapping(lo, hi)]
        out = np.empty((hi - lo, *self.shape[1:]), dtype=self.dtype)
        for i, block in spans:
            a, b = self.blocks[i]["rows"]
            s, e = max(a, lo), min(b, hi)
            out[s - lo : e - lo] = block[s - a : e - a]
        return out

    def to_array(self, mmap: bool = True) -> np.ndarray:
        """The whole dense matrix (one block: memory-mapped with ``mmap``; else assembled
        in memory)."""
        if len(self.blocks) == 1:
            return self.block(0, mmap=mmap)
        return self.rows(0, self.shape[0])

    def csr_block(self, i: int, mmap: bool = True) -> sp.csr_matrix:
        """Sparse block ``i`` (memory-mapped with ``mmap``), checked by
        :func:`walsrec.data.native.load_csr` and against the manifest (checksums, rows,
        nnz, columns)."""
        from walsrec.data.native import load_csr

        for role in _CSR_ROLES:
            self.verified_file(i, role)
        stem = block_stem(i)
        m = load_csr(self.directory, stem, mmap=mmap)
        lo, hi = self.blocks[i]["rows"]
        if m.shape != (hi - lo, self.shape[1]) or m.nnz != self.blocks[i]["nnz"]:
            raise _bad(
                self.directory / f"{stem}.json",
                f"shape {m.shape} with {m.nnz} entries where the manifest gives "
                f"{(hi - lo, self.shape[1])} with {self.blocks[i]['nnz']}",
            )
        return m

    def csr_rows(self, lo: int, hi: int) -> sp.csr_matrix:
        """Rows ``lo:hi`` of a sparse matrix (only the blocks they span read)."""
        pieces = []
        for i in self._overlapping(lo, hi):
            a, b = self.blocks[i]["rows"]
            pieces.append(self.csr_block(i)[max(a, lo) - a : min(b, hi) - a])
        if not pieces:
            return sp.csr_matrix((hi - lo, self.shape[1]), dtype=self.dtype)
        out = pieces[0] if len(pieces) == 1 else sp.vstack(pieces, format="csr")
        return sp.csr_matrix(out)

    def to_csr(self, mmap: bool = True) -> sp.csr_matrix:
        """The whole sparse matrix (one block: memory-mapped with ``mmap``; else assembled
        in memory)."""
        if len(self.blocks) == 1:
            return self.csr_block(0, mmap=mmap)
        return self.csr_rows(0, self.shape[0])

    def text_rows(self, lo: int, hi: int) -> list[str]:
        """Lines ``lo:hi`` of a text matrix (a vocabulary's ids)."""
        from walsrec.data.vocabulary import read_lines

        out: list[str] = []
        for i in self._overlapping(lo, hi):
            a, b = self.blocks[i]["rows"]
            path = self.verified_file(i, "text")
            lines = read_lines(path)
            if len(lines) != b - a:
                raise _bad(path, f"{len(lines)} lines where the manifest gives {b - a}")
            out.extend(lines[max(a, lo) - a : min(b, hi) - a])
        return out


def open_row_blocks(directory: str | os.PathLike, kind: str | None = None) -> RowBlocks:
    """The row-block matrix at ``directory``, its manifest checked (``kind``: the one
    expected). The blocks themselves are checked when read."""
    directory = Path(directory)
    path = directory / MANIFEST
    meta = read_versioned_json(
        path, FORMAT_VERSION, "not a complete row-block matrix (the manifest is written last)."
    )
    _check_manifest(meta, path)
    if kind is not None and meta["kind"] != kind:
        raise _bad(path, f"kind {meta['kind']!r} where {kind!r} is expected")
    dtype = None if meta["kind"] == "text" else np.dtype(meta["dtype"])
    return RowBlocks(directory, meta["kind"], tuple(meta["shape"]), dtype, tuple(meta["blocks"]))
