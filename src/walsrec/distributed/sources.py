"""Where the Dask workers read a matrix: native files (:class:`NativeSource`) or the course's
TFRecord shards (:class:`TFRecordSource`), by path or fsspec URL on shared storage; the
client only lists and describes them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from walsrec.distributed import _storage
from walsrec.errors import DataFormatError, InvalidParameterError

__all__ = [
    "NativeSource",
    "PartsSource",
    "TFRecordSource",
    "check_vocabularies",
    "location",
    "native_meta",
    "native_source",
    "tfrecord_source",
]


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


@dataclass(frozen=True)
class NativeSource:
    """Where the workers read the training matrix: native CSR files on shared storage.

    ``rows_dir`` and ``cols_dir`` are absolute paths or fsspec URLs.
    ``rows_dir/rows_name.*.npy`` is user_items (n_users × n_items, CSR) and
    ``cols_dir/cols_name.*.npy`` its transpose item_users, as written by
    :func:`walsrec.data.native.save_csr`.
    """

    rows_dir: str
    rows_name: str
    cols_dir: str
    cols_name: str
    shape: tuple[int, int]
    nnz: int


@dataclass(frozen=True, eq=False)
class PartsSource:
    """A matrix already partitioned on the workers (e.g. the fit part of a validation
    split): each side's partitions as task results (CSR rows, global column indices; user
    partitions are user_items' rows, item partitions item_users'), their row ranges and
    workers. :meth:`DaskWALS.open <walsrec.distributed.wals.DaskWALS.open>` uses them as
    they are: the same futures serve any number of fits."""

    shape: tuple[int, int]
    nnz: int
    parts: dict
    bounds: dict
    placement: dict


def check_vocabularies(client, files: list[tuple]) -> None:
    """Read each ``(path, n, name)`` vocabulary file on a worker as one machine reads it
    (UTF-8, no id twice) and hold it to ``n`` ids; None paths are skipped. The first
    problem is raised here as the worker's DataFormatError, naming the file."""
    from walsrec.distributed import _tasks

    checks = [
        client.submit(_tasks.check_vocabulary, str(path), n, name, pure=False)
        for path, n, name in files
        if path is not None
    ]
    client.gather(checks)


def location(where: str | os.PathLike) -> str:
    """An fsspec URL as given; a plain path made absolute (the workers' cwd differs)."""
    from pathlib import Path

    return str(where).rstrip("/") if _storage.is_url(where) else str(Path(where).resolve())


def native_meta(directory: str, name: str) -> dict:
    """The description (``name.json``) of the native matrix ``directory/name``, checked."""
    from walsrec.data.native import FORMAT_VERSION

    meta = _storage.read_json(_storage.join(directory, f"{name}.json"))
    if meta.get("format_version") != FORMAT_VERSION or "shape" not in meta:
        raise DataFormatError(
            f"{_storage.join(directory, f'{name}.json')}: format_version "
            f"{meta.get('format_version')!r}, expected {FORMAT_VERSION} (not a walsrec native "
            "matrix of this version)."
        )
    return meta


def native_source(
    data: str | os.PathLike,
    rows_name: str = "user_items",
    cols_name: str = "item_users",
    cols_dir: str | os.PathLike | None = None,
) -> NativeSource:
    """The native matrices of a prepared DATA_DIR (``DATA_DIR/train/native``) or of a folder.

    Parameters
    ----------
    data : path or fsspec URL
        A DATA_DIR from ``walsrec prepare``, or a folder holding the two native matrices.
        It must be readable at the same path or URL by every worker (shared storage). A
        local path or ``file://`` URL is memory-mapped by the workers; any other fsspec
        protocol (``s3://``, ``gs://``, ``hdfs://``, ...) is read by byte ranges, each
        worker fetching only its partitions' slices. Credentials come from the workers'
        environment (fsspec's configuration).
    rows_name, cols_name : str, default "user_items", "item_users"
        Names of the user × item matrix and of its transpose.
    cols_dir : path or fsspec URL, optional
        Folder of the transpose when it is not beside the rows matrix.

    Returns
    -------
    NativeSource
    """
    directory = location(data)
    if _storage.isdir(_storage.join(directory, "train", "native")):
        directory = _storage.join(directory, "train", "native")
    rows = native_meta(directory, rows_name)
    cdir = location(cols_dir) if cols_dir is not None else directory
    cols = native_meta(cdir, cols_name)
    shape = tuple(int(x) for x in rows["shape"])
    if tuple(cols["shape"]) != (shape[1], shape[0]) or cols["nnz"] != rows["nnz"]:
        raise DataFormatError(
            f"{cdir}/{cols_name}.json: shape {cols['shape']} with {cols['nnz']} entries is not "
            f"the transpose of {directory}/{rows_name} (shape {list(shape)}, {rows['nnz']} "
            "entries). Are the matrices swapped or from different data?"
        )
    return NativeSource(directory, rows_name, cdir, cols_name, shape, int(rows["nnz"]))


# Moved names: the old ones work, with a warning, for one release; imported by name so the
# layers stay one way. cache_tfrecords_dask belongs beside the single machine's cache
# (distributed/ sits below training/); write_native_dask is a job of its own.
_MOVED = {
    "cache_tfrecords_dask": "walsrec.training.inputs",
    "write_native_dask": "walsrec.distributed.write_native",
}


def __getattr__(name: str):
    if name in _MOVED:
        import importlib
        import warnings

        warnings.warn(
            f"walsrec.distributed.sources.{name} moved to {_MOVED[name]}.{name}; the old "
            "name goes in the next release.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
