"""Thread settings around kernel launches: numba's thread count, dynamic scheduling of the
kernels' parts, and BLAS capped at one thread.

``kernel_threads(n)`` sets numba's thread count for the calling thread (numba keeps it per
thread) and restores it afterwards, even on error; it also caps BLAS at one thread while the
kernels run, since BLAS threads running under numba's threads oversubscribe the cores
(implicit's most reported slowdown).

numba's "workqueue" threading layer must not be entered by two Python threads at once (it
aborts the process). When that layer is (or may be) in use, launches are serialised with a
lock; the "omp" and "tbb" layers are thread safe and run concurrently. Serialising costs
little: every launch already uses all the threads it was given.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_LOCK = threading.RLock()
# BLAS's thread count is process-wide: the cap is applied by the first thread that needs it
# and lifted by the last one to leave, so concurrent callers never undo each other's cap.
_BLAS_LOCK = threading.Lock()
_BLAS_USERS = 0
_BLAS_LIMITER = None


def resolve_n_jobs(n_jobs: int | None) -> int:
    """Number of threads for ``n_jobs`` (None or -1: all of numba's threads; -2: all but one)."""
    import numba

    n_max = int(numba.config.NUMBA_NUM_THREADS)
    if n_jobs is None:
        return n_max
    if n_jobs < 0:
        return max(1, min(n_max, (os.cpu_count() or 1) + 1 + n_jobs))
    return max(1, min(n_max, int(n_jobs)))


def _needs_lock() -> bool:
    import numba

    try:
        return numba.threading_layer() == "workqueue"
    except ValueError:  # no parallel kernel has run yet: the layer is not chosen
        return True


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
def kernel_threads(n_threads: int) -> Iterator[None]:
    """Run the enclosed kernel launches on ``n_threads`` numba threads, BLAS at one thread."""
    import numba

    lock = _LOCK if _needs_lock() else None
    if lock is not None:
        lock.acquire()
    previous = numba.get_num_threads()
    previous_chunk = numba.get_parallel_chunksize()
    try:
        with single_blas_thread():
            numba.set_num_threads(n_threads)
            # Hand the kernels' parts (already of about equal cost) to threads one at a
            # time: a static split stalls on whichever thread the OS preempts.
            numba.set_parallel_chunksize(1)
            yield
    finally:
        numba.set_parallel_chunksize(previous_chunk)
        numba.set_num_threads(previous)
        if lock is not None:
            lock.release()


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

    ``wals.py`` passes 1: threaded BLAS on a k×k ``eigh`` took 9–28 ms against 0.35 ms on one
    thread on a busy 2-core machine, and even large products lost to one thread.
    """
    if n_threads == 1:
        with single_blas_thread():
            yield
        return
    with _controller().limit(limits=n_threads, user_api="blas"):
        yield
