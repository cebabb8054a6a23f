"""Training inputs: a prepared DATA_DIR, or the course's TFRecords cached in MODEL_DIR.

TFRecord inputs (``train_rows``/``train_cols`` and optionally ``eval_rows``/``eval_cols``)
are parsed once and cached in ``MODEL_DIR/cache`` as native arrays, keyed by the files'
names, sizes and modification times; later runs load the cache memory-mapped. The rows and
columns records must hold the same matrix (one transposed): a swapped pair, or a
vocabulary size that does not fit, is a clear error rather than a silently wrong model.

The number of users and items is ``num_rows``/``num_cols``, else the size of the
vocabularies found beside the records, else inferred from the records within
:func:`walsrec.read_tfrecords`' limit, so that one bad key or index is an error naming
it rather than gigabytes of allocation.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import scipy.sparse as sp

from walsrec._files import atomic_write_text
from walsrec.data.interactions import Interactions
from walsrec.data.native import load_csr, save_csr
from walsrec.data.vocabulary import Vocabulary
from walsrec.errors import DataFormatError

__all__ = [
    "StoredData",
    "TrainingData",
    "cache_tfrecords_dask",
    "load_training_data",
    "stored_training_data",
]


@dataclass
class TrainingData:
    train: Interactions
    eval: sp.csr_matrix | None
    source: str


@dataclass
class StoredData:
    """Training data left on shared storage for a Dask cluster's workers: where it is and
    its size. This process loads neither matrix nor the user vocabulary.

    ``train``: the native training matrix (and its transpose); ``eval``: where
    :func:`walsrec.distributed.evaluate_dask` finds the held-out matrix (``data`` and
    ``name``), or None; ``users_file``: the user vocabulary, split into an export's blocks
    by a worker, ``items_file`` the item vocabulary, copied into it by a worker (None: the
    ids are the indices).
    """

    train: Any
    eval: dict | None
    source: str
    users_file: Path | None
    items_file: Path | None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.train.shape)


def stored_training_data(config, model_dir: Path) -> StoredData:
    """:class:`StoredData` of a run: DATA_DIR/train/native, or for TFRecord inputs the
    MODEL_DIR/cache that :func:`cache_tfrecords_dask` had the workers write."""
    from walsrec.data.prepare import check_prepared
    from walsrec.distributed.sources import native_source

    if config.data is not None:
        root = check_prepared(config.data)
        train = native_source(root)
        ev = None
        if (root / "eval" / "native" / "user_items.json").is_file():
            ev = {"data": str(root.absolute()), "name": "user_items"}
        vocab = (root / "vocab").absolute()
        return StoredData(train, ev, str(root), vocab / "users.txt", vocab / "items.txt")
    cache = model_dir / "cache"
    train = native_source(cache, "train", "train_t")
    ev = None
    if (cache / "eval.json").is_file():
        ev = {"data": str(cache.absolute()), "name": "eval"}
    n_users, n_items = train.shape
    # vocabularies beside the records that do not fit are ignored, as on one machine
    users = _vocab_file(config.train_rows, "users")
    if users is not None and _count_lines(users) != n_users:
        users = None
    items = _vocab_file(config.train_rows, "items")
    if items is not None and _count_lines(items) != n_items:
        items = None
    return StoredData(train, ev, config.train_rows, users, items)


def _count_lines(path: Path) -> int:
    """Lines of a text file, streamed (the last one need not end with a newline)."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        while piece := f.read(1 << 22):
            n += piece.count(b"\n")
            last = piece[-1:]
    return n + (last != b"\n")


def load_training_data(config, model_dir: Path) -> TrainingData:
    """The train interactions (with vocabularies) and the eval matrix, if any."""
    if config.data is not None:
        from walsrec.data.prepare import load_prepared

        prepared = load_prepared(config.data)
        ev = prepared.eval.user_items if prepared.eval is not None else None
        return TrainingData(prepared.train, ev, str(prepared.path))
    return _from_tfrecords(config, model_dir)


def _fingerprint(patterns: list[str | None]) -> list:
    from walsrec.data.readers import expand_inputs

    out = []
    for pattern in patterns:
        if pattern is None:
            out.append(None)
            continue
        entries = []
        for path in expand_inputs(pattern):
            try:
                st = os.stat(path)
                entries.append([path, st.st_size, st.st_mtime_ns])
            except OSError:  # a URL: its name is all we can key on
                entries.append([path])
        out.append(entries)
    return out


def _vocab_file(pattern: str, which: str) -> Path | None:
    """The vocabulary file beside the records: DIR/user_ids.txt (course) or
    DIR/../vocab/users.txt; None when neither exists."""
    if "://" in pattern:
        return None
    directory = Path(pattern).parent
    candidates = [directory / f"{which[:-1]}_ids.txt", directory.parent / "vocab" / f"{which}.txt"]
    return next((c.absolute() for c in candidates if c.is_file()), None)


def _find_vocab(pattern: str, which: str) -> Vocabulary | None:
    """The vocabulary beside the records (:func:`_vocab_file`), loaded; or None."""
    path = _vocab_file(pattern, which)
    return None if path is None else Vocabulary.load(path, which)


# The settings of train that give the number of users (rows) and of items (columns).
_USERS = ("users", "'num_rows' (--num-rows)")
_ITEMS = ("items", "'num_cols' (--num-cols)")


def _read(pattern, vocab_size, n_rows, sizes) -> sp.csr_matrix:
    """Read records; a size not given (None) is inferred from them, within the reader's
    limit. ``sizes`` is (_USERS, _ITEMS) or (_ITEMS, _USERS): what n_rows and vocab_size
    count."""
    from walsrec.data.tfrecord import InferredSizeError, read_tfrecords

    try:
        return read_tfrecords(pattern, vocab_size=vocab_size, n_rows=n_rows)
    except InferredSizeError as exc:
        noun, setting = sizes[0] if exc.parameter == "n_rows" else sizes[1]
        raise DataFormatError(
            f"{exc.reason}. If the data really has that many {noun}, give train {setting} "
            f"= the number of {noun}, or put the {noun} vocabulary beside the records "
            f"(DIR/{noun[:-1]}_ids.txt or DIR/../vocab/{noun}.txt, one id per line)."
        ) from None


def _read_pair(rows_pattern, cols_pattern, n_rows, n_cols, what: str) -> sp.csr_matrix:
    rows = _read(rows_pattern, n_cols, n_rows, (_USERS, _ITEMS))
    if cols_pattern is None:
        return rows
    cols = _read(cols_pattern, n_rows, n_cols, (_ITEMS, _USERS))
    shape = (max(rows.shape[0], cols.shape[1]), max(rows.shape[1], cols.shape[0]))
    rows.resize(shape)
    cols.resize((shape[1], shape[0]))
    if (rows != cols.T.tocsr()).nnz:
        raise DataFormatError(
            f"The {what} rows records ({rows_pattern}) and columns records ({cols_pattern}) do "
            f"not hold the same matrix: {rows.nnz:,} entries against {cols.nnz:,} in the "
            "transposed records, in different places. Are the items_for_user and "
            "users_for_item files swapped, or from different data?"
        )
    return rows


def _cache_key(config) -> dict:
    """What MODEL_DIR/cache/key.json records: the patterns, their files' names, sizes and
    modification times, and the sizes given. A cache is valid while its key is equal."""
    patterns = [config.train_rows, config.train_cols, config.eval_rows, config.eval_cols]
    return {
        "patterns": patterns,
        "files": _fingerprint(patterns),
        "num_rows": config.num_rows,
        "num_cols": config.num_cols,
    }


def _from_tfrecords(config, model_dir: Path) -> TrainingData:
    cache = model_dir / "cache"
    key = _cache_key(config)
    users = _find_vocab(config.train_rows, "users")
    items = _find_vocab(config.train_rows, "items")
    n_rows = config.num_rows or (len(users) if users is not None else None)
    n_cols = config.num_cols or (len(items) if items is not None else None)
    cached = None
    if (cache / "key.json").is_file():
        try:
            if json.loads((cache / "key.json").read_text()) == key:
                cached = load_csr(cache, "train")
        except (json.JSONDecodeError, DataFormatError):
            cached = None
    if cached is not None:
        train = cached
        evaluation = load_csr(cache, "eval") if (cache / "eval.json").is_file() else None
    else:
        train = _read_pair(config.train_rows, config.train_cols, n_rows, n_cols, "train")
        evaluation = None
        if config.eval_rows is not None:
            evaluation = _read_pair(
                config.eval_rows, config.eval_cols, train.shape[0], train.shape[1], "eval"
            )
            if evaluation.shape != train.shape:
                evaluation.resize(train.shape)
        cache.mkdir(parents=True, exist_ok=True)
        save_csr(cache, "train", train)
        if evaluation is not None:
            save_csr(cache, "eval", evaluation)
        atomic_write_text(cache / "key.json", json.dumps(key, indent=2) + "\n")
    n_users, n_items = train.shape
    if users is None or len(users) != n_users:
        users = Vocabulary([str(i) for i in range(n_users)], "users")
    if items is None or len(items) != n_items:
        items = Vocabulary([str(i) for i in range(n_items)], "items")
    return TrainingData(Interactions(train, users, items), evaluation, config.train_rows)


def cache_tfrecords_dask(client, config, model_dir: str | os.PathLike) -> bool:
    """``walsrec train``'s MODEL_DIR/cache of TFRecord inputs, written by the workers.

    What :func:`load_training_data` would parse on the client and cache (``train``,
    ``eval``, under the same ``key.json``), the workers parse and write instead
    (:func:`walsrec.distributed.sources.write_native_dask`), with the transposes
    (``train_t``, and ``eval_t`` when columns records are given) that the Dask back end
    reads. Afterwards
    ``load_training_data`` finds a valid cache and only memory-maps it. Nothing is done
    when the cache is already valid.

    Parameters
    ----------
    client : distributed.Client
    config : TrainConfig
        With ``train_rows``/``train_cols`` (and optionally ``eval_rows``/``eval_cols``,
        ``num_rows``/``num_cols``).
    model_dir : path
        On storage the workers write to at the same path.

    Returns
    -------
    bool
        True when the cache was (re)written.
    """
    from walsrec.distributed.sources import tfrecord_source
    from walsrec.distributed.write_native import write_native_dask

    cache = Path(model_dir) / "cache"
    key = _cache_key(config)
    try:
        fresh = json.loads((cache / "key.json").read_text()) == key
    except (OSError, json.JSONDecodeError):
        fresh = False
    if fresh and (cache / "train.json").is_file() and (cache / "train_t.json").is_file():
        return False
    users = _find_vocab(config.train_rows, "users")
    items = _find_vocab(config.train_rows, "items")
    n_rows = config.num_rows or (len(users) if users is not None else None)
    n_cols = config.num_cols or (len(items) if items is not None else None)
    (cache / "key.json").unlink(missing_ok=True)  # invalid until everything is written
    for name in ("eval", "eval_t"):
        for stale in cache.glob(f"{name}.*"):
            stale.unlink()
    src = tfrecord_source(config.train_rows, config.train_cols, n_rows, n_cols)
    train = write_native_dask(client, src, cache, "train", "train_t")
    if config.eval_rows is not None:
        ev = tfrecord_source(config.eval_rows, config.eval_cols, *train.shape)
        write_native_dask(client, ev, cache, "eval", "eval_t")
    atomic_write_text(cache / "key.json", json.dumps(key, indent=2) + "\n")
    return True
