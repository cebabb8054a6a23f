"""Exports written by the Dask workers: row blocks of every large array, no gathering.

:func:`export_dask` writes a version 2 export (see :mod:`walsrec.serving.export`): the
factor blocks, the training interactions and the popularity are written by the workers
that hold them (or read them), the user vocabulary is split into blocks by one worker
streaming the file, and this process writes only the manifests, the item vocabulary and
model.json. :func:`walsrec.load_model`, ``walsrec serve``, ``walsrec predict`` and
:func:`~walsrec.distributed.predict_dask` read it.
"""

from __future__ import annotations

import os
from pathlib import Path

from walsrec._files import remove_dead_temporaries
from walsrec.data.row_blocks import write_manifest
from walsrec.data.vocabulary import Vocabulary
from walsrec.distributed import _tasks
from walsrec.distributed.sources import NativeSource, native_meta
from walsrec.errors import InvalidParameterError

__all__ = ["export_dask", "write_export_blocks"]


def write_export_blocks(
    model,
    directory: Path,
    users: str | os.PathLike | Vocabulary | None,
    items: str | os.PathLike | Vocabulary | None,
) -> tuple[dict, int]:
    """Write a fitted :class:`~walsrec.distributed.wals.DaskWALS`'s export files (all but
    model.json) into ``directory``; returns model.json's ``counts`` and format_version.

    ``users``: the user vocabulary's file on storage the workers read (split into blocks
    there, never read here), a Vocabulary already in this process's memory, or None: the
    ids are the indices ("0", "1", ...; written by the workers). ``items`` likewise (the
    file copied by a worker, its lines counted there).
    """
    from walsrec.serving.export import BLOCKS_FORMAT_VERSION

    model._check_initialized("write_export_blocks")
    source = model.source_
    if not isinstance(source, NativeSource):
        raise InvalidParameterError(
            "DaskWALS exports its training interactions from native matrices; it was opened "
            f"on a {type(source).__name__}. Convert the data with write_native_dask first."
        )
    directory = Path(directory)
    model.save_factors(directory)
    n_users, n_items = source.shape
    bounds, placement = model._bounds, model._placement

    # the training interactions: each user partition's rows, read again with their values
    train = directory / "train" / "user_items"
    entries = model._gather(
        [
            model._submit(
                _tasks.write_rows_block,
                source.rows_dir,
                source.rows_name,
                lo,
                hi,
                source.shape,
                source.nnz,
                str(train),
                i,
                worker=w,
            )
            for i, ((lo, hi), w) in enumerate(zip(bounds["user"], placement["user"], strict=True))
        ]
    )
    stored = native_meta(source.rows_dir, source.rows_name).get("dtype", "float64")
    write_manifest(train, "csr", (n_users, n_items), stored, entries)
    nnz = sum(e["nnz"] for e in entries)

    # popularity: each item partition's row counts
    popularity = directory / "train" / "popularity"
    entries = model._gather(
        [
            model._submit(_tasks.write_counts_block, part, str(popularity), i, lo, worker=w)
            for i, (part, (lo, _), w) in enumerate(
                zip(model._sides["item"], bounds["item"], placement["item"], strict=True)
            )
        ]
    )
    write_manifest(popularity, "dense", (n_items,), "float64", entries)

    # vocabularies: the users' in blocks beside the factors', the items' one file
    vocab = directory / "vocab"
    users_dir = vocab / "users"
    if isinstance(users, Vocabulary):
        from walsrec.data.row_blocks import write_text_block

        if len(users) != n_users:
            raise InvalidParameterError(
                f"The users vocabulary has {len(users)} ids where the model has {n_users} users."
            )
        entries = [
            write_text_block(users_dir, i, lo, users.ids[lo:hi].to_pylist())
            for i, (lo, hi) in enumerate(bounds["user"])
        ]
    elif users is None:
        entries = model._gather(
            [
                model._submit(_tasks.index_ids_block, str(users_dir), i, lo, hi, worker=w)
                for i, ((lo, hi), w) in enumerate(
                    zip(bounds["user"], placement["user"], strict=True)
                )
            ]
        )
    else:
        future = model._submit(
            _tasks.split_lines, str(Path(users).absolute()), str(users_dir), bounds["user"]
        )
        entries = model._gather([future])[0]
    write_manifest(users_dir, "text", (n_users,), "str", entries)
    items_file = vocab / "items.txt"
    if isinstance(items, Vocabulary):
        if len(items) != n_items:
            raise InvalidParameterError(
                f"The items vocabulary has {len(items)} ids where the model has {n_items} items."
            )
        items.save(items_file)
    else:
        src = None if items is None else str(Path(items).absolute())
        model._gather([model._submit(_tasks.copy_vocabulary, src, str(items_file), n_items)])
        remove_dead_temporaries(vocab, grace_s=0.0)  # a copy killed mid-way
    counts = {
        "n_users": int(n_users),
        "n_items": int(n_items),
        "embedding_dim": int(model.embedding_dim),
        "train_interactions": int(nnz),
    }
    return counts, BLOCKS_FORMAT_VERSION


def export_dask(
    model,
    model_dir: str | os.PathLike,
    *,
    users: str | os.PathLike | Vocabulary | None,
    items: str | os.PathLike | Vocabulary | None,
    hyperparameters: dict,
    metrics: dict | None = None,
    training: dict | None = None,
    keep: int | None = None,
) -> Path:
    """A new export of a fitted DaskWALS under ``model_dir/export``, written by the workers
    (see :func:`write_export_blocks`); ``model_dir`` must be on storage they share."""
    from walsrec.serving.export import commit_export

    return commit_export(
        model_dir,
        lambda tmp: write_export_blocks(model, tmp, users, items),
        hyperparameters=hyperparameters,
        metrics=metrics,
        training=training,
        keep=keep,
    )
