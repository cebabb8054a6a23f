"""``write_native_dask``: the workers turn TFRecord shards into native matrices.

The shards are parsed and assembled into partitions on the workers
(:mod:`walsrec.distributed.layout`), and each partition writes its rows into the final
files at their byte offsets: no record passes through the client.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from walsrec.distributed import _storage, _tasks
from walsrec.distributed.layout import (
    Cluster,
    Layout,
    assemble_side,
    check_transpose,
    parse_shards,
    part_nnz,
    plan,
)
from walsrec.distributed.sources import TFRecordSource, native_source
from walsrec.errors import InvalidParameterError

__all__ = ["create_npy", "finish_native", "start_native", "write_native_dask"]


def write_native_dask(
    client,
    source: TFRecordSource,
    directory: str | os.PathLike,
    rows_name: str = "user_items",
    cols_name: str = "item_users",
    *,
    partitions: int | None = None,
):
    """Have the workers parse TFRecord shards and write them as native matrices.

    The shards are parsed one task each and assembled into contiguous row partitions on
    the workers, as :meth:`DaskWALS.open <walsrec.distributed.wals.DaskWALS.open>` does;
    then every partition writes its rows straight into ``directory/rows_name.*.npy`` (and
    the transposed records into ``cols_name``), files that this process only creates at
    their final size and renames into place once all are written. The result is byte for
    byte what :func:`walsrec.data.native.save_csr` writes for the matrix
    :func:`walsrec.read_tfrecords` returns, so it can serve as ``walsrec train``'s
    MODEL_DIR/cache (memory-mapped by the client, read by the workers), and no record is
    parsed by the client.

    Parameters
    ----------
    client : distributed.Client
    source : TFRecordSource
        From :func:`tfrecord_source`; without columns records only ``rows_name`` is
        written.
    directory : path
        A local or shared POSIX folder (or ``file://`` URL) that every worker writes to at
        the same path: the partitions write disjoint byte ranges of the same files.
    rows_name, cols_name : str, default "user_items", "item_users"
    partitions : int, optional
        Partitions per orientation (default two per worker).

    Returns
    -------
    NativeSource or None
        :func:`~walsrec.distributed.sources.native_source` of what was written (None when only
        the rows were written).

    Raises
    ------
    DataFormatError
        The reader's errors (file, record, value), a key in two records, or rows and
        columns records that do not hold the same matrix.
    """
    where = str(directory)
    if _storage.is_url(where):
        if not where.startswith("file://"):
            raise InvalidParameterError(
                "The 'directory' argument of write_native_dask must be a local or shared POSIX "
                f"path (the workers write byte ranges of the same files). Got {where!r} "
                "instead."
            )
        where = where[len("file://") :]
    if not (partitions is None or (isinstance(partitions, int) and partitions >= 1)):
        raise InvalidParameterError(
            "The 'partitions' argument of write_native_dask must be None or an int >= 1. Got "
            f"{partitions!r} instead."
        )
    folder = Path(where).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    cl = Cluster(client)
    workers = cl.workers()
    shards, source = parse_shards(cl, source, workers)
    lay = plan(source, workers, partitions)
    sides = ["user", "item"] if source.cols_files else ["user"]
    raw = {side: assemble_side(cl, shards[side], lay, side) for side in sides}
    if source.cols_files:
        check_transpose(cl, lay, raw)
    for side, name in zip(sides, (rows_name, cols_name), strict=False):
        _write_side(cl, lay, side, raw[side], folder, name)
    return native_source(folder, rows_name, cols_name) if source.cols_files else None


def _write_side(cl: Cluster, lay: Layout, side: str, parts: list, folder: Path, name: str):
    """Every partition of ``side`` writes its rows into ``folder/name.*.npy``, created here
    at their final size under temporary names and renamed into place once all are written."""
    placement = lay.placement[side]
    nnzs = part_nnz(cl, parts, placement)
    n_users, n_items = lay.source.shape
    shape = (n_users, n_items) if side == "user" else (n_items, n_users)
    nnz = int(sum(nnzs))
    tmp, index = start_native(folder, name, shape, nnz)
    offsets = [0, *list(itertools.accumulate(nnzs))]
    paths = {part: str(path) for part, path in tmp.items()}
    cl.gather(
        [
            cl.submit(_tasks.write_part, x, paths, lo, offsets[i], worker=w)
            for i, (x, (lo, _), w) in enumerate(
                zip(parts, lay.bounds[side], placement, strict=True)
            )
        ]
    )
    finish_native(folder, name, tmp, shape, nnz, index)


def start_native(folder: Path, name: str, shape, nnz: int) -> tuple[dict, str]:
    """The files of a native matrix of ``shape`` and ``nnz`` entries, created at their
    final size under temporary names (``.NAME.PART.tmp.npy``) for blocks to write into, and
    their index dtype (as :func:`walsrec.data.native.save_csr` chooses it)."""
    index = "int32" if max(nnz, *shape) < 2**31 - 1 else "int64"
    dtypes = {"indptr": index, "indices": index, "data": "float32"}
    lengths = {"indptr": shape[0] + 1, "indices": nnz, "data": nnz}
    tmp = {part: folder / f".{name}.{part}.tmp.npy" for part in dtypes}
    for part, path in tmp.items():
        create_npy(path, dtypes[part], lengths[part])
    return tmp, index


def create_npy(path, dtype: str, length: int) -> None:
    """An .npy file of ``length`` elements at its final size (sparse where the FS allows)."""
    import numpy as np

    if length == 0:  # numpy cannot memory-map an empty array
        np.save(path, np.empty(0, dtype=np.dtype(dtype)), allow_pickle=False)
        return
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(dtype), shape=(length,))
    arr.flush()
    del arr


def finish_native(folder, name: str, tmp: dict, shape, nnz: int, index: str) -> None:
    """Rename the written arrays into place and write the metadata last (as save_csr)."""
    import json

    from walsrec._files import atomic_write_text
    from walsrec.data.native import FORMAT_VERSION

    for part, path in tmp.items():
        os.replace(path, folder / f"{name}.{part}.npy")
    meta = {
        "format_version": FORMAT_VERSION,
        "shape": list(shape),
        "nnz": int(nnz),
        "dtype": "float32",
        "index_dtype": index,
    }
    atomic_write_text(folder / f"{name}.json", json.dumps(meta, indent=2) + "\n")
