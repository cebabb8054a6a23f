"""File idioms shared by every writer and reader of walsrec's on-disk formats.

Writers never leave half a file or half a directory behind: they write under a hidden
temporary name beside the target and rename it into place. Readers of versioned JSON
metadata turn every problem into a :class:`~walsrec.errors.DataFormatError` naming the file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from walsrec.errors import DataFormatError

__all__ = ["atomic_write_text", "read_versioned_json", "replace_dir", "write_dir_atomically"]


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to a hidden temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def replace_dir(tmp: Path, final: Path) -> None:
    """Rename the complete directory ``tmp`` to ``final``, replacing what ``final`` held."""
    if final.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.replace(final, trash / "old")
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)


def write_dir_atomically(final: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` into a hidden directory beside ``final``, then put it in place.

    On any error the temporary directory is removed and ``final`` is left as it was.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        write(tmp)
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_versioned_json(path: Path, format_version: int, missing: str) -> dict:
    """JSON metadata whose ``format_version`` must be ``format_version``.

    ``missing`` completes the message when the file does not exist ("<path>: missing; ...").
    """
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataFormatError(f"{path}: missing; {missing}") from None
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}: not valid JSON ({exc}).") from None
    if not isinstance(meta, dict) or meta.get("format_version") != format_version:
        got = meta.get("format_version") if isinstance(meta, dict) else None
        raise DataFormatError(
            f"{path}: format_version {got!r} is not supported (this walsrec reads "
            f"{format_version})."
        )
    return meta
