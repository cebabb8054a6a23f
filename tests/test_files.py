from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from walsrec import _files
from walsrec._files import (
    DirectoryLock,
    atomic_write_text,
    check_output_dir,
    read_versioned_json,
    recover_dir,
    remove_dead_temporaries,
    write_dir_atomically,
)
from walsrec.errors import DataFormatError, InvalidParameterError, LockedError


def test_read_versioned_json_names_the_file_and_the_problem(tmp_path):
    p = tmp_path / "meta.json"
    with pytest.raises(DataFormatError, match=r"meta\.json: missing; not a DATA_DIR\."):
        read_versioned_json(p, 1, "not a DATA_DIR.")
    p.write_text("{oops")
    with pytest.raises(DataFormatError, match=r"meta\.json: not valid JSON"):
        read_versioned_json(p, 1, "")
    atomic_write_text(p, '{"format_version": 2}')
    with pytest.raises(
        DataFormatError,
        match=r"format_version 2 is not supported \(this "
        r"walsrec reads 1\)",
    ):
        read_versioned_json(p, 1, "")
    atomic_write_text(p, '{"format_version": 1, "n": 3}')
    assert read_versioned_json(p, 1, "") == {"format_version": 1, "n": 3}
    assert os.listdir(tmp_path) == ["meta.json"]  # no temporary file left


def test_write_dir_atomically_replaces_whole_or_not_at_all(tmp_path):
    final = tmp_path / "out"
    write_dir_atomically(final, lambda d: (d / "a.txt").write_text("one"))
    assert (final / "a.txt").read_text() == "one"

    def fail(d):
        (d / "a.txt").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_dir_atomically(final, fail)
    assert (final / "a.txt").read_text() == "one"
    write_dir_atomically(final, lambda d: (d / "b.txt").write_text("two"))
    assert sorted(os.listdir(final)) == ["b.txt"]
    assert sorted(os.listdir(tmp_path)) == ["out"]


# ------------------------------------------------------------------- swapping directories


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(proc.stdout)


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "rename-aside"])
def test_replace_dir_swaps_whole_directories(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(_files, "_exchange", lambda a, b: False)
    final = tmp_path / "out"
    write_dir_atomically(final, lambda d: (d / "a.txt").write_text("one"))
    write_dir_atomically(final, lambda d: (d / "b.txt").write_text("two"))
    assert sorted(os.listdir(final)) == ["b.txt"]
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_renameat2_exchange_is_used_where_the_kernel_has_it(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    if not _files._exchange(a, b):
        pytest.skip("this platform or file system cannot exchange two paths")
    assert (b / "x").read_text() == "a" and not (a / "x").exists()


def test_a_kill_between_the_two_renames_is_mended_by_the_next_run(tmp_path, monkeypatch):
    """The fallback's window: old renamed aside, new not yet in. Nothing is at ``final``;
    the next writer (or reader) puts the old directory back and clears the leftovers."""
    monkeypatch.setattr(_files, "_exchange", lambda a, b: False)
    final = tmp_path / "data"
    write_dir_atomically(final, lambda d: (d / "meta.json").write_text("old"))
    real_rename = os.rename
    calls = []

    def killed_after_first(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise KeyboardInterrupt  # stands for SIGKILL between the renames
        real_rename(src, dst)

    monkeypatch.setattr(_files.os, "rename", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        write_dir_atomically(final, lambda d: (d / "meta.json").write_text("new"))
    monkeypatch.setattr(_files.os, "rename", real_rename)
    assert not final.exists()  # the window the issue describes
    for p in tmp_path.iterdir():
        _age(p)  # past the grace period that a new temporary gets
    recover_dir(final)
    assert (final / "meta.json").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["data"]


def _age(path, seconds=60):
    t = time.time() - seconds
    os.utime(path, (t, t))


_HOLD_TEMP = """
import sys, time
from pathlib import Path
from walsrec._files import make_temp_dir
print(make_temp_dir(Path(sys.argv[1])), flush=True)
time.sleep(60)
"""


def test_only_temporaries_nobody_holds_are_removed(tmp_path):
    """Liveness is the writer's flock, not its pid: a writer on another host or in another
    PID namespace (its pid means nothing here) keeps its temporary."""
    final = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD_TEMP, str(final)], stdout=subprocess.PIPE, text=True
    )
    try:
        held = Path(proc.stdout.readline().strip())
        # as another namespace's writer would look: a pid no process here has
        foreign = held.with_name(re.sub(r"-\d+-", f"-{_dead_pid()}-", held.name))
        held.rename(foreign)
        abandoned = tmp_path / f".data.tmp-{os.getpid()}-0a0b0c0d"
        young = tmp_path / f".data.old-{os.getpid()}-0e0f0a0b"
        other = tmp_path / f".other.tmp-{os.getpid()}-01020304.png"
        abandoned.mkdir()
        young.mkdir()
        other.write_bytes(b"")
        for p in (foreign, abandoned, other):
            _age(p)
        write_dir_atomically(final, lambda d: (d / "x").write_text("x"))
        assert foreign.exists() and young.exists() and not abandoned.exists()
        assert other.exists()  # another name's: left to its own writer's next run
        remove_dead_temporaries(tmp_path)
        assert foreign.exists() and young.exists() and not other.exists()
    finally:
        proc.kill()
        proc.wait()
    remove_dead_temporaries(tmp_path)  # its writer is gone now
    assert not foreign.exists()


def test_written_directories_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        final = tmp_path / "out"
        write_dir_atomically(final, lambda d: (d / "a.txt").write_text("one"))
        atomic_write_text(tmp_path / "f.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(final.stat().st_mode) == 0o755  # tempfile.mkdtemp made it 0700
    assert stat.S_IMODE((tmp_path / "f.json").stat().st_mode) == 0o644


def test_concurrent_atomic_writes_use_distinct_temporaries(tmp_path):
    names = {_files.temp_name(tmp_path / "curve.png", "tmp").name for _ in range(50)}
    assert len(names) == 50
    assert all(n.startswith(f".curve.png.tmp-{os.getpid()}-") for n in names)


# ------------------------------------------------------------------- --overwrite's rule


def test_check_output_dir_replaces_only_its_own_kind_or_empty(tmp_path):
    kw = dict(
        owned=lambda d: _files.json_has_keys(d / "meta.json", ["counts"]),
        marker="walsrec's meta.json",
        what="DATA_DIR",
    )
    check_output_dir(tmp_path / "absent", **kw)
    (tmp_path / "empty").mkdir()
    check_output_dir(tmp_path / "empty", **kw)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "meta.json").write_text('{"counts": {}}')
    (tmp_path / "mine" / "other.txt").write_text("")
    check_output_dir(tmp_path / "mine", **kw)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.tex").write_text("")
    with pytest.raises(
        InvalidParameterError,
        match=r"The 'out' directory '.*docs' is not empty and is not a DATA_DIR \(it has no "
        r"walsrec's meta\.json\); walsrec replaces only",
    ):
        check_output_dir(tmp_path / "docs", **kw)
    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidParameterError, match=r"path '.*file' exists and is not a dir"):
        check_output_dir(tmp_path / "file", **kw)


_DATA_DIR = dict(owned=lambda d: True, marker="walsrec's meta.json", what="DATA_DIR")


@pytest.mark.parametrize(
    "inp",
    [
        "in/r.csv",
        "in",
        "in/sub/*.csv",
        "./in/../in/r.csv",
        "in/r-*.csv",
        "i?/r.csv",  # a glob whose fixed part is not a directory: its matches count
        "[i]n/r.csv",
        "file://{root}/in/r.csv",
        "file://{root}/in/*.csv",
    ],
)
def test_an_output_that_contains_or_is_an_input_is_refused(tmp_path, monkeypatch, inp):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "r.csv").write_text("user,item\n")
    inp = inp.format(root=tmp_path)
    with pytest.raises(
        InvalidParameterError, match=r"The 'out' directory 'in' contains or is the input"
    ):
        check_output_dir("in", **_DATA_DIR, inputs=[inp])
    check_output_dir("in/out", **_DATA_DIR, inputs=[inp, "s3://b/in/x.csv"])


def test_a_symlinked_output_is_named_as_such(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(InvalidParameterError, match=r"'.*link' is a symbolic link; walsrec"):
        check_output_dir(tmp_path / "link", **_DATA_DIR)


# ------------------------------------------------------------------- the directory lock

_HOLD = """
import sys, time
from walsrec._files import DirectoryLock
with DirectoryLock(sys.argv[1], "walsrec train"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_run_is_told_who_holds_the_lock(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(tmp_path / "m")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(
            LockedError,
            match=rf"m: in use by another walsrec run \(walsrec train, pid {proc.pid} on "
            r".+, since \d{4}-\d\d-\d\dT[\d:]+Z\); wait for it",
        ):
            DirectoryLock(tmp_path / "m", "walsrec train").acquire()
    finally:
        proc.kill()
        proc.wait()
    # the holder was killed: its lock went with it, whatever the lock file says
    with DirectoryLock(tmp_path / "m", "walsrec train"):
        pass


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    outer = DirectoryLock(tmp_path, "walsrec pipeline")
    with outer:
        with DirectoryLock(tmp_path, "walsrec train"):
            pass
        # still held by the outer one after the inner one let go
        proc = subprocess.run(
            [sys.executable, "-c", _HOLD.replace("time.sleep(60)", "pass"), str(tmp_path)],
            capture_output=True,
            text=True,
        )
        assert "LockedError" in proc.stderr and "walsrec pipeline" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-c", _HOLD.replace("time.sleep(60)", "pass"), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "held"


def test_the_lock_never_writes_through_a_symbolic_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / ".lock").symlink_to(victim)
    with pytest.raises(LockedError, match=r"\.lock: cannot be opened as the directory's lock"):
        DirectoryLock(tmp_path / "m", "walsrec train").acquire()
    assert victim.read_text() == "precious"


def test_another_thread_of_the_process_does_not_share_the_lock(tmp_path):
    import threading

    errors = []

    def second():
        try:
            DirectoryLock(tmp_path, "walsrec train").acquire()
        except LockedError as exc:
            errors.append(str(exc))

    with DirectoryLock(tmp_path, "walsrec train"):
        t = threading.Thread(target=second)
        t.start()
        t.join()
    assert len(errors) == 1 and "in use by another thread of this process" in errors[0]
