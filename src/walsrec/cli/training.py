"""``walsrec train`` and ``walsrec evaluate``."""

from __future__ import annotations

import argparse
import textwrap

from walsrec._argtypes import float_or_auto, positive_float
from walsrec._tables import metrics_table as _metrics_table
from walsrec.cli._common import _stderr


# ---------------------------------------------------------------------------- train
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
    g = p.add_argument_group("inputs")
    g.add_argument("--data", metavar="DATA_DIR", help="a directory written by walsrec prepare")
    g.add_argument("--train-rows", metavar="PATTERN", help="items_for_user TFRecords (glob/URL)")
    g.add_argument("--train-cols", metavar="PATTERN", help="users_for_item TFRecords")
    g.add_argument("--eval-rows", metavar="PATTERN", help="held-out items_for_user TFRecords")
    g.add_argument("--eval-cols", metavar="PATTERN", help="held-out users_for_item TFRecords")
    g.add_argument("--num-rows", type=int, help="number of users (default: from the data)")
    g.add_argument("--num-cols", type=int, help="number of items (default: from the data)")
    p.add_argument("--model-dir", required=True, metavar="MODEL_DIR")
    p.add_argument("--config", metavar="FILE", help="TOML file of settings")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in MODEL_DIR (only a MODEL_DIR or an empty directory)",
    )
    g = p.add_argument_group("model")
    g.add_argument("--embedding-dim", type=int, help="latent factors k (default 128)")
    g.add_argument(
        "--unobserved-weight",
        type=float_or_auto,
        help="w0: a number (tf.contrib's default was 0.1) or auto (default): "
        "--unobserved-mass x the density nnz/(users x items) x the mean confidence",
    )
    g.add_argument(
        "--unobserved-mass",
        type=positive_float,
        help="with --unobserved-weight auto: how many times its observed entries a row's "
        "unobserved entries weigh together (default 30)",
    )
    g.add_argument(
        "--regularization",
        type=float_or_auto,
        help="lambda: a number (tf.contrib had 0) or auto (default): chosen before training "
        "as the best of a few lambdas fitted on most of each user's training entries and "
        "scored on the rest (about as long as the training itself on the datasets "
        "measured; kept in MODEL_DIR/regularization.json)",
    )
    g.add_argument(
        "--regularization-exponent",
        type=float,
        help="nu: lambda*(count + w0*n)^nu (default 1; 0 is tf.contrib's plain lambda)",
    )
    g.add_argument("--row-weights", type=float, help="R, one scalar (default 1)")
    g.add_argument("--col-weights", type=float, help="C, one scalar (default 1)")
    g.add_argument(
        "--col-weights-from-counts",
        choices=["linear", "log"],
        help="C_j = factor/n_j (linear) or (1/n_j)^exponent (log), as the course",
    )
    g.add_argument("--col-weight-factor", type=float, help="factor of linear column weights")
    g.add_argument("--col-weight-exponent", type=float, help="exponent of log column weights")
    g.add_argument(
        "--confidence",
        choices=["constant", "linear", "log", "bm25", "tfidf"],
        help="c(r) of a stored value r in W = w0 + R*C*c(r): 1 (tf.contrib), alpha*r, "
        "alpha*log(1 + r/eps), alpha*BM25 (default) or alpha*TF-IDF row weighting "
        "(docs/weighting.md); all but constant need values >= 0",
    )
    g.add_argument(
        "--alpha",
        type=float_or_auto,
        help="scale of a non-constant confidence: a number or auto (default): the mean "
        "confidence of the training entries becomes 1",
    )
    g.add_argument("--epsilon", type=float, help="eps of --confidence log (default 1)")
    g.add_argument("--bm25-k1", type=float, help="K1 of --confidence bm25 (default 100)")
    g.add_argument("--bm25-b", type=float, help="B of --confidence bm25, in [0, 1] (default 0.8)")
    g.add_argument(
        "--targets",
        choices=["values", "binary"],
        help="fit 1 for every stored entry (binary preference, default) or the stored values "
        "(tf.contrib; explicit ratings you want predicted)",
    )
    g.add_argument("--solver", choices=["cholesky", "cg"], help="exact or conjugate gradient")
    g.add_argument("--cg-steps", type=int, help="CG iterations per row (default 3)")
    g.add_argument("--dtype", choices=["float32", "float64"])
    g.add_argument("--seed", type=int, help="random seed of the initial factors (default 0)")
    g.add_argument("--threads", type=int, help="kernel threads (default: all cores)")
    g.add_argument(
        "--dask",
        metavar="ADDRESS|local:N",
        help="run the half-steps on a Dask cluster: a scheduler address (tcp://HOST:8786) or "
        "local:N to start N local worker processes; DATA_DIR and MODEL_DIR must be on storage "
        "every worker reads at the same path (not with --batch-size)",
    )
    g = p.add_argument_group("length and evaluation")
    g.add_argument("--sweeps", type=int, help="sweeps to run (default 10)")
    g.add_argument("--num-epochs", type=int, help="the same as --sweeps")
    g.add_argument("--train-steps", type=int, help="steps to run; a step solves one batch")
    g.add_argument("--batch-size", type=int, help="rows or columns per step (default: all)")
    g.add_argument(
        "--eval-every", type=int, help="evaluate every N sweeps (steps with --train-steps)"
    )
    g.add_argument("--k", type=int, help="top-k of the ranking metrics (default 10)")
    g.add_argument("--early-stopping-metric", metavar="METRIC", help="e.g. ndcg@10")
    g.add_argument("--patience", type=int, help="evaluations without improvement (default 3)")
    g.add_argument("--checkpoint-every", type=int, help="sweeps between checkpoints (default 1)")
    g.add_argument("--keep-checkpoints", type=int, help="default 3")
    g.add_argument("--keep-exports", type=int, help="default 5")
    p.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from walsrec.training import TrainConfig, train

    # every option named like a TrainConfig field is a setting (None: not given)
    settings = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
    result = train(
        config_file=args.config,
        overwrite=args.overwrite,
        show_progress=not args.quiet,
        log=None if args.quiet else (lambda m: _stderr(f"train: {m}")),
        **settings,
    )
    last = result.evaluations[-1] if result.evaluations else {}
    print(f"Trained {result.steps} steps in {result.model_dir}")
    print(_metrics_table(last, result.baseline))
    print(f"Exported {result.export_path}")
    return 0


# ---------------------------------------------------------------------------- evaluate
def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="metrics of an exported model on a DATA_DIR's eval split, beside baselines",
        description=(
            "Load an export (or a model directory's newest export) and compute held-out rmse "
            "and the ranking metrics at k on the eval split of DATA_DIR, each user's training "
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
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args) -> int:
    import json

    from walsrec.evaluation import evaluate_export

    ease = {"auto": None, "yes": True, "no": False}[args.ease]
    result = evaluate_export(
        args.model,
        args.data,
        k=args.k,
        ease=ease,
        **({} if args.ease_lambda is None else {"ease_regularization": args.ease_lambda}),
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"Model {result['export']} on {result['data']} "
            f"({result['users_evaluated']:,} users with held-out items)"
        )
        print(_metrics_table(result["model"], result["most-popular"], result.get("ease")))
    return 0


def add_commands(sub) -> None:
    """Add this module's commands to the ``walsrec`` parser."""
    _add_train(sub)
    _add_evaluate(sub)
