"""Exported models: a self-contained directory of plain data, written atomically.

Layout of ``MODEL_DIR/export/<version>/`` (``version`` is an integer, Unix seconds at
export time, increasing)::

    model.json              format_version, hyper-parameters, counts, metrics, created
    user_factors.npy        (n_users, k)
    item_factors.npy        (n_items, k)
    vocab/users.txt         one original id per line; line number = index
    vocab/items.txt
    train/user_items.*.npy  the training interactions (to exclude already-seen items)
    item_item/weights.npy   the hybrid's EASE weights B (n_items × n_items), when it has them,
                            or item_item/weights.*.npy, B as CSR arrays (the sparse form)

model.json's ``item_item`` (present with the weights) holds the blend's settings:
``blend_weight`` β, ``regularization`` λ_B, ``form`` ("dense" or "sparse"), ``density`` and
the ``choice`` made on validation (:mod:`walsrec.training.hybrid`).

An export written by a Dask cluster's workers (``format_version`` 2) keeps what grows with
the data as row blocks (:mod:`walsrec.data.row_blocks`: block files and a manifest with
their checksums, written last), so that no process holds a whole matrix to write it::

    user_factors/           dense row blocks, one per user partition
    item_factors/           dense row blocks, one per item partition
    vocab/users/            text blocks (one id per line)
    vocab/items.txt
    train/user_items/       CSR row blocks (the training interactions)
    train/popularity/       dense blocks: each item's number of training users

:func:`read_export` reads either layout; :func:`read_export_rows` reads one range of users
(what a batch-prediction task needs) and, from a version 2 export, only the blocks that
range spans.

No pickles: every array loads with ``allow_pickle=False``. An export is written into a
hidden temporary directory beside its final name and renamed when complete, so a reader
(the HTTP service watching MODEL_DIR/export) never sees half of one.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import scipy.sparse as sp

from walsrec import __version__
from walsrec._files import (
    check_schema,
    load_npy,
    make_temp_dir,
    read_versioned_json,
    release_temp,
    remove_dead_temporaries,
    write_error,
)
from walsrec.data.native import load_csr, save_csr
from walsrec.data.vocabulary import Vocabulary
from walsrec.errors import DataFormatError, InvalidParameterError

__all__ = [
    "FORMAT_VERSION",
    "Export",
    "commit_export",
    "list_exports",
    "newest_export_holding",
    "read_export",
    "read_export_rows",
    "read_model_json",
    "resolve_export",
    "write_export",
]

FORMAT_VERSION = 1
#: an export whose large arrays are row blocks (written by Dask workers)
BLOCKS_FORMAT_VERSION = 2


@functools.cache
def _model_json_schema() -> type:
    """model.json's schema (a pydantic model; built on first use, pydantic loads slowly)."""
    from pydantic import BaseModel, ConfigDict, Field

    count = Annotated[int, Field(ge=0, le=2**63 - 1)]  # an int64, as everywhere else

    class Counts(BaseModel):
        model_config = ConfigDict(extra="allow")
        n_users: count
        n_items: count
        embedding_dim: Annotated[int, Field(ge=1)]
        train_interactions: count

    class ModelJson(BaseModel):
        model_config = ConfigDict(extra="allow")
        format_version: Literal[1, 2]
        version: count
        created: str
        walsrec_version: str
        hyperparameters: dict[str, Any]
        counts: Counts
        metrics: dict[str, Any]
        training: dict[str, Any]

    return ModelJson


def read_model_json(path: str | os.PathLike) -> dict:
    """An export's model.json, checked against its schema (types, ranges, required keys)."""
    path = Path(path)
    meta = read_versioned_json(
        path, (FORMAT_VERSION, BLOCKS_FORMAT_VERSION), "not a walsrec export."
    )
    check_schema(_model_json_schema(), meta, path)
    return meta


@dataclass
class Export:
    """An exported model loaded back into memory.

    ``rows``: (lo, hi) when only users lo:hi were read (:func:`read_export_rows`; the
    factors, vocabulary and interactions of the users are then those rows, and
    ``item_popularity`` is the whole catalogue's); None for the whole export.
    """

    path: Path
    meta: dict
    user_factors: np.ndarray
    item_factors: np.ndarray
    users: Vocabulary
    items: Vocabulary
    user_items: sp.csr_matrix
    item_popularity: np.ndarray | None = None
    rows: tuple[int, int] | None = None
    #: the hybrid's EASE weights B (dense or CSR), None for WALS alone
    item_weights: Any = None

    @property
    def version(self) -> int:
        return int(self.meta["version"])


def list_exports(export_root: str | os.PathLike) -> list[Path]:
    """Complete exports under ``export_root``, oldest first (numeric names only)."""
    root = Path(export_root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(found, key=lambda p: int(p.name))


def newest_export_holding(model_dir, user_factors, item_factors) -> Path | None:
    """The newest export of ``model_dir`` when it holds exactly these factors (the same
    values, not merely the same step count), else None."""
    exports = list_exports(Path(model_dir) / "export")
    if not exports:
        return None
    newest = read_export(exports[-1], mmap=True)
    if np.array_equal(newest.user_factors, user_factors) and np.array_equal(
        newest.item_factors, item_factors
    ):
        return exports[-1]
    return None


def write_export(
    model_dir: str | os.PathLike,
    *,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    users: Vocabulary,
    items: Vocabulary,
    user_items: sp.csr_matrix,
    hyperparameters: dict,
    metrics: dict | None = None,
    training: dict | None = None,
    keep: int | None = None,
    item_item: tuple[dict, Any] | None = None,
) -> Path:
    """Write a new export under ``model_dir/export`` and return its path.

    ``keep`` (optional) removes the oldest exports beyond that number afterwards.
    ``item_item``: the hybrid's ``(settings, weights)``: model.json's ``item_item`` and B,
    a dense (n_items, n_items) array or a CSR matrix.
    """
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise InvalidParameterError(
            f"The 'keep' parameter of write_export must be None or an int >= 1. Got {keep!r} "
            "instead."
        )

    def fill(tmp: Path) -> tuple[dict, int]:
        np.save(tmp / "user_factors.npy", np.ascontiguousarray(user_factors), allow_pickle=False)
        np.save(tmp / "item_factors.npy", np.ascontiguousarray(item_factors), allow_pickle=False)
        (tmp / "vocab").mkdir()
        users.save(tmp / "vocab" / "users.txt")
        items.save(tmp / "vocab" / "items.txt")
        save_csr(tmp / "train", "user_items", user_items)
        if item_item is not None:
            _write_item_weights(tmp / "item_item", item_item[1], item_factors.shape[0])
        counts = {
            "n_users": int(user_factors.shape[0]),
            "n_items": int(item_factors.shape[0]),
            "embedding_dim": int(user_factors.shape[1]),
            "train_interactions": int(user_items.nnz),
        }
        return counts, FORMAT_VERSION

    return commit_export(
        model_dir,
        fill,
        hyperparameters=hyperparameters,
        metrics=metrics,
        training=training,
        keep=keep,
        extra=None if item_item is None else {"item_item": dict(item_item[0])},
    )


def commit_export(
    model_dir: str | os.PathLike,
    fill: Callable[[Path], tuple[dict, int]],
    *,
    hyperparameters: dict,
    metrics: dict | None = None,
    training: dict | None = None,
    keep: int | None = None,
    extra: dict | None = None,
) -> Path:
    """A new export under ``model_dir/export`` whose files ``fill(tmp)`` writes.

    ``fill`` receives the temporary directory (an absolute path; other processes, such as
    Dask workers on shared storage, may write into it) and returns the ``counts`` of
    model.json and its format_version. model.json is written last, then the directory is
    renamed into place; on any error nothing is left. ``keep`` (optional) removes the
    oldest exports beyond that number afterwards; ``extra``: more keys of model.json.
    """
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise InvalidParameterError(
            f"The 'keep' parameter of write_export must be None or an int >= 1. Got {keep!r} "
            "instead."
        )
    root = Path(os.path.abspath(model_dir)) / "export"
    root.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(root)  # what killed exports left
    existing = list_exports(root)
    version = max(int(time.time()), int(existing[-1].name) + 1 if existing else 0)
    tmp = make_temp_dir(root / str(version))
    try:
        counts, format_version = fill(tmp)
        meta = {
            "format_version": format_version,
            "version": version,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "walsrec_version": __version__,
            "hyperparameters": hyperparameters,
            "counts": counts,
            "metrics": metrics or {},
            "training": training or {},
            **(extra or {}),
        }
        (tmp / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
        final = root / str(version)
        while final.exists():  # two exports within one second
            version += 1
            meta["version"] = version
            (tmp / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
            final = root / str(version)
        os.replace(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(exc, root / str(version), "cannot write the export") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        release_temp(tmp)
    if keep is not None:
        for old in list_exports(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def resolve_export(path: str | os.PathLike) -> Path:
    """An export directory itself, or a model directory meaning its newest export."""
    p = Path(path)
    if (p / "model.json").is_file():
        return p
    exports = list_exports(p / "export") if (p / "export").is_dir() else list_exports(p)
    if exports:
        return exports[-1]
    raise DataFormatError(
        f"{str(p)!r} is neither an export (no model.json) nor a model directory with exports "
        "under export/."
    )


def read_export(path: str | os.PathLike, mmap: bool = False) -> Export:
    """Load an export (or a model directory's newest export), checking its consistency.

    ``mmap``: memory-map the arrays (a version 2 export's matrices of one block each; those
    of several blocks are assembled in memory).
    """
    root = resolve_export(path)
    meta = read_model_json(root / "model.json")
    if meta["format_version"] == BLOCKS_FORMAT_VERSION:
        export = _read_blocks(root, meta, None, mmap)
    else:
        u = load_npy(root / "user_factors.npy", mmap=mmap)
        v = load_npy(root / "item_factors.npy", mmap=mmap)
        users = Vocabulary.load(root / "vocab" / "users.txt", "users")
        items = Vocabulary.load(root / "vocab" / "items.txt", "items")
        user_items = load_csr(root / "train", "user_items", mmap=mmap)
        export = Export(root, meta, u, v, users, items, user_items)
        export.item_weights = _read_item_weights(root, meta, mmap)
    _check_export(export)
    return export


def read_export_rows(path: str | os.PathLike, lo: int, hi: int) -> Export:
    """Users ``lo:hi`` of an export: their factors, ids and training interactions, with
    every item's factors and popularity (what ranking those users needs). From a version 2
    export only the blocks that range spans are read; a version 1 export is memory-mapped."""
    root = resolve_export(path)
    meta = read_model_json(root / "model.json")
    n_users = int(meta["counts"]["n_users"])
    if not (0 <= lo <= hi <= n_users):
        raise InvalidParameterError(
            f"Users {lo}:{hi} are outside the {n_users} users of the export {root}."
        )
    if meta["format_version"] == BLOCKS_FORMAT_VERSION:
        export = _read_blocks(root, meta, (lo, hi), True)
    else:
        whole = read_export(root, mmap=True)
        popularity = np.bincount(
            np.asarray(whole.user_items.indices), minlength=whole.user_items.shape[1]
        ).astype(np.float64)
        export = Export(
            root,
            meta,
            np.array(whole.user_factors[lo:hi]),
            whole.item_factors,
            Vocabulary(whole.users.ids[lo:hi], "users"),
            whole.items,
            whole.user_items[lo:hi],
            popularity,
            (lo, hi),
            whole.item_weights,
        )
    _check_export(export)
    return export


def _read_blocks(root: Path, meta: dict, rows: tuple[int, int] | None, mmap: bool) -> Export:
    """A version 2 export (row blocks): all of it, or users ``rows``."""
    from walsrec.data.row_blocks import open_row_blocks

    user_f = open_row_blocks(root / "user_factors", "dense")
    item_f = open_row_blocks(root / "item_factors", "dense")
    user_ids = open_row_blocks(root / "vocab" / "users", "text")
    train = open_row_blocks(root / "train" / "user_items", "csr")
    popularity = open_row_blocks(root / "train" / "popularity", "dense")
    for name, blocks, want in (
        ("user_factors", user_f, (meta["counts"]["n_users"], meta["counts"]["embedding_dim"])),
        ("item_factors", item_f, (meta["counts"]["n_items"], meta["counts"]["embedding_dim"])),
        ("vocab/users", user_ids, (meta["counts"]["n_users"],)),
        ("train/user_items", train, (meta["counts"]["n_users"], meta["counts"]["n_items"])),
        ("train/popularity", popularity, (meta["counts"]["n_items"],)),
    ):
        if tuple(blocks.shape) != tuple(want):
            raise DataFormatError(
                f"{root / name / 'manifest.json'}: shape {tuple(blocks.shape)} does not match "
                f"model.json (expected {tuple(want)}); the export is inconsistent."
            )
    lo, hi = rows if rows is not None else (0, user_f.shape[0])
    whole = rows is None
    user_items = train.to_csr(mmap) if whole else train.csr_rows(lo, hi)
    if whole and user_items.nnz != meta["counts"]["train_interactions"]:
        raise DataFormatError(
            f"{root / 'train' / 'user_items'}: {user_items.nnz} entries where model.json "
            f"gives {meta['counts']['train_interactions']}; the export is inconsistent."
        )
    return Export(
        root,
        meta,
        user_f.to_array(mmap) if whole else user_f.rows(lo, hi),
        item_f.to_array(mmap),
        Vocabulary.from_lines(user_ids.text_rows(lo, hi), "users", root / "vocab" / "users"),
        Vocabulary.load(root / "vocab" / "items.txt", "items"),
        user_items,
        np.array(popularity.to_array(), dtype=np.float64),
        rows,
    )


def _write_item_weights(directory: Path, weights, n_items: int) -> None:
    """B as ``weights.npy`` (dense) or CSR arrays (sparse), refused unless n_items²."""
    if tuple(weights.shape) != (n_items, n_items):
        raise InvalidParameterError(
            f"The item-item weights of write_export must have shape ({n_items}, {n_items}) "
            f"(one row and column per item). Got {tuple(weights.shape)} instead."
        )
    directory.mkdir()
    if sp.issparse(weights):
        save_csr(directory, "weights", sp.csr_matrix(weights))
    else:
        np.save(directory / "weights.npy", np.ascontiguousarray(weights), allow_pickle=False)


def _read_item_weights(root: Path, meta: dict, mmap: bool):
    """The hybrid's B, checked against model.json's ``item_item``; None without one."""
    settings = meta.get("item_item")
    if settings is None:
        return None
    where = root / "model.json"
    beta = settings.get("blend_weight") if isinstance(settings, dict) else None
    form = settings.get("form") if isinstance(settings, dict) else None
    if (
        isinstance(beta, bool)
        or not isinstance(beta, int | float)
        or not (np.isfinite(beta) and beta >= 0)
        or form not in ("dense", "sparse")
    ):
        raise DataFormatError(
            f"{where}: 'item_item' must hold a finite 'blend_weight' >= 0 and a 'form' of "
            f"'dense' or 'sparse'. Got {settings!r} instead; the export is corrupt."
        )
    n_items = int(meta["counts"]["n_items"])
    directory = root / "item_item"
    if form == "sparse":
        weights = load_csr(directory, "weights", mmap=mmap)
        name = directory / "weights.json"
    else:
        name = directory / "weights.npy"
        weights = load_npy(name, mmap=mmap)
        if weights.dtype not in (np.float32, np.float64):
            raise DataFormatError(f"{name}: dtype {weights.dtype} is not float32 or float64.")
        if tuple(weights.shape) == (n_items, n_items):
            bad = next(
                (
                    lo
                    for lo in range(0, n_items, 4096)
                    if not np.isfinite(weights[lo : lo + 4096]).all()
                ),
                None,
            )
            if bad is not None:
                raise DataFormatError(f"{name}: NaN or infinity in rows {bad}–{bad + 4095}.")
    if tuple(weights.shape) != (n_items, n_items):
        raise DataFormatError(
            f"{name}: shape {tuple(weights.shape)} does not match model.json (expected "
            f"({n_items}, {n_items})); the export is inconsistent."
        )
    return weights


def _check_export(export: Export) -> None:
    """Every array's shape against model.json, float factors, finite values."""
    root, counts = export.path, export.meta["counts"]
    u, v, user_items = export.user_factors, export.item_factors, export.user_items
    lo, hi = export.rows if export.rows is not None else (0, counts.get("n_users"))
    blocks = export.meta["format_version"] == BLOCKS_FORMAT_VERSION
    names = (
        ("user_factors", "item_factors", "vocab/users", "train/user_items")
        if blocks
        else ("user_factors.npy", "item_factors.npy", "vocab/users.txt", "train/user_items.json")
    )
    expected = {
        names[0]: (u.shape, (hi - lo, counts.get("embedding_dim"))),
        names[1]: (v.shape, (counts.get("n_items"), counts.get("embedding_dim"))),
        names[2]: ((len(export.users),), (hi - lo,)),
        "vocab/items.txt": ((len(export.items),), (counts.get("n_items"),)),
        names[3]: (user_items.shape, (hi - lo, counts.get("n_items"))),
    }
    for file, (got, want) in expected.items():
        if tuple(got) != tuple(want):
            raise DataFormatError(
                f"{root / file}: shape {tuple(got)} does not match model.json "
                f"(expected {tuple(want)}); the export is inconsistent."
            )
    for file, arr in ((names[0], u), (names[1], v)):
        if arr.dtype.kind != "f" or arr.dtype.itemsize not in (4, 8):
            raise DataFormatError(
                f"{root / file}: dtype {arr.dtype} is not float32 or float64; the export is "
                "corrupt."
            )
    if not (np.isfinite(u).all() and np.isfinite(v).all()):
        raise DataFormatError(f"{root}: the factors contain NaN or infinity.")
    pop = export.item_popularity
    if pop is not None and (
        pop.shape != (v.shape[0],) or not np.isfinite(pop).all() or (pop < 0).any()
    ):
        raise DataFormatError(
            f"{root / 'train' / 'popularity'}: not one count >= 0 per item (shape {pop.shape}); "
            "the export is corrupt."
        )
