"""TFRecord shards as a Dask training source: read by the workers, never by the client."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass

from walsrec.errors import InvalidParameterError

__all__ = ["TFRecordSource", "tfrecord_source", "write_native_dask"]


@dataclass(frozen=True)
class TFRecordSource:
    """The course's TFRecord shards of one matrix, in both orientations.

    ``rows_files`` hold items_for_user records (one per user: the user's item indices and
    values), ``cols_files`` users_for_item records (one per item). Paths or fsspec URLs
    (``url``), in reading order. ``shape`` is (n_users, n_items); None entries are inferred
    on the workers as the single-machine reader infers them (largest key or index + 1).
    """

    rows_files: tuple[str, ...]
    cols_files: tuple[str, ...]
    rows_url: tuple[bool, ...]
    cols_url: tuple[bool, ...]
    shape: tuple[int | None, int | None]
    rows_pattern: str = ""
    cols_pattern: str = ""
    nnz: int | None = None


def _files(pattern, name: str) -> tuple[list[str], list[bool]]:
    from pathlib import Path

    from walsrec.data.tfrecord import list_shards
    from walsrec.errors import DataFormatError

    try:
        sources = list_shards(pattern)
    except InvalidParameterError:
        raise InvalidParameterError(
            f"The {name!r} argument of tfrecord_source must name at least one file. Got an "
            "empty list instead."
        ) from None
    except DataFormatError:
        raise
    # the workers' cwd may differ: make local paths absolute
    names = [s.name if s.url else str(Path(s.name).resolve()) for s in sources]
    return names, [s.url for s in sources]


def _size(value, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidParameterError(
            f"The {name!r} argument of tfrecord_source must be None or an int >= 0. Got "
            f"{value!r} instead."
        )
    return value


def tfrecord_source(
    rows_pattern: str | os.PathLike | Sequence[str | os.PathLike],
    cols_pattern: str | os.PathLike | Sequence[str | os.PathLike] | None,
    num_rows: int | None = None,
    num_cols: int | None = None,
) -> TFRecordSource:
    """The course's ``items_for_user`` / ``users_for_item`` shards, for the workers to read.

    Only the file names are listed here. :meth:`DaskWALS.open
    <walsrec.distributed.wals.DaskWALS.open>` then parses every shard in its own task on a
    worker (walsrec.data.tfrecord's reader, with its errors naming the file, the record and
    the value), and assembles each partition of both orientations on the worker that keeps
    it, from the shards' pieces moved worker to worker: nothing of the matrix reaches the
    client. The two orientations must hold the same matrix (checked with a fingerprint of
    every entry, summed per partition), as ``walsrec train`` checks on one machine.

    Parameters
    ----------
    rows_pattern, cols_pattern : str, path-like, or list of them
        items_for_user and users_for_item files: paths, globs, fsspec URLs or URL globs, on
        storage every worker reads (as :func:`walsrec.read_tfrecords`). ``cols_pattern``
        may be None for :func:`write_native_dask` of the rows alone (e.g. held-out data);
        training needs both.
    num_rows, num_cols : int or None, default None
        n_users and n_items (the vocabulary sizes). None: the largest user (item) index in
        either orientation + 1.

    Returns
    -------
    TFRecordSource

    Examples
    --------
    >>> src = tfrecord_source("data/items_for_user-*", "data/users_for_item-*",
    ...                       num_rows=5000, num_cols=1200)  # doctest: +SKIP
    >>> DaskWALS(32, client=client).fit(src)  # doctest: +SKIP
    """
    rows, rows_url = _files(rows_pattern, "rows_pattern")
    cols, cols_url = ([], []) if cols_pattern is None else _files(cols_pattern, "cols_pattern")
    shape = (_size(num_rows, "num_rows"), _size(num_cols, "num_cols"))
    return TFRecordSource(
        tuple(rows),
        tuple(cols),
        tuple(rows_url),
        tuple(cols_url),
        shape,
        str(rows_pattern),
        str(cols_pattern),
    )


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
        :func:`~walsrec.distributed.wals.native_source` of what was written (None when only
        the rows were written).

    Raises
    ------
    DataFormatError
        The reader's errors (file, record, value), a key in two records, or rows and
        columns records that do not hold the same matrix.
    """
    from pathlib import Path

    from walsrec.distributed import _storage, _tasks
    from walsrec.distributed.wals import DaskWALS, native_source

    where = str(directory)
    if _storage.is_url(where):
        if not where.startswith("file://"):
            raise InvalidParameterError(
                "The 'directory' argument of write_native_dask must be a local or shared POSIX "
                f"path (the workers write byte ranges of the same files). Got {where!r} "
                "instead."
            )
        where = where[len("file://") :]
    folder = Path(where).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    model = DaskWALS(client=client, partitions=partitions)
    if not (partitions is None or (isinstance(partitions, int) and partitions >= 1)):
        raise InvalidParameterError(
            "The 'partitions' argument of write_native_dask must be None or an int >= 1. Got "
            f"{partitions!r} instead."
        )
    shards = model._layout(source)
    raw = model._assemble_parts(shards)
    sides = ["user", "item"] if source.cols_files else ["user"]
    if source.cols_files:
        model._check_transpose(raw)
    n_users, n_items = model.source_.shape
    for which, name in zip(sides, (rows_name, cols_name), strict=False):
        placement = model._placement[which]
        nnzs = model._gather(
            [
                model._submit(_tasks.nnz_of, x, worker=w)
                for x, w in zip(raw[which], placement, strict=True)
            ]
        )
        shape = (n_users, n_items) if which == "user" else (n_items, n_users)
        nnz = int(sum(nnzs))
        index = "int32" if max(nnz, *shape) < 2**31 - 1 else "int64"
        dtypes = {"indptr": index, "indices": index, "data": "float32"}
        lengths = {"indptr": shape[0] + 1, "indices": nnz, "data": nnz}
        tmp = {part: folder / f".{name}.{part}.tmp.npy" for part in dtypes}
        for part, path in tmp.items():
            _create_npy(path, dtypes[part], lengths[part])
        offsets = [0, *list(itertools.accumulate(nnzs))]
        model._gather(
            [
                model._submit(
                    _tasks.write_part,
                    x,
                    {part: str(path) for part, path in tmp.items()},
                    lo,
                    offsets[i],
                    worker=w,
                )
                for i, (x, (lo, _), w) in enumerate(
                    zip(raw[which], model._bounds[which], placement, strict=True)
                )
            ]
        )
        _finish_native(folder, name, tmp, shape, nnz, index)
    return native_source(folder, rows_name, cols_name) if source.cols_files else None


def _create_npy(path, dtype: str, length: int) -> None:
    """An .npy file of ``length`` elements at its final size (sparse where the FS allows)."""
    import numpy as np

    if length == 0:  # numpy cannot memory-map an empty array
        np.save(path, np.empty(0, dtype=np.dtype(dtype)), allow_pickle=False)
        return
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(dtype), shape=(length,))
    arr.flush()
    del arr


def _finish_native(folder, name: str, tmp: dict, shape, nnz: int, index: str) -> None:
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


def __getattr__(name: str):
    # cache_tfrecords_dask moved to walsrec.training.inputs (train's cache belongs beside
    # the single machine's, and distributed/ sits below training/). The old name works, with
    # a warning, for one release; the import is by name so the layers stay one way.
    if name == "cache_tfrecords_dask":
        import importlib
        import warnings

        warnings.warn(
            "walsrec.distributed.sources.cache_tfrecords_dask moved to "
            "walsrec.training.inputs.cache_tfrecords_dask; the old name goes in the next "
            "release.",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module("walsrec.training.inputs").cache_tfrecords_dask
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
