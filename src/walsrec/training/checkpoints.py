"""Checkpoints in MODEL_DIR/checkpoints: factors plus the loop's state, written atomically.

``checkpoints/step-SSSSSSSSS/`` holds ``user_factors.npy``, ``item_factors.npy`` and
``state.json`` (step, sweep, loss history, early-stopping state). ``checkpoints/best/``
holds the best factors so far when early stopping is on. Each is written into a hidden
temporary directory and renamed, so a run killed at any moment leaves only complete
checkpoints; training resumes from the newest.

On a Dask cluster the workers write the factors themselves, as row blocks
(``user_factors/`` and ``item_factors/``, each with a manifest: :mod:`walsrec.data.row_blocks`)
into the same temporary directory; :func:`read_checkpoint` then checks the manifests and
leaves the blocks on disk (:class:`~walsrec.data.row_blocks.RowBlocks`), for the workers
to read their rows.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from walsrec._files import (
    check_schema,
    load_npy,
    read_bytes,
    write_dir_atomically,
    write_error,
)
from walsrec.data.row_blocks import RowBlocks, is_row_blocks, open_row_blocks
from walsrec.errors import DataFormatError

__all__ = [
    "Checkpoint",
    "as_array",
    "latest_checkpoint",
    "read_checkpoint",
    "write_best",
    "write_checkpoint",
]

#: writes a checkpoint's factors into the temporary directory it is given
FactorWriter = Callable[[Path], None]

_PREFIX = "step-"


@dataclass
class Checkpoint:
    """A checkpoint read back: its factors are arrays, or row blocks left on disk (written
    by Dask workers; :func:`as_array` reads them whole)."""

    path: Path
    state: dict
    user_factors: np.ndarray | RowBlocks
    item_factors: np.ndarray | RowBlocks

    @property
    def sharded(self) -> bool:
        """True when the factors are row blocks."""
        return isinstance(self.user_factors, RowBlocks)


def as_array(factors: np.ndarray | RowBlocks) -> np.ndarray:
    """A checkpoint's factors as one array (row blocks read and checked)."""
    return factors.to_array() if isinstance(factors, RowBlocks) else factors


def _arrays(user_factors, item_factors) -> FactorWriter:
    def write(tmp: Path) -> None:
        np.save(tmp / "user_factors.npy", user_factors, allow_pickle=False)
        np.save(tmp / "item_factors.npy", item_factors, allow_pickle=False)

    return write


def _write_dir(final: Path, write_factors: FactorWriter, state: dict) -> None:
    def write(tmp: Path) -> None:
        write_factors(tmp.absolute())
        (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")

    try:
        write_dir_atomically(final, write)
    except OSError as exc:
        raise write_error(exc, final, "cannot write the checkpoint") from None


def _steps(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith(_PREFIX) and p.name[len(_PREFIX) :].isdigit()
    ]
    return sorted(found, key=lambda p: int(p.name[len(_PREFIX) :]))


def write_checkpoint(
    root: str | os.PathLike,
    step: int,
    user_factors,
    item_factors,
    state: dict,
    keep: int,
    *,
    write_factors: FactorWriter | None = None,
) -> Path:
    """Write ``root/step-<step>`` and drop all but the newest ``keep`` step checkpoints.

    ``write_factors(tmp)``, when given, writes the factors instead of ``user_factors`` and
    ``item_factors`` (then None): e.g. Dask workers writing row blocks into ``tmp``.
    """
    root = Path(root)
    final = root / f"{_PREFIX}{step:09d}"
    _write_dir(final, write_factors or _arrays(user_factors, item_factors), state)
    for old in _steps(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def write_best(
    root: str | os.PathLike,
    user_factors,
    item_factors,
    state: dict,
    *,
    write_factors: FactorWriter | None = None,
) -> Path:
    """Write (replace) ``root/best``; ``write_factors`` as :func:`write_checkpoint`'s."""
    final = Path(root) / "best"
    _write_dir(final, write_factors or _arrays(user_factors, item_factors), state)
    return final


@functools.cache
def _schema(kind: str) -> type:
    """state.json's schema for a step checkpoint or ``best`` (pydantic; built on first use)."""
    from typing import Annotated

    from pydantic import BaseModel, ConfigDict, Field

    count = Annotated[int, Field(ge=0)]

    class StepState(BaseModel):
        model_config = ConfigDict(extra="allow")
        step: count
        loss_history: list[float]
        best: float | None
        best_step: count | None
        bad_evals: count
        stopped_early: bool

    class Record(BaseModel):
        model_config = ConfigDict(extra="allow")
        step: count

    class BestState(BaseModel):
        model_config = ConfigDict(extra="allow")
        step: count
        record: Record

    return {"step": StepState, "best": BestState}[kind]


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and check a checkpoint directory written by :func:`write_checkpoint` or
    :func:`write_best`: state.json against its schema (a step checkpoint's step must be
    the one its name gives), the factors 2-d, floating point, finite, of one width.
    Row blocks are checked by their manifests here and block by block where they are read.
    """
    path = Path(path)
    state_path = path / "state.json"
    try:
        state = json.loads(read_bytes(state_path).decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise DataFormatError(f"{path}: the checkpoint cannot be read ({exc}).") from None
    if is_row_blocks(path / "user_factors") or is_row_blocks(path / "item_factors"):
        u = open_row_blocks(path / "user_factors", "dense")
        v = open_row_blocks(path / "item_factors", "dense")
    else:
        u = load_npy(path / "user_factors.npy")
        v = load_npy(path / "item_factors.npy")
    is_step = path.name.startswith(_PREFIX)
    check_schema(_schema("step" if is_step else "best"), state, state_path)
    if is_step and (state["best_step"] or 0) > state["step"]:
        raise DataFormatError(
            f"{state_path}: best_step {state['best_step']} is after step {state['step']}; "
            "the checkpoint is corrupt. Delete it to resume from an older one."
        )
    if is_step and state["step"] != int(path.name[len(_PREFIX) :]):
        raise DataFormatError(
            f"{state_path}: step {state['step']} is not the step of its checkpoint "
            f"({path.name}); the checkpoint is corrupt. Delete it to resume from an older one."
        )
    for name, arr in (("user_factors.npy", u), ("item_factors.npy", v)):
        if isinstance(arr, RowBlocks):
            name = f"{name[:-4]}/manifest.json"
        if len(arr.shape) != 2 or arr.dtype.kind != "f" or arr.dtype.itemsize not in (4, 8):
            raise DataFormatError(
                f"{path / name}: expected a 2-d float32 or float64 array, got {arr.dtype} "
                f"with shape {arr.shape}; the checkpoint is corrupt."
            )
        if not isinstance(arr, RowBlocks) and not np.isfinite(arr).all():
            raise DataFormatError(
                f"{path / name}: the factors contain NaN or infinity; the checkpoint is corrupt."
            )
    if u.shape[1] != v.shape[1]:
        raise DataFormatError(
            f"{path}: user factors {u.shape} and item factors {v.shape} differ in width; the "
            "checkpoint is corrupt."
        )
    return Checkpoint(path, state, u, v)


def latest_checkpoint(root: str | os.PathLike) -> Checkpoint | None:
    """The newest step checkpoint under ``root``, or None."""
    steps = _steps(Path(root))
    return read_checkpoint(steps[-1]) if steps else None
