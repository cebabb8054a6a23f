"""What every command module shares: one line on stderr, the exit code for bad input, the
extra that provides a missing optional module, a run's length in the user's unit."""

from __future__ import annotations

import sys

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
