"""TFRecord shards as a Dask training source: read by the workers, never by the client."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from walsrec.errors import InvalidParameterError

__all__ = ["TFRecordSource", "tfrecord_source"]


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

    from walsrec.data.tfrecord import _expand
    from walsrec.errors import DataFormatError

    try:
        sources = _expand(pattern)
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
    cols_pattern: str | os.PathLike | Sequence[str | os.PathLike],
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
        storage every worker reads (as :func:`walsrec.read_tfrecords`).
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
    cols, cols_url = _files(cols_pattern, "cols_pattern")
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
