"""Running kernels on threads: parts handed out dynamically, BLAS capped at one thread.

Kernels are serial numba functions compiled with ``nogil=True``, one call per part of the
work (a range of rows of about equal estimated cost). :func:`run_parts` calls them on
Python threads (the caller's and those of one shared pool), handing the parts out one at a
time, so a busy core only delays the part it holds. A kernel holds no lock and touches only
its part's rows, so launches from several Python threads (a service's requests, tune's
trials, a Dask worker's tasks) run concurrently, and no result depends on which thread ran
a part.

numba's own parallel loops (``parallel=True``, ``prange``) are not used: their compilation
(the parfor passes) took two thirds of a kernel's first-run compile time (solve_exact:
about 15 s against about 4 s serial, 2 cores) for no measured gain on run time.

While kernels run, BLAS is capped at one thread, since BLAS threads running under the
kernels' threads oversubscribe the cores (implicit's most reported slowdown).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

__all__ = [
    "PARTS_PER_THREAD",
    "blas_threads",
    "readonly",
    "readonly_inputs",
    "resolve_n_jobs",
    "run_parts",
    "single_blas_thread",
]

# BLAS's thread count is process-wide: the cap is applied by the first thread that needs it
# and lifted by the last one to leave, so concurrent callers never undo each other's cap.
_BLAS_LOCK = threading.Lock()
_BLAS_USERS = 0
_BLAS_LIMITER = None
_POOL_LOCK = threading.Lock()
_POOL: ThreadPoolExecutor | None = None

# Parts per thread of a launch: parts of about equal estimated cost go to threads one at a
# time, so a busy core only delays its current part. Each part costs a Python call (about
# 2.5 µs, plus about 50 µs per launch to wake the threads).
PARTS_PER_THREAD = 8


def _max_threads() -> int:
    """The most threads a launch may use: ``NUMBA_NUM_THREADS`` when set, else the cores."""
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)


def resolve_n_jobs(n_jobs: int | None) -> int:
    """Number of threads for ``n_jobs`` (None or -1: all of them; -2: all but one)."""
    n_max = _max_threads()
    if n_jobs is None:
        return n_max
    if n_jobs < 0:
        return max(1, min(n_max, (os.cpu_count() or 1) + 1 + n_jobs))
    return max(1, min(n_max, int(n_jobs)))


def _forget_pool() -> None:
    """In a forked child the pool's threads do not exist: start a new pool when needed."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(
                max(1, _max_threads() - 1), thread_name_prefix="walsrec-kernel"
            )
        return _POOL


def run_parts(call: Callable[[int], object], n_parts: int, n_threads: int) -> None:
    """``call(part)`` for every part in ``range(n_parts)`` on up to ``n_threads`` threads.

    The calling thread works too, so a launch always finishes even when the shared pool is
    busy with other launches; helpers that have not started when the parts run out are
    cancelled. The first exception stops the handing out of parts and is re-raised once
    every started part has returned. BLAS runs on one thread meanwhile.
    """
    n_threads = max(1, min(int(n_threads), int(n_parts)))
    with single_blas_thread():
        if n_threads == 1:
            for part in range(n_parts):
                call(part)
            return
        counter = itertools.count()
        failed = threading.Event()

        def work() -> None:
            for part in counter:
                if part >= n_parts or failed.is_set():
                    return
                try:
                    call(part)
                except BaseException:
                    failed.set()
                    raise

        helpers = [_pool().submit(work) for _ in range(n_threads - 1)]
        try:
            work()
        finally:
            for future in helpers:
                future.cancel()
            # waits for the started helpers; the caller's own error, if any, goes first
            errors = [f.exception() for f in helpers if not f.cancelled()]
        for error in errors:
            if error is not None:
                raise error


def readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a`` (no copy).

    numba compiles one specialisation per argument type, and a read-only array (a memory
    map of a prepared file) is a different type from a writable one. Kernels' inputs are
    always passed read-only, so each kernel is compiled once per dtype, whatever the arrays
    came from.
    """
    view = a.view()
    view.flags.writeable = False
    return view


def readonly_inputs(args: tuple, writes: tuple[int, ...] = ()) -> tuple:
    """``args`` with every array not at a position in ``writes`` made :func:`readonly`."""
    return tuple(
        readonly(a) if isinstance(a, np.ndarray) and i not in writes else a
        for i, a in enumerate(args)
    )


_CONTROLLER = None


def _controller():
    """One threadpoolctl controller per process: ``threadpool_limits`` rescans every loaded
    library on each call (milliseconds), the controller's ``limit`` does not."""
    global _CONTROLLER
    if _CONTROLLER is None:
        import scipy.linalg  # noqa: F401  (load scipy's BLAS, which numba calls, first)
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


@contextmanager
def single_blas_thread() -> Iterator[None]:
    """BLAS at one thread while any Python thread is inside; restored when the last leaves."""
    global _BLAS_USERS, _BLAS_LIMITER
    with _BLAS_LOCK:
        if _BLAS_USERS == 0:
            _BLAS_LIMITER = _controller().limit(limits=1, user_api="blas")
        _BLAS_USERS += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_USERS -= 1
            if _BLAS_USERS == 0:
                _BLAS_LIMITER.restore_original_limits()
                _BLAS_LIMITER = None


@contextmanager
def blas_threads(n_threads: int) -> Iterator[None]:
    """BLAS on ``n_threads`` threads for the orchestration's own products between kernel
    launches (Gramians, rotations into and out of the eigenbasis).

    ``halfstep.py`` passes 1: threaded BLAS on a k×k ``eigh`` took 9–28 ms against 0.35 ms on one
    thread on a busy 2-core machine, and even large products lost to one thread.
    """
    if n_threads == 1:
        with single_blas_thread():
            yield
        return
    with _controller().limit(limits=n_threads, user_api="blas"):
        yield
