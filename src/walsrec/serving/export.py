"""Exported models: a self-contained directory of plain data, written atomically.

Layout of ``MODEL_DIR/export/<version>/`` (``version`` is an integer, Unix seconds at
export time, increasing)::

    model.json              format_version, hyper-parameters, counts, metrics, created
    user_factors.npy        (n_users, k)
    item_factors.npy        (n_items, k)
    vocab/users.txt         one original id per line; line number = index
    vocab/items.txt
    train/user_items.*.npy  the training interactions (to exclude already-seen items)

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
    "list_exports",
    "read_export",
    "read_model_json",
    "resolve_export",
    "write_export",
]

FORMAT_VERSION = 1


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
        format_version: Literal[1]
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
    meta = read_versioned_json(path, FORMAT_VERSION, "not a walsrec export.")
    check_schema(_model_json_schema(), meta, path)
    return meta


@dataclass
class Export:
    """An exported model loaded back into memory."""

    path: Path
    meta: dict
    user_factors: np.ndarray
    item_factors: np.ndarray
    users: Vocabulary
    items: Vocabulary
    user_items: sp.csr_matrix

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
) -> Path:
    """Write a new export under ``model_dir/export`` and return its path.

    ``keep`` (optional) removes the oldest exports beyond that number afterwards.
    """
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise InvalidParameterError(
            f"The 'keep' parameter of write_export must be None or an int >= 1. Got {keep!r} "
            "instead."
        )
    root = Path(model_dir) / "export"
    root.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(root)  # what killed exports left
    existing = list_exports(root)
    version = max(int(time.time()), int(existing[-1].name) + 1 if existing else 0)
    tmp = make_temp_dir(root / str(version))
    try:
        np.save(tmp / "user_factors.npy", np.ascontiguousarray(user_factors), allow_pickle=False)
        np.save(tmp / "item_factors.npy", np.ascontiguousarray(item_factors), allow_pickle=False)
        (tmp / "vocab").mkdir()
        users.save(tmp / "vocab" / "users.txt")
        items.save(tmp / "vocab" / "items.txt")
        save_csr(tmp / "train", "user_items", user_items)
        meta = {
            "format_version": FORMAT_VERSION,
            "version": version,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "walsrec_version": __version__,
            "hyperparameters": hyperparameters,
            "counts": {
                "n_users": int(user_factors.shape[0]),
                "n_items": int(item_factors.shape[0]),
                "embedding_dim": int(user_factors.shape[1]),
                "train_interactions": int(user_items.nnz),
            },
            "metrics": metrics or {},
            "training": training or {},
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
    """Load an export (or a model directory's newest export), checking its consistency."""
    root = resolve_export(path)
    meta = read_model_json(root / "model.json")
    arrays = {}
    for name in ("user_factors", "item_factors"):
        arrays[name] = load_npy(root / f"{name}.npy", mmap=mmap)
    users = Vocabulary.load(root / "vocab" / "users.txt", "users")
    items = Vocabulary.load(root / "vocab" / "items.txt", "items")
    user_items = load_csr(root / "train", "user_items", mmap=mmap)
    counts = meta["counts"]
    u, v = arrays["user_factors"], arrays["item_factors"]
    expected = {
        "user_factors.npy": (u.shape, (counts.get("n_users"), counts.get("embedding_dim"))),
        "item_factors.npy": (v.shape, (counts.get("n_items"), counts.get("embedding_dim"))),
        "vocab/users.txt": ((len(users),), (counts.get("n_users"),)),
        "vocab/items.txt": ((len(items),), (counts.get("n_items"),)),
        "train/user_items.json": (user_items.shape, (counts.get("n_users"), counts.get("n_items"))),
    }
    for file, (got, want) in expected.items():
        if tuple(got) != tuple(want):
            raise DataFormatError(
                f"{root / file}: shape {tuple(got)} does not match model.json "
                f"(expected {tuple(want)}); the export is inconsistent."
            )
    for file, arr in (("user_factors.npy", u), ("item_factors.npy", v)):
        if arr.dtype.kind != "f" or arr.dtype.itemsize not in (4, 8):
            raise DataFormatError(
                f"{root / file}: dtype {arr.dtype} is not float32 or float64; the export is "
                "corrupt."
            )
    if not (np.isfinite(u).all() and np.isfinite(v).all()):
        raise DataFormatError(f"{root}: the factors contain NaN or infinity.")
    return Export(root, meta, u, v, users, items, user_items)
