"""walsrec._threads: parts run once each on any thread count, errors stop the launch and
come back, BLAS is capped while kernels run and restored after, concurrent launches from
several Python threads share the pool safely (concurrent fits: tests/model/test_wals.py)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from walsrec._threads import _controller, readonly, run_parts, single_blas_thread


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.mark.parametrize("n_parts", [0, 1, 7, 64])
@pytest.mark.parametrize("n_threads", [1, 2, 5])
def test_every_part_runs_exactly_once(n_parts, n_threads):
    seen = []
    lock = threading.Lock()

    def call(part):
        time.sleep(0.001 * (part % 3))  # uneven parts: threads take them in varying order
        with lock:
            seen.append(part)

    run_parts(call, n_parts, n_threads)
    assert sorted(seen) == list(range(n_parts))


def test_parts_run_on_several_threads_at_once():
    inside = []
    lock = threading.Lock()
    both = threading.Barrier(2, timeout=10)

    def call(part):
        with lock:
            inside.append(threading.get_ident())
        both.wait()  # deadlocks (BrokenBarrierError after 10 s) unless two run at once

    run_parts(call, 2, 2)
    assert len(set(inside)) == 2


@pytest.mark.parametrize("n_threads", [1, 3])
def test_an_error_in_a_part_stops_the_launch_and_is_raised(n_threads):
    _controller()  # loads scipy's BLAS too, so both libraries are counted before and after
    started = []

    def call(part):
        started.append(part)
        assert set(_blas_threads()) == {1}  # BLAS capped while a kernel runs
        if part == 2:
            raise RuntimeError("inside part 2")
        time.sleep(0.01)

    with threadpool_limits(3, "blas"):  # a count the cap visibly changes, on any machine
        before = _blas_threads()
        assert set(before) == {3}
        with pytest.raises(RuntimeError, match="inside part 2"):
            run_parts(call, 1000, n_threads)
        assert _blas_threads() == before
    # no part is handed out once one has failed (each thread may hold one more)
    assert len(started) <= 3 + n_threads


def test_blas_cap_is_lifted_by_the_last_thread_to_leave():
    """The BLAS thread count is process-wide: overlapping callers must not undo each
    other's cap, and the original count comes back when the last one leaves."""
    _controller()
    with threadpool_limits(3, "blas"):  # a count the cap visibly changes, on any machine
        original = _blas_threads()
        assert set(original) == {3}
        first, second = single_blas_thread(), single_blas_thread()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)  # leaves first, while the second is still inside
        assert set(_blas_threads()) == {1}
        second.__exit__(None, None, None)
        assert _blas_threads() == original


def test_readonly_is_a_view_that_cannot_be_written():
    a = np.arange(6.0)
    view = readonly(a)
    assert np.shares_memory(view, a) and not view.flags.writeable and a.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        view[0] = 1.0


def test_kernels_are_serial_cached_and_release_the_gil():
    """Kernels are serial and run their parts through run_parts: numba's parallel loops
    compiled three times slower on a first run, and their threading layers are not all safe
    to enter from two Python threads at once."""
    import importlib
    import pkgutil

    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher

    import walsrec

    kernels = []
    for info in pkgutil.walk_packages(walsrec.__path__, "walsrec."):
        if info.name == "walsrec.__main__":
            continue  # runs the command line
        module = importlib.import_module(info.name)
        kernels += [v for v in vars(module).values() if isinstance(v, CPUDispatcher)]
    assert len(kernels) > 40
    parallel = [k.py_func.__qualname__ for k in kernels if k.targetoptions.get("parallel")]
    assert parallel == []
    uncached = [k.py_func.__qualname__ for k in kernels if isinstance(k._cache, NullCache)]
    assert uncached == []  # every kernel compiles once per machine, not once per process
    # those Python calls (helpers called only by kernels aside) release the GIL
    entries = [
        k
        for k in kernels
        if k.__module__ != "walsrec._topk_heap" and not k.py_func.__name__.startswith("_")
    ]
    assert len(entries) > 10
    holding = [k.py_func.__qualname__ for k in entries if not k.targetoptions.get("nogil")]
    assert holding == []


def test_a_forked_child_runs_parts_on_threads_of_its_own():
    import multiprocessing

    run_parts(lambda part: None, 4, 2)  # the parent's pool exists before the fork
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        threads = pool.apply(_threads_used_by_a_launch)
    assert threads == 2


def _threads_used_by_a_launch() -> int:
    seen = set()
    both = threading.Barrier(2, timeout=10)

    def call(part):
        seen.add(threading.get_ident())
        both.wait()  # BrokenBarrierError unless two threads run parts at once

    run_parts(call, 2, 2)
    return len(seen)
