"""``walsrec train`` and ``walsrec evaluate``."""

from __future__ import annotations

import argparse
import dataclasses
import textwrap
from typing import Any

from walsrec._argtypes import float_or_auto, positive_int
from walsrec._checks import IntRule, OptionRule, RealRule
from walsrec._tables import evaluation_table
from walsrec._tables import metrics_table as _metrics_table
from walsrec.cli._common import _stderr, _trained_length
from walsrec.errors import InvalidParameterError
from walsrec.training import config

# ---------------------------------------------------------------------------- train
# options of the command itself, not settings of the run (TrainConfig's fields)
CLI_ONLY = ("--config", "--overwrite", "--quiet")


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train WALS with evaluation, checkpoints and export (the course's estimator)",
        description=(
            "Train a WALS model in MODEL_DIR: evaluate on the eval split every --eval-every "
            "sweeps (or steps), append to MODEL_DIR/metrics.jsonl, redraw "
            "training_curve.png, checkpoint, and export to MODEL_DIR/export/<version>/. "
            "Running it again resumes from the newest checkpoint; asking for more sweeps "
            "continues training. Settings may come from --config FILE (TOML, the same names "
            "with underscores); command-line options override it."
        ),
        epilog=textwrap.dedent(
            """\
            examples:
              walsrec train --data data/ --model-dir model/ --embedding-dim 32 --sweeps 10
              walsrec train --train-rows 'records/items_for_user*' \\
                  --train-cols 'records/users_for_item*' --num-rows 943 --num-cols 1682 \\
                  --model-dir model/ --train-steps 40 --batch-size 256 --eval-every 10
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_settings(p, config.INPUTS)
    _add_settings(p, None)  # --model-dir
    p.add_argument("--config", metavar="FILE", help="TOML file of settings")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in MODEL_DIR (only a MODEL_DIR or an empty directory)",
    )
    _add_settings(p, config.MODEL)
    _add_settings(p, config.LENGTH)
    p.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    p.set_defaults(func=_cmd_train)


def _add_settings(parser: argparse.ArgumentParser, group: str | None) -> None:
    """A flag for each TrainConfig field of ``group`` (None: the parser's own options), made
    from the field's metadata. Every flag defaults to None, "not given": the settings file's
    value or the field's default then holds."""
    target = parser if group is None else parser.add_argument_group(group)
    for field in dataclasses.fields(config.TrainConfig):
        if field.metadata["group"] == group:
            target.add_argument(config.option(field.name), **_flag(field))


def _flag(field: dataclasses.Field) -> dict[str, Any]:
    """argparse's keywords for a setting: help and the rest of the metadata; the type and
    choices follow from the rule where the metadata does not give them."""
    meta = dict(field.metadata)
    rule = meta.pop("rule")
    del meta["group"], meta["identity"]
    if isinstance(rule, IntRule):
        meta.setdefault("type", int)
    elif isinstance(rule, RealRule):
        meta.setdefault("type", float_or_auto if "auto" in rule.options else float)
    elif isinstance(rule, OptionRule):
        meta.setdefault("choices", [o for o in rule.options if o is not None])
    return meta


def _cmd_train(args) -> int:
    from walsrec.training import TrainConfig, load_config, train

    # every option named like a TrainConfig field is a setting (None: not given)
    settings = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
    cfg = load_config(args.config, **settings)  # here, to report in the unit asked for
    result = train(
        cfg,
        overwrite=args.overwrite,
        show_progress=not args.quiet,
        log=None if args.quiet else (lambda m: _stderr(f"train: {m}")),
    )
    last = result.evaluations[-1] if result.evaluations else {}
    print(f"Trained {_trained_length(result, cfg.step_mode)} in {result.model_dir}")
    print(_metrics_table(last, result.baseline, targets=cfg.targets))
    print(f"Exported {result.export_path}")
    return 0


# ---------------------------------------------------------------------------- evaluate
def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="metrics of an exported model on a DATA_DIR's eval split, beside baselines",
        description=(
            "Load an export (or a model directory's newest export) and compute the held-out "
            "ranking metrics at k (and rmse, for a model trained with --targets values) on the "
            "eval split of DATA_DIR, each user's training "
            "items excluded, next to the most-popular baseline and, for catalogs of at most "
            "20,000 items, EASE (Steck 2019), a strong item-item model: a WALS model well "
            "below EASE is worth tuning (walsrec tune)."
        ),
        epilog="example:\n  walsrec evaluate --model model/ --data data/ --k 10\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, metavar="EXPORT", help="export or model directory")
    p.add_argument("--data", required=True, metavar="DATA_DIR")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--ease",
        choices=["auto", "yes", "no"],
        default="auto",
        help="score the EASE baseline: auto (default) when the catalog has <= 20,000 items",
    )
    p.add_argument(
        "--ease-lambda",
        type=float,
        help="EASE's lambda (default 500, walsrec.metrics.EASE_REGULARIZATION)",
    )
    p.add_argument(
        "--dask",
        metavar="ADDRESS|local:N",
        help=(
            "evaluate on a Dask cluster's workers (a scheduler address or local:N); the export "
            "and DATA_DIR on storage every worker reads; no EASE"
        ),
    )
    p.add_argument("--threads", type=positive_int, help="threads of each task (default 1 on Dask)")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args) -> int:
    import json

    from walsrec.evaluation import evaluate_export

    ease = {"auto": None, "yes": True, "no": False}[args.ease]
    extra = {} if args.ease_lambda is None else {"ease_regularization": args.ease_lambda}
    if args.dask is not None:
        from walsrec.distributed.cluster import connected

        if ease:
            raise InvalidParameterError(
                "--ease yes cannot be combined with --dask: EASE inverts the item Gramian in "
                "one process, which holds the training matrix. Use --ease auto or no."
            )
        with connected(args.dask, "option of evaluate") as client:
            result = evaluate_export(
                args.model, args.data, k=args.k, n_jobs=args.threads or 1, client=client
            )
    else:
        result = evaluate_export(
            args.model, args.data, k=args.k, ease=ease, n_jobs=args.threads, **extra
        )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"Model {result['export']} on {result['data']} "
            f"({result['users_evaluated']:,} users with held-out items)"
        )
        print(evaluation_table(result))
    return 0


def _add_update(sub) -> None:
    p = sub.add_parser(
        "update",
        help="take new interactions into a trained model without retraining",
        description=(
            "Start from MODEL_DIR's newest checkpoint, grow the factors for the new users and "
            "items of DATA_DIR (prepared with 'walsrec prepare NEW... --append-to OLD_DATA_DIR'), "
            "solve the new and touched users exactly from their full histories, then the new "
            "and touched items, checkpoint and export a new version (a running 'walsrec "
            "serve' picks it up). Lambda, the unobserved weight and alpha stay at the values "
            "the model was trained with; the statistics that weigh entries (BM25, count-based "
            "column weights) follow the new data."
        ),
        epilog=textwrap.dedent(
            """\
            example:
              walsrec prepare today.csv --append-to data/ --out data-2/
              walsrec update --model-dir model/ --data data-2/
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model-dir", required=True, metavar="MODEL_DIR")
    p.add_argument("--data", required=True, metavar="DATA_DIR", help="the appended DATA_DIR")
    p.add_argument(
        "--sweeps",
        type=positive_int,
        default=1,
        metavar="N",
        help="passes over the new and touched users and items (default 1)",
    )
    p.add_argument(
        "--full-sweeps",
        type=int,
        default=0,
        metavar="M",
        help="ordinary sweeps over everything after those passes (default 0)",
    )
    p.add_argument("--threads", type=positive_int, help="kernel threads (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.set_defaults(func=_cmd_update)


def _cmd_update(args) -> int:
    from walsrec.training.update import update

    result = update(
        args.model_dir,
        args.data,
        sweeps=args.sweeps,
        full_sweeps=args.full_sweeps,
        threads=args.threads,
        log=None if args.quiet else (lambda m: _stderr(f"update: {m}")),
    )
    if result.already:
        print(f"{args.model_dir} already includes {args.data}; export {result.export_path}")
        return 0
    if result.export_path is None:
        print(f"Nothing new in {args.data}: the model in {args.model_dir} is unchanged")
        return 0
    print(
        f"Updated {args.model_dir} with {args.data} in {result.seconds:.1f} s: "
        f"{result.new_users:,} new users, {result.new_items:,} new items; "
        f"{result.users_solved:,} users and {result.items_solved:,} items solved "
        f"({result.sweeps} pass(es), {result.full_sweeps} full sweep(s))"
    )
    if result.metrics:
        print(_metrics_table(result.metrics, result.baseline))
    print(f"Exported {result.export_path}")
    return 0


def add_commands(sub) -> None:
    """Add this module's commands to the ``walsrec`` parser."""
    _add_train(sub)
    _add_update(sub)
    _add_evaluate(sub)
