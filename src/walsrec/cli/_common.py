"""What every command module shares: one line on stderr, the exit code for bad input, the
extra that provides a missing optional module, a run's length in the user's unit."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_BAD_INPUT = 2

#: The extra of pyproject.toml's ``[project.optional-dependencies]`` that installs each
#: optional top-level module (with the modules those packages themselves need).
EXTRA_OF_MODULE = {
    "fastapi": "serve",
    "starlette": "serve",
    "uvicorn": "serve",
    "optuna": "tune",
    "dask": "dask",
    "distributed": "dask",
    "matplotlib": "plot",
    "pandas": "pandas",
}


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _os_error_text(exc: OSError) -> str:
    """One line for an OSError: the path(s) first, then what went wrong."""
    if exc.filename is None:  # pyarrow's put the path in the message
        return str(exc)
    paths = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
    return f"{paths}: {exc.strerror or exc}"


def _missing_extra_text(command: str, exc: ModuleNotFoundError) -> str | None:
    """One line naming the extra to install when ``exc`` is an extra's top-level module
    missing; None for any other module (a bug or a broken install, shown in full)."""
    extra = EXTRA_OF_MODULE.get(exc.name or "")
    if extra is None:
        return None
    return (
        f"walsrec {command} needs the '{extra}' extra ({exc.name} is not installed): "
        f"pip install 'walsrec[{extra}]'"
    )


def _trained_length(result, step_mode: bool) -> str:
    """How long a ``walsrec.train`` result trained, in the unit its length was asked in:
    steps with ``train_steps``, else sweeps ("8 sweeps", "1 sweep")."""
    if step_mode:
        n, unit = result.steps, "step"
    else:  # every run ends with an evaluation of its last step, which records the sweep
        n, unit = result.evaluations[-1]["sweep"], "sweep"
    return f"{n:g} {unit}{'' if n == 1 else 's'}"


@contextmanager
def compile_notice(command: str) -> Iterator[None]:
    """Inside, say on stderr (once) when the command starts compiling walsrec's kernels.

    numba compiles a kernel the first time it runs on a machine and keeps it in its on-disk
    cache; without a word, that first run looks like a hang. The line is written when the
    first of walsrec's kernels misses the cache (numba's ``numba:compile`` event fires only
    then), so a run that finds every kernel compiled says nothing.
    """
    from numba.core import event

    class _Notice(event.Listener):
        said = False

        def on_start(self, data) -> None:
            func = getattr(data.data.get("dispatcher"), "py_func", None)
            if self.said or not getattr(func, "__module__", "").startswith("walsrec."):
                return
            self.said = True  # numba compiles under one lock: no race between threads
            from tqdm import tqdm

            # above any progress bar on stderr, which tqdm redraws below the line
            tqdm.write(
                f"walsrec {command}: compiling walsrec's kernels for this machine (once: "
                "later runs load them from numba's cache; 'walsrec warmup' compiles them "
                "all ahead of time)",
                file=sys.stderr,
            )

        def on_end(self, data) -> None:
            pass

    notice = _Notice()
    event.register("numba:compile", notice)
    try:
        yield
    finally:
        event.unregister("numba:compile", notice)
