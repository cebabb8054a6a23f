"""The fuzz suite: hypothesis mutates walsrec's files; a reader process loads each one.

Every outcome must be a clean walsrec error or data that loads and works; a crash of the
reader process, a hang, or any other exception fails the test and names the input.

``make test`` runs a fixed, derandomized set of examples (bounded time); set
``WALSREC_FUZZ_EXAMPLES=N`` for a longer, random run.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

_EXAMPLES = int(os.environ.get("WALSREC_FUZZ_EXAMPLES", "0"))
settings.register_profile(
    "walsrec-fuzz",
    max_examples=_EXAMPLES or 200,
    derandomize=not _EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FUZZ = settings.get_profile("walsrec-fuzz")

# One answer may take this long (the first includes numba's compilation).
_TIMEOUT_S = 120


class Reader:
    """A process that runs walsrec's readers on request (tests/fuzz/_worker.py)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def _start(self) -> None:
        root = Path(__file__).resolve().parents[2]
        env = dict(os.environ, PYTHONPATH=str(root / "src"), NUMBA_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("_worker.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def read(self, kind: str, path: str | os.PathLike) -> dict:
        """Load ``path`` with the ``kind`` reader; returns the answer, or fails the test
        if the process crashed or hung."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        proc = self.proc
        try:
            proc.stdin.write(json.dumps({"kind": kind, "path": str(path)}) + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            ready, line = True, ""
        else:
            ready, _, _ = select.select([proc.stdout], [], [], _TIMEOUT_S)
            line = proc.stdout.readline() if ready else ""
        if not line:
            proc.kill()
            code = proc.wait()
            err = proc.stderr.read()[-3000:]
            self.proc = None
            what = "hung" if not ready else f"crashed (exit code {code})"
            pytest.fail(f"the {kind} reader {what} on {path}:\n{err}")
        answer = json.loads(line)
        if answer["outcome"] == "unexpected":
            pytest.fail(
                f"the {kind} reader raised a non-walsrec error on {path}:\n{answer['message']}"
            )
        return answer

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def reader():
    r = Reader()
    yield r
    r.close()
