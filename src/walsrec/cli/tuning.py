"""Command-line command of the tuning side (``walsrec tune``).

Thin: the handler imports the library lazily (``walsrec --help`` stays fast), calls
:func:`walsrec.tuning.tune` and prints. Library errors reach the main CLI, which prints one
line and exits with code 2.
"""

from __future__ import annotations

import argparse
import textwrap

from walsrec._argtypes import positive_float, positive_int
from walsrec._tables import evaluation_table
from walsrec.cli._common import _stderr


def add_commands(sub) -> None:
    """Register ``walsrec tune`` on the ``walsrec`` parser's subparsers."""
    p = _add_parser(sub)
    _add_study_arguments(p)
    _add_trial_arguments(p)
    _add_output_arguments(p)
    p.set_defaults(func=_cmd_tune)


def _add_parser(sub) -> argparse.ArgumentParser:
    """The ``walsrec tune`` parser: its help, description and examples."""
    return sub.add_parser(
        "tune",
        help="search WALS hyper-parameters with Optuna on validation splits",
        description=(
            "Run an Optuna study over WALS settings: embedding dimension 32-256, "
            "regularization 0.001-1, unobserved mass 2-300 and the confidence scheme (BM25, "
            "linear, log, constant) by default (docs/tuning.md; --space FILE narrows, widens "
            "or replaces it). The first trial is train's defaults (those the space can "
            "express). Every trial fits on 90 percent of each user's training interactions "
            "and is scored on the rest "
            "(--validation-fraction 0.1), on --folds 3 such splits, their mean counting: the "
            "eval split is never used for choosing. The first split is scored after every "
            "sweep, and the median pruner stops trials that are behind. The same --storage "
            "and --study-name resume a study and add trials. Writes best.toml (for walsrec "
            "train --config), trials.csv, optimization_history.png and "
            "param_importances.png to --out."
        ),
        epilog=textwrap.dedent(
            """\
            examples:
              walsrec tune --data data/ --trials 50 --metric ndcg@10 --out tuning/
              walsrec tune --data data/ --trials 50 --storage sqlite:///study.db \\
                  --study-name visits --jobs 2 --timeout 3600
              walsrec tune --data data/ --trials 20 --space space.toml --train-best \\
                  --model-dir model/
              walsrec train --config tuning/best.toml --data data/ --model-dir model/

            space.toml (every table optional; replace = true tunes only what it names):
              [space]
              solver = "cg"
              embedding_dim = { choices = [32, 64, 128] }
              [space.regularization]
              low = 0.01
              high = 1.0
              log = true
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_study_arguments(p: argparse.ArgumentParser) -> None:
    """The data, the study's length, metric and search space."""
    p.add_argument("--data", required=True, metavar="DATA_DIR", help="from walsrec prepare")
    p.add_argument("--trials", type=positive_int, metavar="N", help="trials to add to the study")
    p.add_argument(
        "--metric",
        default="ndcg@10",
        help="ndcg@K, map@K, precision@K, recall@K, auc, coverage (maximised) or rmse "
        "(minimised); default ndcg@10",
    )
    p.add_argument("--space", metavar="FILE", help="TOML search space (see below)")


def _add_trial_arguments(p: argparse.ArgumentParser) -> None:
    """How the trials run and are scored, and where the study is kept."""
    p.add_argument(
        "--sweeps",
        type=positive_int,
        default=10,
        metavar="N",
        help="sweeps per trial (default 10)",
    )
    p.add_argument(
        "--evaluate-every",
        type=positive_int,
        default=1,
        metavar="N",
        help="score and report to the pruner every N sweeps (default 1)",
    )
    p.add_argument("--storage", metavar="URL", help="Optuna storage, e.g. sqlite:///study.db")
    p.add_argument("--study-name", metavar="NAME", help="default: walsrec")
    p.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        metavar="J",
        help="trials in parallel threads (default 1)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="kernel threads in all (default: every core)",
    )
    p.add_argument("--timeout", type=positive_float, metavar="S", help="stop after S seconds")
    p.add_argument(
        "--seed", type=int, default=0, metavar="N", help="seeds the split, sampler and init"
    )
    p.add_argument(
        "--validation-fraction",
        type=float,
        default=0.1,
        metavar="F",
        help="share of each user's training interactions scored (default 0.1)",
    )
    p.add_argument(
        "--folds",
        type=positive_int,
        default=3,
        metavar="N",
        help="validation splits per trial, their mean scored (default 3: one split's score "
        "is too noisy to tell the best settings apart)",
    )
    p.add_argument("--no-prune", action="store_true", help="never stop a trial early")


def _add_output_arguments(p: argparse.ArgumentParser) -> None:
    """What is written, and the training of the best configuration."""
    p.add_argument("--out", default="tuning", metavar="DIR", help="output directory (tuning)")
    p.add_argument(
        "--train-best",
        action="store_true",
        help="train and export the best configuration on the whole training split, then "
        "evaluate it on the eval split (needs --model-dir)",
    )
    p.add_argument("--model-dir", metavar="MODEL_DIR", help="where --train-best trains")
    p.add_argument("--overwrite", action="store_true", help="start MODEL_DIR over")
    p.add_argument("--quiet", action="store_true", help="no line per trial on stderr")


def _cmd_tune(args) -> int:
    from walsrec.errors import InvalidParameterError

    if args.train_best and not args.model_dir:
        raise InvalidParameterError("--train-best needs --model-dir MODEL_DIR.")
    if args.trials is None and args.timeout is None:
        raise InvalidParameterError("tune needs --trials N or --timeout S (or both).")
    if not args.train_best:
        return _tune(args)
    from walsrec.training.loop import check_model_dir_replaceable, model_dir_lock

    # MODEL_DIR is checked and locked before the study, not after hours of trials: another
    # run holding it, or --overwrite of a directory that is not a MODEL_DIR, is refused now
    if args.overwrite:  # before the lock file is made in a directory that is not train's
        check_model_dir_replaceable(args.model_dir, [args.data], parameter="model_dir")
    with model_dir_lock(args.model_dir, "walsrec tune --train-best"):
        return _tune(args)


def _tune(args) -> int:
    """``walsrec tune`` once its arguments are checked (and MODEL_DIR locked)."""
    from walsrec.errors import InvalidParameterError
    from walsrec.tuning import train_best, tune
    from walsrec.tuning.study import trials_table

    def progress(t) -> None:
        value = "-" if t.value is None else f"{t.value:.4f}"
        best = "" if t.best_value is None else f" (best {t.best_value:.4f}, trial {t.best_number})"
        params = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items()
        )
        _stderr(f"tune: trial {t.number} {t.state.lower()} {args.metric} {value}{best}: {params}")
        if t.error:
            _stderr(f"tune: trial {t.number} failed: {t.error}")

    result = tune(
        args.data,
        trials=args.trials,
        metric=args.metric,
        space=args.space,
        sweeps=args.sweeps,
        evaluate_every=args.evaluate_every,
        storage=args.storage,
        study_name=args.study_name,
        jobs=args.jobs,
        threads=args.threads,
        timeout=args.timeout,
        seed=args.seed,
        validation_fraction=args.validation_fraction,
        folds=args.folds,
        pruner="none" if args.no_prune else "median",
        out=args.out,
        progress=None if args.quiet else progress,
    )
    share = result.validation_fraction
    print(
        f"Trials were scored on {args.folds} validation split(s) carved from the training "
        f"split ({share:.0%} of each user's training interactions, seeds from {args.seed}); "
        "the eval "
        "split was not used for choosing."
    )
    counts: dict[str, int] = {}
    for t in result.trials:
        counts[t.state.lower()] = counts.get(t.state.lower(), 0) + 1
    print(
        f"Study {result.study.study_name!r}: {result.new_trials} new trials, "
        f"{len(result.trials)} in all ("
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + f"), kernel threads per trial: {result.threads_per_trial}."
    )
    header, rows = trials_table(result)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    if result.best_value is None:
        print("No trial completed.")
    else:
        best = result.study.best_trial.number
        print(f"Best: trial {best}, {result.metric} {result.best_value:.4f} (validation)")
    for key in ("best", "trials", "history", "importances"):
        if key in result.paths:
            print(f"Wrote {result.paths[key]}")
    for note in result.notes:
        print(f"Note: {note}")
    if not args.train_best:
        return 0
    if result.best_value is None:
        raise InvalidParameterError("--train-best: no trial completed, nothing to train.")
    done = train_best(
        result,
        args.model_dir,
        threads=args.threads,
        overwrite=args.overwrite,
        log=None if args.quiet else (lambda m: _stderr(f"train: {m}")),
    )
    trained = done["train"]
    print(f"Trained the best configuration on the whole training split in {trained.model_dir}")
    print(f"Exported {trained.export_path}")
    ev = done["evaluation"]
    if ev is None:
        print("No eval split in DATA_DIR: the best configuration was not evaluated.")
        return 0
    print(f"Eval split ({ev['users_evaluated']:,} users, k={ev['k']}), seen for the first time:")
    print(evaluation_table(ev))
    return 0
