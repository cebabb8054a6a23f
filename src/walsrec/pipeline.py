"""``walsrec pipeline``: prepare → train → evaluate → export → predict from one TOML file.

The local form of the course's retraining DAG (query → export → train → deploy). Each step
is a library call whose settings are its keyword arguments, one TOML table per step:

.. code-block:: toml

    [prepare]                       # walsrec.prepare(inputs, out, **settings)
    inputs = ["ratings.csv"]
    out = "data"
    user_col = "user"
    item_col = "item"
    rating_col = "rating"
    eval_fraction = 0.2
    split = "user"

    [train]                         # walsrec.train(**settings); data defaults to prepare.out
    model_dir = "model"
    embedding_dim = 32
    sweeps = 10

    [update]                        # optional: new files taken in without retraining
    inputs = ["incoming/*.csv"]     # each file once: prepare --append-to, walsrec update
    full_every = 7                  # every 7th time a full retrain on all the data instead
    sweeps = 1                      # also full_sweeps, and out (default: DATA_DIR-updates)

    [evaluate]                      # walsrec.evaluate_export(export, data, k=...)
    k = 10                          # also ease = false (no EASE baseline), ease_regularization

    [export]                        # optional: deploy the new export to a serving directory
    to = "serving"                  # serve it with: walsrec serve --model serving
    min_metrics = { "ndcg@10" = 0.05 }   # refuse to deploy a worse model

    [predict]                       # optional: walsrec.predict(export, out, **settings)
    out = "predictions.csv"
    k = 10

Relative paths are relative to the configuration file's directory. A step is skipped when
its fingerprint (its settings, the sizes and modification times of its input files, and the
outputs of the steps it depends on) equals that of its last successful run and its outputs
still exist; the fingerprints are kept in a state file beside the configuration
(``pipeline.toml`` → ``pipeline.state.json``), or where a top-level ``state = "PATH"``
says. A retrained model gets a new export version in ``MODEL_DIR/export/``, which a running
``walsrec serve --model MODEL_DIR`` picks up by itself; the previous exports stay (up to
``keep_exports``), so that a service never loses its model.

No step may overwrite what the pipeline reads or owns, and this is checked when the
configuration is loaded, before any step runs: ``[predict] out`` may not be, or lie inside,
the configuration, the state file, a ``[prepare]`` input (or a file its glob matches now or
would match), the DATA_DIR, the MODEL_DIR (train's own directory, export/ included), a
TFRecord input of ``[train]``, the users file or the deployed ``[export] to``/export; and
``[export] to``/export, where deployed exports go, may neither lie inside nor contain any of
those inputs (so ``to`` cannot be the DATA_DIR, which prepare replaces whole), and ``to``
may be the MODEL_DIR itself but not a folder inside it (training clears its contents).
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import re
import shutil
import time
import tomllib
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from walsrec._files import check_output_file, show_path
from walsrec.errors import DataFormatError, InvalidParameterError

__all__ = [
    "STEPS",
    "PipelineResult",
    "StepOutcome",
    "describe",
    "load_pipeline_config",
    "run_pipeline",
]

STEPS = ("prepare", "train", "update", "evaluate", "export", "predict")

# settings of each table that are paths, resolved against the configuration's directory
_PATH_KEYS = {
    "prepare": ("out",),
    "train": ("model_dir", "data", "train_rows", "train_cols", "eval_rows", "eval_cols"),
    "update": ("out",),
    "export": ("to",),
    "predict": ("out", "users_file"),
}
_PREPARE_KEYS = {
    "inputs",
    "out",
    "user_col",
    "item_col",
    "rating_col",
    "time_col",
    "delimiter",
    "columns",
    "format",
    "rating_transform",
    "scale",
    "cap",
    "duplicates",
    "min_user_interactions",
    "min_item_interactions",
    "eval_fraction",
    "split",
    "seed",
    "shards",
    "compression",
    "on_bad_rows",
}
_UPDATE_KEYS = {"inputs", "out", "full_every", "sweeps", "full_sweeps"}
_EVALUATE_KEYS = {"k", "ease", "ease_regularization"}
_EXPORT_KEYS = {"to", "min_metrics"}
_PREDICT_KEYS = {"out", "k", "format", "exclude_seen", "users_file", "chunk_size"}


@dataclass
class StepOutcome:
    """What happened to one step: ``status`` is ``"ran"``, ``"skipped"`` or ``"off"``."""

    name: str
    status: str
    detail: str = ""
    seconds: float = 0.0


@dataclass
class PipelineResult:
    """The outcome of :func:`run_pipeline`."""

    steps: list[StepOutcome]
    state_path: Path
    export_path: Path | None = None
    evaluation: dict | None = None
    outputs: dict[str, Any] = field(default_factory=dict)

    def ran(self) -> list[str]:
        """Names of the steps that ran."""
        return [s.name for s in self.steps if s.status == "ran"]

    def skipped(self) -> list[str]:
        """Names of the steps skipped as unchanged."""
        return [s.name for s in self.steps if s.status == "skipped"]


def _bad(path: Path, message: str) -> InvalidParameterError:
    return InvalidParameterError(f"{path}: {message}")


def load_pipeline_config(path: str | os.PathLike) -> dict[str, dict]:
    """Read and check a pipeline TOML file; return its tables with paths made absolute.

    Raises
    ------
    DataFormatError
        The file is missing or is not valid TOML.
    InvalidParameterError
        An unknown table or setting, or a missing required one.
    """
    from walsrec.training.config import TrainConfig

    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFormatError(f"{path}: the pipeline configuration file does not exist.") from None
    except tomllib.TOMLDecodeError as exc:
        raise DataFormatError(f"{path}: not valid TOML ({exc}).") from None
    state_file = raw.pop("state", None)
    if state_file is not None and not isinstance(state_file, str):
        raise _bad(path, f"state must be a path (a string). Got {state_file!r} instead.")
    unknown = sorted(set(raw) - set(STEPS))
    if unknown:
        raise _bad(
            path,
            f"unknown table [{unknown[0]}]; the tables are "
            + ", ".join(f"[{s}]" for s in STEPS)
            + ".",
        )
    allowed = {
        "prepare": _PREPARE_KEYS,
        "train": set(TrainConfig.__dataclass_fields__),
        "update": _UPDATE_KEYS,
        "evaluate": _EVALUATE_KEYS,
        "export": _EXPORT_KEYS,
        "predict": _PREDICT_KEYS,
    }
    base = path.resolve().parent
    config: dict[str, dict] = {}
    for step, table in raw.items():
        if not isinstance(table, dict):
            raise _bad(path, f"[{step}] must be a table of settings.")
        extra = sorted(set(table) - allowed[step])
        if extra:
            raise _bad(
                path,
                f"the setting {extra[0]!r} of [{step}] is not known; the settings are "
                + ", ".join(sorted(allowed[step]))
                + ".",
            )
        table = dict(table)
        for key in _PATH_KEYS.get(step, ()):
            if isinstance(table.get(key), str):
                table[key] = _resolve(base, table[key])
        config[step] = table
    if "train" not in config or "model_dir" not in config["train"]:
        raise _bad(path, "[train] needs model_dir.")
    train = config["train"]
    if "prepare" in config:
        prep = config["prepare"]
        for key in ("inputs", "out"):
            if key not in prep:
                raise _bad(path, f"[prepare] needs {key}.")
        inputs = prep["inputs"]
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        prep["inputs"] = [_resolve(base, str(i)) for i in inputs]
        train.setdefault("data", prep["out"])
    elif not (train.get("data") or train.get("train_rows")):
        raise _bad(path, "[train] needs data (or train_rows) when there is no [prepare].")
    if "update" in config:
        _check_update(config, path, base)
    if state_file is not None:
        config["state"] = {"path": _resolve(base, state_file)}
    if "predict" in config and "out" not in config["predict"]:
        raise _bad(path, "[predict] needs out.")
    if "export" in config and "min_metrics" in config["export"]:
        if not isinstance(config["export"]["min_metrics"], dict):
            raise _bad(path, "[export] min_metrics must be a table of metric = minimum.")
    state_path = Path(config["state"]["path"]) if state_file is not None else _state_path(path)
    _check_outputs(config, path, state_path)
    return config


def _check_update(config: dict, path: Path, base: Path) -> None:
    """``[update]``: its inputs (made absolute), ``out`` (default: the DATA_DIR's name with
    ``-updates``), and its numbers."""
    up, train = config["update"], config["train"]
    if not isinstance(train.get("data"), str):
        raise _bad(path, "[update] needs a DATA_DIR to append to: [prepare], or [train] data.")
    if "inputs" not in up:
        raise _bad(path, "[update] needs inputs (the files of new interactions).")
    inputs = up["inputs"]
    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    up["inputs"] = [_resolve(base, str(i)) for i in inputs]
    up.setdefault("out", os.path.normpath(str(train["data"]).rstrip("/") + "-updates"))
    for key, low in (("full_every", 1), ("sweeps", 1), ("full_sweeps", 0)):
        value = up.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < low
        ):
            raise _bad(path, f"[update] {key} must be an int >= {low}. Got {value!r} instead.")
    out = Path(up["out"]).resolve()
    for other in (train["data"], train["model_dir"]):
        o = Path(other).resolve()
        if _inside(out, o) or _inside(o, out):
            raise _bad(
                path,
                f"[update] out {up['out']!r} is, lies inside or contains {other!r}; the "
                "appended DATA_DIRs need a directory of their own.",
            )


def _local(text: str) -> str | None:
    """The local path of an input (a path, a glob or a ``file://`` URL); None for a URL."""
    if text.startswith("file://"):
        return urllib.parse.unquote(urllib.parse.urlsplit(text).path)
    return None if "://" in text else text


def _inside(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def _pipeline_inputs(config: dict, config_path: Path, state_path: Path):
    """(paths, patterns): the files and directories the pipeline reads (its configuration,
    its state, the prepare and TFRecord inputs, the files their globs match, the DATA_DIR),
    resolved; and the globs among the inputs, which may match files written later."""
    prep = config.get("prepare") or {}
    train = config["train"]
    named = [
        *prep.get("inputs", ()),
        prep.get("out"),
        *(config.get("update") or {}).get("inputs", ()),
    ]
    named += [train.get(k) for k in ("data", "train_rows", "train_cols", "eval_rows", "eval_cols")]
    paths = [config_path, state_path]
    patterns: list[str] = []
    for text in named:
        local = _local(text) if isinstance(text, str) else None
        if not local:
            continue
        if glob.has_magic(local):
            patterns.append(os.path.abspath(local))
            paths += [Path(p) for p in glob.glob(local)]
        else:
            paths.append(Path(local))
    return [p.resolve() for p in paths], patterns


def _check_outputs(config: dict, config_path: Path, state_path: Path) -> None:
    """Refuse a ``[predict] out`` or an ``[export] to`` that would overwrite what the
    pipeline reads or owns (the rules of the module docstring), before anything runs."""
    paths, patterns = _pipeline_inputs(config, config_path, state_path)
    model_dir = config["train"]["model_dir"]
    model_dir = Path(model_dir).resolve() if isinstance(model_dir, str) else None
    to = (config.get("export") or {}).get("to")
    deployed = Path(to).resolve() / "export" if isinstance(to, str) and to else None
    if deployed is not None:
        for p in paths:
            if _inside(deployed, p) or _inside(p, deployed):
                raise _bad(
                    config_path,
                    f"[export] to {to!r} would deploy exports into {str(deployed)!r}, which "
                    f"is, lies inside or contains the input {str(p)!r}; choose a directory "
                    "apart from the pipeline's inputs, its DATA_DIR, configuration and state.",
                )
        for pattern in patterns:
            # the directory of the pattern's fixed part: where it may match files
            fixed = os.path.dirname(re.split(r"[*?\[]", pattern, maxsplit=1)[0])
            if _inside(Path(fixed).resolve(), deployed):
                raise _bad(
                    config_path,
                    f"[export] to {to!r} would deploy exports where the input pattern "
                    f"{pattern!r} looks for files; choose another directory.",
                )
        to_dir = deployed.parent
        if model_dir is not None and to_dir != model_dir and _inside(to_dir, model_dir):
            raise _bad(
                config_path,
                f"[export] to {to!r} lies inside the MODEL_DIR {str(model_dir)!r}, whose "
                "contents training clears and rewrites; deploy to a directory of its own (or "
                "to the MODEL_DIR itself).",
            )
    predict = config.get("predict") or {}
    out = predict.get("out")
    if not isinstance(out, str):
        return
    users = predict.get("users_file")
    try:
        check_output_file(
            out,
            inputs=[*paths, model_dir, deployed, users if isinstance(users, str) else None],
            parameter="[predict] out",
        )
    except InvalidParameterError as exc:
        raise _bad(config_path, str(exc)) from None
    where = {os.path.abspath(out), str(Path(out).resolve())}
    for pattern in patterns:
        if any(Path(w).match(pattern) for w in where):
            raise _bad(
                config_path,
                f"[predict] out {out!r} matches the input pattern {pattern!r}: the next "
                "prepare would read the predictions as input. Choose another path.",
            )


def _resolve(base: Path, value: str) -> str:
    if "://" in value or os.path.isabs(value):
        return value
    return os.path.normpath(base / value)


def _file_facts(patterns: Iterable[str | None]) -> list:
    """(path, size, mtime) of every file the patterns name: what the fingerprint watches."""
    facts = []
    for pattern in patterns:
        if not pattern:
            continue
        if "://" in pattern:
            import fsspec

            fs, _, paths = fsspec.get_fs_token_paths(pattern)
            for p in sorted(paths):
                info = fs.info(p)
                mtime = str(info.get("mtime") or info.get("LastModified"))
                # the URL, not fsspec's path without its protocol: [update] reads it
                facts.append([fs.unstrip_protocol(p), info.get("size"), mtime])
            continue
        paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        for p in paths:
            try:
                st = os.stat(p)
            except FileNotFoundError:
                facts.append([p, None, None])  # prepare will raise the clear error
                continue
            if os.path.isdir(p):
                facts += _file_facts(
                    os.path.join(root, f) for root, _, files in os.walk(p) for f in files
                )
            else:
                facts.append([p, st.st_size, st.st_mtime_ns])
    return facts


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _state_path(config_path: Path) -> Path:
    return config_path.with_name(f"{config_path.stem}.state.json")


def _read_state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _write_state(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def run_pipeline(
    config_path: str | os.PathLike,
    *,
    force: Iterable[str] = (),
    only: Iterable[str] | None = None,
    dry_run: bool = False,
    show_progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> PipelineResult:
    """Run the pipeline of a TOML file, skipping the steps whose inputs have not changed.

    Parameters
    ----------
    config_path : path
        The pipeline's TOML file (see the module docstring for its tables).
    force : iterable of str, default ()
        Steps to run even when unchanged (``"all"`` for every step); the steps after a
        step that runs rerun when its output changes.
    only : iterable of str, optional
        Run only these steps (one task per step in a scheduler such as Airflow); the others
        are taken as they were left by their last successful run, which must exist.
    dry_run : bool, default False
        Only decide: report which steps would run (``status`` ``"would run"``).
    show_progress : bool, default False
        Progress bars of training and batch prediction on stderr.
    log : callable, optional
        Receives one-line progress messages.

    Returns
    -------
    PipelineResult

    Raises
    ------
    InvalidParameterError, DataFormatError
        From the configuration or from a step; the failing step's state is not recorded,
        so it runs again next time. ``[export] min_metrics`` not met raises
        :class:`InvalidParameterError` and deploys nothing.

    Examples
    --------
    >>> from walsrec.pipeline import run_pipeline
    >>> result = run_pipeline("pipeline.toml")  # doctest: +SKIP
    >>> result.ran(), result.skipped()  # doctest: +SKIP
    (['prepare', 'train', 'evaluate', 'export'], [])
    """
    config_path = Path(config_path)
    config = load_pipeline_config(config_path)
    force = set(force)
    unknown = force - set(STEPS) - {"all"}
    if unknown:
        raise InvalidParameterError(
            f"The 'force' parameter of run_pipeline must name steps of {list(STEPS)} or "
            f"'all'. Got {sorted(unknown)[0]!r} instead."
        )
    if "all" in force:
        force = set(STEPS)
    only = None if only is None else set(only)
    if only is not None and only - set(STEPS):
        raise InvalidParameterError(
            f"The 'only' parameter of run_pipeline must name steps of {list(STEPS)}. "
            f"Got {sorted(only - set(STEPS))[0]!r} instead."
        )
    if dry_run:
        return _run_steps(config, config_path, force, only, dry_run, show_progress, log)
    from walsrec.training.loop import model_dir_lock

    # one pipeline (or train) at a time on a MODEL_DIR: a second one says who holds it
    with model_dir_lock(config["train"]["model_dir"], "walsrec pipeline"):
        return _run_steps(config, config_path, force, only, dry_run, show_progress, log)


@dataclass(frozen=True)
class Step:
    """One step of the pipeline, as the runner (:func:`_run_steps`) sees it.

    Attributes
    ----------
    name : str
        One of :data:`STEPS`.
    fingerprint : str
        The digest of what decides whether the step's outputs are current: its settings,
        the sizes and modification times of its input files, the outputs of the steps it
        depends on. The step is skipped while it equals that of its last successful run
        and ``outputs`` still exists.
    outputs : Path or None
        The file (or with ``directory`` the directory) the step leaves; None when there is
        none yet.
    run : callable
        ``run()`` does the step and returns its output (the token that the later steps
        depend on, kept in the state file) and a one-line detail.
    directory : bool, default False
        ``outputs`` is a directory, not a file.
    """

    name: str
    fingerprint: str
    outputs: Path | None
    run: Callable[[], tuple[Any, str]]
    directory: bool = False

    def outputs_exist(self) -> bool:
        """Whether ``outputs`` is there, as a file (or a directory with ``directory``)."""
        if self.outputs is None:
            return False
        return self.outputs.is_dir() if self.directory else self.outputs.is_file()


@dataclass
class _Run:
    """One run of the pipeline: its arguments, its state file and what the steps left."""

    config: dict
    config_path: Path
    force: set[str]
    only: set[str] | None
    dry_run: bool
    show_progress: bool
    log: Callable[[str], None] | None
    state_path: Path
    state: dict
    result: PipelineResult
    outputs: dict[str, Any] = field(default_factory=dict)  # each step's output token

    def say(self, message: str) -> None:
        if self.log is not None:
            self.log(message)

    def progress(self, step: str) -> Callable[[str], None] | None:
        """A step's progress messages, prefixed with its name (None without ``log``)."""
        return (lambda message: self.say(f"{step}: {message}")) if self.log else None

    @functools.cached_property
    def evaluation(self) -> dict | None:
        """The scores of this run's evaluate step (None without one, or in a dry run)."""
        path = Path(self.config["train"]["model_dir"]) / "evaluation.json"
        if "evaluate" not in self.outputs or self.dry_run or not path.is_file():
            return None
        return json.loads(path.read_text())

    def take(self, step: Step) -> Any:
        """Skip, run or (``dry_run``) judge ``step``; its output, for the steps after it."""
        previous = self.state.get(step.name, {})
        if self.only is not None and step.name not in self.only:
            if not previous:
                raise InvalidParameterError(
                    f"The {step.name} step of {self.config_path} has not run yet; run it (or "
                    "the whole pipeline) before the steps after it."
                )
            self.result.steps.append(StepOutcome(step.name, "not run", previous.get("detail", "")))
            return previous.get("output")
        changed = previous.get("fingerprint") != step.fingerprint
        if step.name not in self.force and not changed and step.outputs_exist():
            self.say(f"{step.name}: unchanged, skipped ({previous.get('detail', '')})")
            self.result.steps.append(StepOutcome(step.name, "skipped", previous.get("detail", "")))
            return previous.get("output")
        if self.dry_run:
            why = (
                "forced"
                if step.name in self.force
                else "never ran"
                if not previous
                else "changed"
                if changed
                else "outputs missing"
            )
            self.result.steps.append(StepOutcome(step.name, "would run", why))
            return previous.get("output") or f"dry-run:{step.name}"
        self.say(f"{step.name}: running")
        started = time.perf_counter()
        output, detail = step.run()
        seconds = time.perf_counter() - started
        self.state[step.name] = {
            "fingerprint": step.fingerprint,
            "output": output,
            "detail": detail,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(seconds, 3),
        }
        _write_state(self.state_path, self.state)
        self.say(f"{step.name}: done in {seconds:.1f} s ({detail})")
        self.result.steps.append(StepOutcome(step.name, "ran", detail, seconds))
        return output


def _prepare(run: _Run) -> Step | StepOutcome:
    """``[prepare]``: ``walsrec.prepare`` into the DATA_DIR; its output is meta.json's digest."""
    prep = run.config.get("prepare")
    if prep is None:
        return StepOutcome("prepare", "off")
    out_dir = Path(prep["out"])

    def do_prepare():
        from walsrec.data.prepare import prepare

        settings = {k: v for k, v in prep.items() if k not in ("inputs", "out")}
        meta = prepare(
            prep["inputs"], out_dir, overwrite=True, progress=run.progress("prepare"), **settings
        )
        c = meta["counts"]
        detail = (
            f"{c['n_users']:,} users, {c['n_items']:,} items, "
            f"{c['train_interactions']:,} train / {c['eval_interactions']:,} eval"
        )
        return _meta_token(out_dir), detail

    fingerprint = _digest({"settings": prep, "files": _file_facts(prep["inputs"])})
    return Step("prepare", fingerprint, out_dir / "meta.json", do_prepare)


def _train(run: _Run) -> Step:
    """``[train]``: ``walsrec.train`` into the MODEL_DIR; its output is the new export."""
    train_cfg = run.config["train"]
    model_dir = Path(train_cfg["model_dir"])
    upstream = run.outputs.get("prepare")
    if upstream is None:  # inputs given directly: watch the files
        upstream = _file_facts(
            [
                train_cfg.get(k)
                for k in ("data", "train_rows", "train_cols", "eval_rows", "eval_cols")
            ]
        )
    fingerprint = _digest({"settings": train_cfg, "upstream": upstream})
    previous_export = run.state.get("train", {}).get("output")

    def do_train():
        from walsrec.training import train

        if run.state.get("train_attempt") != fingerprint:
            # new settings or data: start over, but keep the exports for running services
            from walsrec.training.loop import clear_model_dir

            clear_model_dir(model_dir, keep_exports=True)
            run.state["train_attempt"] = fingerprint
            _write_state(run.state_path, run.state)
        # else: the last attempt with these settings was interrupted: resume it.
        # Earlier exports stay for running services; train() writes a new one with a higher
        # version whenever its factors differ from the newest, and applies keep_exports.
        res = train(show_progress=run.show_progress, log=run.progress("train"), **train_cfg)
        last = res.evaluations[-1] if res.evaluations else {}
        shown = {k: v for k, v in last.items() if k.startswith("ndcg@") or k == "loss"}
        detail = f"{res.steps} steps, export {res.export_path.name}" + "".join(
            f", {k} {v:.4g}" for k, v in shown.items() if isinstance(v, float)
        )
        return str(res.export_path), detail

    outputs = Path(previous_export) if previous_export else None
    if outputs is not None and "update" in run.config:
        # updates export after it (and keep_exports may prune its export): the model is
        # current while MODEL_DIR holds one
        outputs = model_dir / "config.json" if (model_dir / "config.json").is_file() else None
        return Step("train", fingerprint, outputs, do_train)
    return Step("train", fingerprint, outputs, do_train, directory=True)


def _latest_export(run: _Run):
    """The export the steps after training serve: the update's, else train's."""
    up = run.outputs.get("update")
    if isinstance(up, dict) and up.get("export"):
        return up["export"]
    return run.outputs["train"]


def _latest_data(run: _Run):
    """The DATA_DIR the latest model was trained or updated on."""
    up = run.outputs.get("update")
    if isinstance(up, dict) and up.get("data"):
        return up["data"]
    return run.config["train"].get("data")


def _update(run: _Run) -> Step | StepOutcome:
    """``[update]``: the files of ``inputs`` not yet taken in are appended to the newest
    DATA_DIR (``walsrec prepare --append-to``, into ``out/data-NNNNN``) and the model
    updated (``walsrec update``); every ``full_every``-th time a full retrain on all the
    data so far instead. A new training of ``[train]`` starts the chain again."""
    up = run.config.get("update")
    if up is None:
        return StepOutcome("update", "off")
    train_cfg = run.config["train"]
    model_dir, base_export = Path(train_cfg["model_dir"]), run.outputs["train"]
    previous = run.state.get("update", {}).get("output")
    previous = previous if isinstance(previous, dict) else {}
    same_chain = previous.get("base") == base_export
    files = _file_facts(up["inputs"])
    applied = previous.get("applied", []) if same_chain else []
    taken = {f[0]: f for f in applied}
    changed = [f for f in files if f[0] in taken and f != taken[f[0]] and f[1] is not None]
    if changed and not run.dry_run:
        raise InvalidParameterError(
            f"{run.config_path}: [update] took in {changed[0][0]!r} before and it has "
            "changed since (size or time); each file is taken in once, its rows added to the "
            "model's. Write new interactions to a new file (one per day, say), or put the "
            "file back as it was."
        )
    fresh = [f for f in files if f[0] not in taken and f[1] is not None]
    fingerprint = _digest({"settings": up, "base": base_export, "files": files})

    def do_update():
        from walsrec.data.prepare import prepare
        from walsrec.training import train
        from walsrec.training.loop import clear_model_dir
        from walsrec.training.update import update

        data = previous.get("data") if same_chain else None
        data = data or train_cfg["data"]
        token = {
            "base": base_export,
            "applied": applied,
            "data": data,
            "export": previous.get("export") if same_chain else base_export,
            "since_full": previous.get("since_full", 0) if same_chain else 0,
            "version": previous.get("version", 0),
        }
        if not fresh:
            return token, f"no new increments; serving {Path(token['export']).name}"
        out_root = Path(up["out"])
        version = token["version"] + 1
        new_data = out_root / f"data-{version:05d}"
        say = run.progress("update")
        meta = prepare(
            [f[0] for f in fresh], new_data, append_to=data, overwrite=True, progress=say
        )
        added = meta["lineage"][-1]
        since = token["since_full"] + 1
        if up.get("full_every") and since >= up["full_every"]:
            clear_model_dir(model_dir, keep_exports=True)
            res = train(
                show_progress=run.show_progress, log=say, **{**train_cfg, "data": str(new_data)}
            )
            export, since, how = str(res.export_path), 0, "full retrain"
        else:
            res = update(
                model_dir,
                new_data,
                sweeps=up.get("sweeps", 1),
                full_sweeps=up.get("full_sweeps", 0),
                log=say,
            )
            export = str(res.export_path) if res.export_path else token["export"]
            how = "updated"
        for old in sorted(out_root.glob("data-*"))[:-2]:  # the newest two stay
            shutil.rmtree(old, ignore_errors=True)
        token.update(
            applied=[*applied, *fresh],
            data=str(new_data),
            export=export,
            since_full=since,
            version=version,
        )
        detail = (
            f"{how} with {len(fresh)} file(s): {added['new_users']:,} new users, "
            f"{added['new_items']:,} new items, export {Path(export).name}"
        )
        return token, detail

    outputs = Path(previous["export"]) if previous.get("export") else None
    return Step("update", fingerprint, outputs, do_update, directory=True)


def _evaluate(run: _Run) -> Step | StepOutcome:
    """``[evaluate]``: ``walsrec.evaluate_export`` of the new export into evaluation.json."""
    ev_cfg = run.config.get("evaluate")
    data_dir = run.config["train"].get("data")
    if ev_cfg is None or not data_dir:
        why = "" if ev_cfg is None else "needs a DATA_DIR ([prepare] or [train] data)"
        return StepOutcome("evaluate", "off", why)
    k = int(ev_cfg.get("k", 10))
    ev_path = Path(run.config["train"]["model_dir"]) / "evaluation.json"
    export = _latest_export(run)
    data_dir = _latest_data(run)

    def do_evaluate():
        from walsrec.evaluation import evaluate_export

        extra = {key: ev_cfg[key] for key in ("ease", "ease_regularization") if key in ev_cfg}
        scores = evaluate_export(export, data_dir, k=k, **extra)
        tmp = ev_path.with_name(f".{ev_path.name}.tmp")
        tmp.write_text(json.dumps(scores, indent=2, default=str) + "\n")
        os.replace(tmp, ev_path)
        m, b = scores["model"], scores["most-popular"]
        key = f"ndcg@{k}"
        return str(ev_path), f"{key} {m.get(key, float('nan')):.4f} vs most-popular " + (
            f"{b.get(key, float('nan')):.4f}"
        )

    fingerprint = _digest(
        {"settings": ev_cfg, "export": export, "data": [run.outputs.get("prepare"), data_dir]}
    )
    return Step("evaluate", fingerprint, ev_path, do_evaluate)


def _export(run: _Run) -> Step | StepOutcome:
    """``[export] to``: deploy the new export into TO/export, once ``min_metrics`` are met.

    Without ``to`` the step is off, but ``min_metrics`` still gate the run (not in a dry run).
    """
    ex_cfg = run.config.get("export")
    if ex_cfg is None or not ex_cfg.get("to"):
        if ex_cfg is not None and ex_cfg.get("min_metrics") and not run.dry_run:
            _check_gate(ex_cfg["min_metrics"], run.evaluation, run.config_path)
        return StepOutcome("export", "off", f"served from {Path(run.config['train']['model_dir'])}")
    target_root = Path(ex_cfg["to"]) / "export"
    export = _latest_export(run)
    deployed = run.state.get("export", {}).get("output")

    def do_export():
        _check_gate(ex_cfg.get("min_metrics") or {}, run.evaluation, run.config_path)
        source = Path(export)
        target_root.mkdir(parents=True, exist_ok=True)
        final = target_root / source.name
        if not final.exists():
            tmp = target_root / f".{source.name}.tmp-{os.getpid()}"
            shutil.copytree(source, tmp)
            os.replace(tmp, final)  # a watching service never sees half of it
        return str(final), f"deployed {show_path(final)}"

    fingerprint = _digest({"settings": ex_cfg, "export": export})
    outputs = Path(deployed) if deployed else None
    return Step("export", fingerprint, outputs, do_export, directory=True)


def _predict(run: _Run) -> Step | StepOutcome:
    """``[predict]``: ``walsrec.predict`` of the new export into ``out``."""
    pr_cfg = run.config.get("predict")
    if pr_cfg is None:
        return StepOutcome("predict", "off")
    out_file = Path(pr_cfg["out"])
    users_file = pr_cfg.get("users_file")
    export = _latest_export(run)

    def do_predict():
        from walsrec.serving.predict import predict, read_user_ids

        settings = {k: v for k, v in pr_cfg.items() if k not in ("out", "users_file")}
        users = read_user_ids(users_file) if users_file else None
        info = predict(export, out_file, users=users, progress=run.show_progress, **settings)
        shown = show_path(out_file)
        return str(out_file), f"{info['users']:,} users, top {info['k']} to {shown}"

    fingerprint = _digest(
        {"settings": pr_cfg, "export": export, "users": _file_facts([users_file])}
    )
    return Step("predict", fingerprint, out_file, do_predict)


# The pipeline, in order: each builds its step from the run so far (or says it is off).
_PLAN: tuple[Callable[[_Run], Step | StepOutcome], ...] = (
    _prepare,
    _train,
    _update,
    _evaluate,
    _export,
    _predict,
)


def _run_steps(config, config_path, force, only, dry_run, show_progress, log) -> PipelineResult:
    """:func:`run_pipeline` after its arguments are checked: each step of :data:`_PLAN` in
    turn, built when its turn comes (its fingerprint holds the outputs of the steps before
    it), then skipped, run or reported (:meth:`_Run.take`)."""
    custom_state = config.pop("state", None)
    state_path = Path(custom_state["path"]) if custom_state else _state_path(config_path)
    run = _Run(
        config=config,
        config_path=config_path,
        force=force,
        only=only,
        dry_run=dry_run,
        show_progress=show_progress,
        log=log,
        state_path=state_path,
        state=_read_state(state_path),
        result=PipelineResult(steps=[], state_path=state_path),
    )
    for plan in _PLAN:
        step = plan(run)
        if isinstance(step, StepOutcome):  # the step is off
            run.result.steps.append(step)
        else:
            run.outputs[step.name] = run.take(step)
    result = run.result
    export = _latest_export(run)
    result.export_path = Path(export) if export and not dry_run else None
    result.evaluation = run.evaluation
    result.outputs = run.outputs
    return result


def _meta_token(data_dir: Path) -> str:
    return hashlib.sha256((data_dir / "meta.json").read_bytes()).hexdigest()[:16]


def _check_gate(minimums: dict, evaluation: dict | None, config_path: Path) -> None:
    if not minimums:
        return
    if evaluation is None:
        raise InvalidParameterError(
            f"{config_path}: [export] min_metrics needs an [evaluate] step with an eval split."
        )
    for name, minimum in minimums.items():
        value = evaluation["model"].get(name)
        if value is None and name == "rmse" and evaluation.get("targets") == "binary":
            raise InvalidParameterError(
                f"{config_path}: [export] min_metrics names 'rmse', which is not computed "
                "for a model fitted to binary targets (it predicts preferences, not "
                "values); gate on a ranking metric (e.g. ndcg@10), or train with "
                "targets = 'values'."
            )
        if value is None:
            raise InvalidParameterError(
                f"{config_path}: [export] min_metrics names {name!r}, which the evaluation "
                f"does not report (it reports {', '.join(evaluation['model'])})."
            )
        if value < float(minimum):
            raise InvalidParameterError(
                f"The new model's {name} is {value:.4f}, below the minimum {minimum} of "
                f"[export] min_metrics in {config_path}; nothing was deployed."
            )


def describe(result: PipelineResult) -> str:
    """A short table of the steps and what each did (what ``walsrec pipeline`` prints)."""
    width = max(len(s) for s in STEPS)
    lines = []
    for s in result.steps:
        lines.append(f"  {s.name:<{width}}  {s.status:<9}  {s.detail}".rstrip())
    return "\n".join(lines)
