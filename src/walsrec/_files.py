"""File idioms shared by every writer and reader of walsrec's on-disk formats.

Writers never leave half a file or half a directory behind: they write under a hidden
temporary name beside the target (``.NAME.tmp-PID-RANDOM``) and rename it into place.
A directory that already exists is swapped with its replacement in one step where the
platform can (Linux's ``renameat2(RENAME_EXCHANGE)``); elsewhere the old one is renamed
aside first (``.NAME.old-PID-RANDOM/old``) and a run killed between the two renames is
mended by the next writer or reader of that path (:func:`recover_dir`). Files and
directories are created with the permissions the umask allows, as other tools create
them, so that a serving account can read what a training account wrote.

Readers of versioned JSON metadata turn every problem into a
:class:`~walsrec.errors.DataFormatError` naming the file; :func:`check_schema` validates
what they read against a declared schema.

:class:`DirectoryLock` is the exclusive lock that training, updating and pipeline runs
hold on their MODEL_DIR, and :func:`check_output_dir` is the rule for what ``--overwrite``
may replace.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import glob
import json
import math
import os
import re
import secrets
import shutil
import socket
import stat
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from walsrec.errors import DataFormatError, InvalidParameterError, LockedError

__all__ = [
    "DirectoryLock",
    "atomic_write_text",
    "check_output_dir",
    "check_output_file",
    "check_schema",
    "json_has_keys",
    "json_safe",
    "load_npy",
    "make_temp_dir",
    "open_regular",
    "read_bytes",
    "read_versioned_json",
    "recover_dir",
    "release_temp",
    "remove_dead_temporaries",
    "replace_dir",
    "save_npy",
    "show_path",
    "temp_name",
    "write_dir_atomically",
    "write_error",
]


def write_error(exc: OSError, path: str | os.PathLike, what: str) -> OSError:
    """The OSError of a failed write, naming ``path`` and saying ``what`` failed ("cannot
    write the export"); numpy's short write on a full disk names no file nor errno."""
    detail = str(exc)
    if exc.errno is None and "written" in detail:  # "89990 requested and 26592 written"
        detail += ": a short write, is the file system full?"
    return OSError(exc.errno, f"{what} ({detail})", os.fspath(path))


def temp_name(final: Path, kind: str = "tmp", suffix: str = "") -> Path:
    """A hidden name beside ``final`` for this process to write under (``.NAME.KIND-PID-
    RANDOM[SUFFIX]``): concurrent writers never share one, and later runs recognise it."""
    # the pid and random part keep concurrent writers apart (and tell a person whose it is)
    name = f".{final.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}{suffix}"
    return final.with_name(name)


# Temporaries this process is writing: path -> the descriptor holding its flock. A writer
# holds an exclusive flock on each of its temporaries while it lives (the system drops it
# when the process dies, even killed), so a later run removes exactly the temporaries
# nobody holds, whichever host or PID namespace wrote them.
_HELD: dict[str, int] = {}
_HELD_GUARD = threading.Lock()


def _hold(path: Path, fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with _HELD_GUARD:
        _HELD[os.fspath(path)] = fd


def release_temp(path: str | os.PathLike) -> None:
    """Let go of a temporary made by :func:`make_temp_dir` (after renaming or removing it)."""
    with _HELD_GUARD:
        fd = _HELD.pop(os.fspath(path), None)
    if fd is not None:
        os.close(fd)


def make_temp_dir(final: Path, kind: str = "tmp") -> Path:
    """A new, empty hidden directory beside ``final``, created with the umask's permissions
    and held (flock) by this process until :func:`release_temp`.

    (``tempfile.mkdtemp`` creates 0700 directories, which a serving account cannot read
    once they are renamed into place.)
    """
    while True:
        path = temp_name(final, kind)
        try:
            path.mkdir()
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue
        _hold(path, os.open(path, os.O_RDONLY | os.O_DIRECTORY))
        return path


def _write_file_atomically(path: Path, suffix: str, what: str, write: Callable) -> None:
    """``write(binary file)`` into a held temporary beside ``path``, then rename it there."""
    tmp = temp_name(path, "tmp", suffix)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with os.fdopen(os.dup(fd), "wb") as f:
            write(f)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(exc, path, f"cannot write the {what}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to a hidden temporary file beside ``path``, then rename it to ``path``."""
    data = text.encode("utf-8")
    _write_file_atomically(Path(path), "", "file", lambda f: f.write(data))


def save_npy(path: str | os.PathLike, array) -> None:
    """``np.save`` under a temporary name of this process's own, then renamed to ``path``."""
    _write_file_atomically(
        Path(path), ".npy", "array", lambda f: np.save(f, array, allow_pickle=False)
    )


def show_path(path: str | os.PathLike) -> str:
    """A path for messages: relative to the working directory when it lies below it."""
    rel = os.path.relpath(path)
    return str(path) if rel.startswith("..") else rel


# ----------------------------------------------------------------------------- swapping

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100
_renameat2: Any = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2``); False where unsupported."""
    global _renameat2
    if not sys.platform.startswith("linux"):
        return False
    if _renameat2 is None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = getattr(libc, "renameat2", None)  # glibc 2.28 and newer
        if fn is not None:
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
            fn.argtypes += [ctypes.c_uint]
            fn.restype = ctypes.c_int
        _renameat2 = fn or False
    if _renameat2 is False:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False  # the file system cannot exchange: rename aside instead
    raise OSError(err, os.strerror(err), str(a), None, str(b))


_TEMP_NAME = re.compile(r"^\.(?P<final>.+)\.(?P<kind>tmp|old)-\d+-[0-9a-f]+(\.[a-z]+)?$")
# A temporary younger than this is left alone: its writer may not hold its flock yet.
_GRACE_S = 10.0


def _abandoned(path: Path, grace_s: float = _GRACE_S) -> bool:
    """True when nobody holds ``path``'s flock and it is older than ``grace_s``."""
    try:
        if time.time() - path.lstat().st_mtime < grace_s or path.is_symlink():
            return False
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by a live writer (BlockingIOError), or cannot be locked
        return False
    finally:
        os.close(fd)
    return True


def _leftovers(
    directory: Path, final: str | None = None, kind: str | None = None, grace_s: float = _GRACE_S
) -> list[Path]:
    """Temporary entries (``.NAME.tmp-PID-RANDOM``, ``.NAME.old-...``) that no live
    writer holds, in ``directory``; only those of ``final`` and ``kind`` when given."""
    try:
        entries = list(directory.iterdir())
    except OSError:
        return []
    dead = []
    for p in entries:
        m = _TEMP_NAME.match(p.name)
        if (
            m
            and (final is None or m["final"] == final)
            and (kind is None or m["kind"] == kind)
            and _abandoned(p, grace_s)
        ):
            dead.append(p)
    return dead


def _remove(paths: Iterable[Path]) -> None:
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()


def remove_dead_temporaries(directory: str | os.PathLike, grace_s: float = _GRACE_S) -> None:
    """Remove the temporary files and directories that killed walsrec runs left in
    ``directory`` (those of live runs stay). ``grace_s``: a temporary younger than this is
    kept (its writer may be about to lock it); 0 where every writer is known to be done."""
    _remove(_leftovers(Path(directory), grace_s=grace_s))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # another run mended it first
        return 0.0


def recover_dir(final: str | os.PathLike) -> None:
    """Mend what a killed writer of the directory ``final`` left behind.

    A run killed between renaming the old ``final`` aside and the new one in leaves no
    ``final`` at all: the old one is put back. Temporary directories of dead runs are
    removed. Called by every writer before it writes, and by readers of DATA_DIRs.
    """
    final = Path(final)
    olds = _leftovers(final.parent, final.name, "old")
    if not final.exists():
        for trash in sorted(olds, key=_mtime, reverse=True):
            if (trash / "old").exists():
                with contextlib.suppress(OSError):
                    os.rename(trash / "old", final)
                    break
    _remove(olds + _leftovers(final.parent, final.name, "tmp"))


def replace_dir(tmp: Path, final: Path) -> None:
    """Rename the complete directory ``tmp`` to ``final``, replacing what ``final`` held.

    At no moment is there nothing at ``final``: the two are exchanged in one step where
    the file system allows it; otherwise a kill between the two renames is mended by the
    next :func:`recover_dir`.
    """
    if not final.exists():
        os.rename(tmp, final)
        return
    if _exchange(tmp, final):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old directory
        return
    trash = make_temp_dir(final, "old")
    try:
        os.rename(final, trash / "old")
        os.rename(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    finally:
        release_temp(trash)


def write_dir_atomically(final: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` into a hidden directory beside ``final``, then put it in place.

    On any error the temporary directory is removed and ``final`` is left as it was.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(final)
    tmp = make_temp_dir(final)
    try:
        write(tmp)
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        release_temp(tmp)


# ----------------------------------------------------------------------------- outputs


def _inside(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def check_output_dir(
    out: str | os.PathLike,
    *,
    owned: Callable[[Path], bool],
    marker: str,
    what: str,
    inputs: Iterable[str | os.PathLike] = (),
    parameter: str = "out",
) -> None:
    """Refuse to replace ``out`` unless it is walsrec's own kind of output or empty.

    ``--overwrite`` deletes what ``out`` holds, so ``out`` must not exist, or be an empty
    directory (a lock file aside), or a directory that ``owned`` recognises as walsrec's
    (``marker`` says how, for the message: "walsrec's meta.json"); and it may neither
    equal nor contain any of ``inputs`` (local paths, globs and ``file://`` URLs).
    """
    out = Path(out)
    resolved = out.resolve()
    for inp in inputs:
        text = os.fspath(inp)
        if text.startswith("file://"):
            local = urllib.parse.unquote(urllib.parse.urlsplit(text).path)
        elif "://" in text:
            continue  # not on this machine's file system
        else:
            local = text
        # a glob: every file it matches now, and the directory of its fixed prefix
        fixed = re.split(r"[*?\[]", local, maxsplit=1)[0]
        candidates = [local] if fixed == local else [*glob.glob(local), os.path.dirname(fixed)]
        if any(_inside(Path(c or ".").resolve(), resolved) for c in candidates):
            raise InvalidParameterError(
                f"The '{parameter}' directory {str(out)!r} contains or is the input "
                f"{text!r}; writing there would destroy it. Choose another {what} path."
            )
    if out.is_symlink():
        raise InvalidParameterError(
            f"The '{parameter}' path {str(out)!r} is a symbolic link; walsrec replaces only "
            f"a {what} it wrote, or an empty directory. Give the directory's own path."
        )
    if out.exists() and not out.is_dir():
        raise InvalidParameterError(
            f"The '{parameter}' path {str(out)!r} exists and is not a directory; walsrec "
            f"replaces only a {what} it wrote, or an empty directory."
        )
    if not out.is_dir() or owned(out):
        return
    if any(p.name != ".lock" for p in out.iterdir()):
        raise InvalidParameterError(
            f"The '{parameter}' directory {str(out)!r} is not empty and is not a {what} (it "
            f"has no {marker}); walsrec replaces only a {what} it wrote, or an empty "
            "directory. Choose another path, or empty it yourself."
        )


def json_has_keys(path: Path, keys: Iterable[str]) -> bool:
    """True when ``path`` is a regular file holding a JSON object with all ``keys`` (how a
    walsrec output is told from somebody else's file of the same name)."""
    try:
        doc = json.loads(read_bytes(path).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and all(k in doc for k in keys)


def check_output_file(
    out: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    parameter: str = "out",
) -> None:
    """Refuse an output file that is, or lies inside, one of ``inputs`` (files or
    directories: an export, a DATA_DIR, a users file, a configuration), or that is a
    directory. URLs and None among ``inputs`` are skipped."""
    out = Path(out)
    resolved = out.resolve()
    for inp in inputs:
        if inp is None or "://" in os.fspath(inp):
            continue
        if _inside(resolved, Path(inp).resolve()):
            raise InvalidParameterError(
                f"The '{parameter}' file {str(out)!r} is or lies inside the input "
                f"{os.fspath(inp)!r}; writing it would destroy that input. Choose another path."
            )
    if out.is_dir():
        raise InvalidParameterError(
            f"The '{parameter}' path {str(out)!r} is a directory; give a file name."
        )


# ----------------------------------------------------------------------------- locking


class DirectoryLock:
    """An exclusive lock on a directory (``DIR/.lock``, ``flock``), for one writer at a time.

    The lock file records who holds it (pid, host, purpose, since), so that a second run
    can say so; the operating system releases the lock when its holder exits, even when
    killed, so a stale lock file never blocks anybody. Within one process the lock is
    re-entrant (a pipeline holds it and calls train, which takes it again).

    >>> with DirectoryLock(model_dir, "train"):  # doctest: +SKIP
    ...     ...
    """

    def __init__(self, directory: str | os.PathLike, purpose: str) -> None:
        self.directory = Path(directory)
        self.purpose = purpose
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self.directory / ".lock"

    # realpath of a held lock file -> [fd, depth, owning thread], for re-entry
    _held: ClassVar[dict[str, list[int]]] = {}
    _guard = threading.Lock()

    def acquire(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(self.path)
        with self._guard:
            held = self._held.get(key)
            if held is not None:
                if held[2] != threading.get_ident():
                    raise LockedError(
                        f"{self.directory}: in use by another thread of this process; two "
                        "runs on one directory would overwrite each other."
                    )
                held[1] += 1
                self._fd = -1  # a nested hold: release() only counts down
                return
            self._acquire(key)

    def _acquire(self, key: str) -> None:
        try:
            # never through a symbolic link: the holder's record would overwrite its target
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as exc:
            raise LockedError(
                f"{self.path}: cannot be opened as the directory's lock file "
                f"({exc.strerror or exc}); it must be a regular file (or absent)."
            ) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise LockedError(f"{self.path}: not a regular file; cannot lock {self.directory}.")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockedError(
                f"{self.directory}: in use by another walsrec run ({holder}); wait for it "
                "to finish or stop it. Two runs on one directory would overwrite each other."
            ) from None
        except BaseException:
            os.close(fd)
            raise
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "purpose": self.purpose,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd
        self._held[key] = [fd, 1, threading.get_ident()]

    def release(self) -> None:
        if self._fd is None:
            return
        self._fd = None
        key = os.path.realpath(self.path)
        with self._guard:
            held = self._held.get(key)
            if held is None:
                return
            held[1] -= 1
            if held[1] > 0:
                return
            del self._held[key]
            with contextlib.suppress(OSError):
                os.ftruncate(held[0], 0)
            os.close(held[0])  # closing releases the flock

    def __enter__(self) -> DirectoryLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
        return f"{info['purpose']}, pid {int(info['pid'])} on {info['host']}, since {info['since']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"


# ----------------------------------------------------------------------------- arrays


def open_regular(path: str | os.PathLike) -> int:
    """A read-only descriptor of ``path``, which must be a regular file: a FIFO or device
    planted among a model's files would block the reader (or never end), so it is a
    :class:`~walsrec.errors.DataFormatError` naming it (FileNotFoundError when missing)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens without waiting
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DataFormatError(f"{path}: not a regular file.")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of the regular file ``path`` (see :func:`open_regular`)."""
    with os.fdopen(open_regular(path), "rb") as f:
        return f.read()


def load_npy(path: str | os.PathLike, mmap: bool = False) -> np.ndarray:
    """An ``.npy`` file's array (memory-mapped with ``mmap``), checked before it is read.

    The header must describe a plain (no objects) array whose bytes are exactly what the
    file holds, so a tampered header can neither make numpy allocate more than the file's
    size nor read past its end. Any problem is a
    :class:`~walsrec.errors.DataFormatError` naming the file.
    """
    fmt = np.lib.format
    try:
        with os.fdopen(open_regular(path), "rb") as f:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = fmt.read_array_header_2_0(f)
            else:
                raise ValueError(f"format version {version} is not supported")
            if dtype.hasobject:
                raise ValueError(f"dtype {dtype} holds Python objects")
            need = dtype.itemsize * math.prod(shape)
            have = os.fstat(f.fileno()).st_size - f.tell()
            if need != have:
                raise ValueError(
                    f"the header describes {need:,} bytes of data ({dtype}, shape {shape}) "
                    f"but the file holds {have:,}; it is truncated or tampered with"
                )
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise DataFormatError(f"{path}: missing.") from None
    except DataFormatError:
        raise
    except Exception as exc:  # numpy's header parser raises many types (SyntaxError, ...)
        raise DataFormatError(f"{path}: not a readable .npy array ({exc}).") from None


# ----------------------------------------------------------------------------- JSON


def json_safe(record: dict) -> dict:
    """NaN (a metric no user qualified for) becomes null: metrics.jsonl is strict JSON."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in record.items()}


def read_versioned_json(path: Path, format_version: int | tuple[int, ...], missing: str) -> dict:
    """JSON metadata whose ``format_version`` must be ``format_version`` (or one of them).

    ``missing`` completes the message when the file does not exist ("<path>: missing; ...").
    """
    try:
        meta = json.loads(read_bytes(path).decode("utf-8"))
    except FileNotFoundError:
        raise DataFormatError(f"{path}: missing; {missing}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise DataFormatError(f"{path}: not valid JSON ({exc}).") from None
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot be read ({exc.strerror or exc}).") from None
    versions = format_version if isinstance(format_version, tuple) else (format_version,)
    got = meta.get("format_version") if isinstance(meta, dict) else None
    if got not in versions or isinstance(got, bool):
        reads = " or ".join(str(v) for v in versions)
        raise DataFormatError(
            f"{path}: format_version {got!r} is not supported (this walsrec reads {reads})."
        )
    return meta


def check_schema(schema: type, data: Any, path: str | os.PathLike) -> Any:
    """Validate ``data`` (parsed JSON) against a pydantic model; errors name the file.

    Returns the validated model. The message lists each problem as the key path, the
    rule and the value received, e.g. ``model.json: counts.n_users: Input should be a
    valid integer (got 'abc')``.
    """
    import pydantic

    try:
        return schema.model_validate(data, strict=True)
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False)[:5]:
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            got = repr(err.get("input"))
            got = got if len(got) <= 60 else got[:57] + "..."
            problems.append(f"{where}: {err['msg']} (got {got})")
        more = exc.error_count() - len(problems)
        tail = f"; and {more} more" if more > 0 else ""
        raise DataFormatError(f"{path}: {'; '.join(problems)}{tail}.") from None
