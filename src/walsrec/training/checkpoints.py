"""Checkpoints in MODEL_DIR/checkpoints: factors plus the loop's state, written atomically.

``checkpoints/step-SSSSSSSSS/`` holds ``user_factors.npy``, ``item_factors.npy`` and
``state.json`` (step, sweep, loss history, early-stopping state). ``checkpoints/best/``
holds the best factors so far when early stopping is on. Each is written into a hidden
temporary directory and renamed, so a run killed at any moment leaves only complete
checkpoints; training resumes from the newest.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from walsrec._files import write_dir_atomically
from walsrec.errors import DataFormatError

__all__ = ["Checkpoint", "latest_checkpoint", "read_checkpoint", "write_checkpoint"]

_PREFIX = "step-"


@dataclass
class Checkpoint:
    path: Path
    state: dict
    user_factors: np.ndarray
    item_factors: np.ndarray


def _write_dir(final: Path, user_factors, item_factors, state: dict) -> None:
    def write(tmp: Path) -> None:
        np.save(tmp / "user_factors.npy", user_factors, allow_pickle=False)
        np.save(tmp / "item_factors.npy", item_factors, allow_pickle=False)
        (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")

    write_dir_atomically(final, write)


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
    root: str | os.PathLike, step: int, user_factors, item_factors, state: dict, keep: int
) -> Path:
    """Write ``root/step-<step>`` and drop all but the newest ``keep`` step checkpoints."""
    root = Path(root)
    final = root / f"{_PREFIX}{step:09d}"
    _write_dir(final, user_factors, item_factors, state)
    for old in _steps(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def write_best(root: str | os.PathLike, user_factors, item_factors, state: dict) -> Path:
    """Write (replace) ``root/best``."""
    final = Path(root) / "best"
    _write_dir(final, user_factors, item_factors, state)
    return final


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    path = Path(path)
    try:
        state = json.loads((path / "state.json").read_text())
        u = np.load(path / "user_factors.npy", allow_pickle=False)
        v = np.load(path / "item_factors.npy", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataFormatError(f"{path}: the checkpoint cannot be read ({exc}).") from None
    return Checkpoint(path, state, u, v)


def latest_checkpoint(root: str | os.PathLike) -> Checkpoint | None:
    """The newest step checkpoint under ``root``, or None."""
    steps = _steps(Path(root))
    return read_checkpoint(steps[-1]) if steps else None
