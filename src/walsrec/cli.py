"""The ``walsrec`` command line: parses arguments, calls the library, maps its errors.

Thin on purpose: every command is a library call. A :class:`walsrec.errors.WalsrecError`
(bad input, bad parameter) or an :class:`OSError` (a file that cannot be read or written,
a full disk) becomes one line on stderr and exit code 2. Library modules are imported
inside the command functions so that ``walsrec --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence

from walsrec import __version__
from walsrec._argtypes import float_or_auto, positive_float
from walsrec._tables import metrics_table as _metrics_table
from walsrec.errors import WalsrecError

EXIT_BAD_INPUT = 2


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _os_error_text(exc: OSError) -> str:
    """One line for an OSError: the path(s) first, then what went wrong."""
    if exc.filename is None:  # pyarrow's put the path in the message
        return str(exc)
    paths = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
    return f"{paths}: {exc.strerror or exc}"


# ---------------------------------------------------------------------------- prepare
def _add_prepare(sub) -> None:
    p = sub.add_parser(
        "prepare",
        help="turn interaction files into a DATA_DIR of vocabularies and TFRecords",
        description=(
            "Read interactions (CSV/TSV, Parquet, JSON lines; gz/bz2/zstd; paths, globs or "
            "fsspec URLs), combine duplicates, transform ratings, filter, split off an eval "
            "set, and write DATA_DIR: meta.json, vocab/users.txt, vocab/items.txt, "
            "train/ and eval/ with items_for_user and users_for_item TFRecords (the "
            "course's layout) and a native memory-mappable copy."
        ),
        epilog=textwrap.dedent(
            """\
            example:
              walsrec prepare visits.csv.gz --out data/ --user-col visitor_id \\
                  --item-col article_id --rating-col session_duration \\
                  --rating-transform scaled-median --eval-fraction 0.1 --split user
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, globs or fsspec URLs")
    p.add_argument("--out", required=True, metavar="DATA_DIR", help="directory to create")
    p.add_argument("--user-col", default="user", help="user id column (default: user)")
    p.add_argument("--item-col", default="item", help="item id column (default: item)")
    p.add_argument("--rating-col", help="interaction value column (default: every value is 1)")
    p.add_argument("--time-col", help="timestamp column (needed by --split time)")
    p.add_argument("--delimiter", help="CSV delimiter (default: detected from the first line)")
    p.add_argument(
        "--columns",
        help="comma-separated column names for headerless CSV files, e.g. user,item,rating",
    )
    p.add_argument("--format", choices=["csv", "parquet", "jsonl"], help="override the suffix")
    p.add_argument(
        "--rating-transform",
        default="none",
        choices=["none", "binary", "log1p", "scaled-median"],
        help="scaled-median: min(cap, scale*r/median(r)), the course's rating (default: none)",
    )
    p.add_argument("--scale", type=float, default=0.3, help="scaled-median scale (default 0.3)")
    p.add_argument("--cap", type=float, default=1.0, help="scaled-median cap (default 1)")
    p.add_argument(
        "--duplicates",
        default="sum",
        choices=["sum", "max", "mean", "first", "last"],
        help="how repeated (user, item) pairs combine (default: sum)",
    )
    p.add_argument("--min-user-interactions", type=int, default=1, metavar="N")
    p.add_argument("--min-item-interactions", type=int, default=1, metavar="N")
    p.add_argument(
        "--eval-fraction",
        type=float,
        default=0.0,
        metavar="F",
        help="share of interactions held out for evaluation (default 0)",
    )
    p.add_argument(
        "--split",
        default="random",
        choices=["random", "user", "time"],
        help="how the eval interactions are chosen (default: random)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shards", type=int, default=1, help="TFRecord files per direction")
    p.add_argument(
        "--compression",
        choices=["none", "gzip"],
        default="none",
        help="TFRecord compression (default: none)",
    )
    p.add_argument(
        "--on-bad-rows",
        choices=["error", "skip"],
        default="error",
        help="skip and count bad rows instead of stopping at the first",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing DATA_DIR (only a DATA_DIR or an empty directory, never one "
        "holding an input)",
    )
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.set_defaults(func=_cmd_prepare)


def _cmd_prepare(args) -> int:
    from walsrec.data.prepare import prepare

    meta = prepare(
        args.inputs,
        args.out,
        user_col=args.user_col,
        item_col=args.item_col,
        rating_col=args.rating_col,
        time_col=args.time_col,
        delimiter=args.delimiter,
        columns=args.columns.split(",") if args.columns else None,
        format=args.format,
        rating_transform=args.rating_transform,
        scale=args.scale,
        cap=args.cap,
        duplicates=args.duplicates,
        min_user_interactions=args.min_user_interactions,
        min_item_interactions=args.min_item_interactions,
        eval_fraction=args.eval_fraction,
        split=args.split,
        seed=args.seed,
        shards=args.shards,
        compression=None if args.compression == "none" else args.compression,
        on_bad_rows=args.on_bad_rows,
        overwrite=args.overwrite,
        progress=None if args.quiet else (lambda m: _stderr(f"prepare: {m}")),
    )
    print(_prepare_summary(meta, args.out))
    return 0


def _prepare_summary(meta: dict, out) -> str:
    c = meta["counts"]
    lines = [
        f"Prepared {out} in {meta.get('seconds', 0):.1f} s",
        f"  rows read            {c['rows_read']:>12,}",
    ]
    if c["bad_rows_skipped"]:
        reasons = ", ".join(f"{k}: {v:,}" for k, v in sorted(c["bad_rows_by_reason"].items()))
        lines.append(f"  bad rows skipped     {c['bad_rows_skipped']:>12,}  ({reasons})")
    lines += [
        f"  distinct pairs       {c['distinct_pairs']:>12,}",
        f"  removed by filters   {c['pairs_removed_by_filters']:>12,}",
        f"  users                {c['n_users']:>12,}",
        f"  items                {c['n_items']:>12,}",
        f"  train interactions   {c['train_interactions']:>12,}",
        f"  eval interactions    {c['eval_interactions']:>12,}",
    ]
    if c["eval_dropped_not_in_train"]:
        lines.append(
            f"  eval dropped         {c['eval_dropped_not_in_train']:>12,}  "
            "(user or item not in train)"
        )
    return "\n".join(lines)


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


# ---------------------------------------------------------------------------- pipeline
def _add_pipeline(sub) -> None:
    p = sub.add_parser(
        "pipeline",
        help="prepare, train, evaluate, export, predict from one TOML file; unchanged steps skip",
        description=(
            "The local form of the course's retraining DAG: run prepare -> train -> evaluate "
            "-> export -> predict as configured by one TOML file with a table per step "
            "([prepare], [train], [evaluate], [export], [predict]; settings named as the "
            "keyword arguments of walsrec.prepare, walsrec.train, walsrec.evaluate_export "
            "and walsrec.predict; relative paths are relative to the file). A step is "
            "skipped when its settings, its input files (sizes and modification times) and "
            "the outputs it depends on are unchanged since its last successful run, as "
            "recorded in CONFIG.state.json beside the file. A running 'walsrec serve --model "
            "MODEL_DIR' picks up the new export by itself. See examples/pipeline.toml."
        ),
        epilog=textwrap.dedent(
            """\
            examples:
              walsrec pipeline --config examples/pipeline.toml
              walsrec pipeline --config pipeline.toml --dry-run
              walsrec pipeline --config pipeline.toml --force train
              walsrec pipeline --config pipeline.toml --only evaluate
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, metavar="FILE", help="the pipeline's TOML file")
    p.add_argument(
        "--force",
        action="append",
        default=[],
        choices=["all", "prepare", "train", "evaluate", "export", "predict"],
        help="run this step even if unchanged (repeatable; 'all' for every step)",
    )
    p.add_argument(
        "--only",
        action="append",
        choices=["prepare", "train", "evaluate", "export", "predict"],
        help="run only this step (repeatable): one scheduler task per step",
    )
    p.add_argument("--dry-run", action="store_true", help="only say which steps would run")
    p.add_argument("--quiet", action="store_true", help="no progress bars or messages")
    p.set_defaults(func=_cmd_pipeline)


def _cmd_pipeline(args) -> int:
    from walsrec.pipeline import describe, run_pipeline

    result = run_pipeline(
        args.config,
        force=args.force,
        only=args.only,
        dry_run=args.dry_run,
        show_progress=not args.quiet,
        log=None if args.quiet else (lambda m: _stderr(f"pipeline: {m}")),
    )
    ran = result.ran()
    if args.dry_run:
        print(f"Pipeline {args.config} (dry run):")
    else:
        print(
            f"Pipeline {args.config}: {len(ran)} step(s) ran, "
            f"{len(result.skipped())} unchanged and skipped"
        )
    print(describe(result))
    from walsrec._files import show_path

    if result.evaluation is not None:
        print(
            f"Held-out metrics of {show_path(result.evaluation['export'])} "
            f"({result.evaluation['users_evaluated']:,} users):"
        )
        print(
            _metrics_table(
                result.evaluation["model"],
                result.evaluation["most-popular"],
                result.evaluation.get("ease"),
            )
        )
    if result.export_path is not None:
        print(f"Export: {show_path(result.export_path)}")
    print(f"State: {show_path(result.state_path)}")
    return 0


# ---------------------------------------------------------------------------- demo
def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the whole flow on the built-in dataset, with an HTML report",
        description=(
            "Generate the built-in dataset (news-site visits with session durations, like "
            "the course's data), prepare it with the course's scaled-median rating and a "
            "held-out split, train WALS with evaluation and export, print the model's "
            "held-out metrics next to most-popular and three example users' history beside "
            "their recommendations, and write a self-contained HTML report "
            "(WORKDIR/report.html). Running it again starts over in the same WORKDIR."
        ),
        epilog=textwrap.dedent(
            """\
            examples:
              walsrec demo
              walsrec demo --workdir /tmp/walsrec-demo --interactions 1000000 --sweeps 10
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--workdir", default="walsrec-demo", help="where to write (default: walsrec-demo)"
    )
    p.add_argument(
        "--interactions", type=int, default=200_000, help="visits to generate (default 200000)"
    )
    p.add_argument("--sweeps", type=int, default=8, help="training sweeps (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of data, split and model")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    import time
    from pathlib import Path

    import pyarrow.csv as pcsv

    from walsrec.data.prepare import load_prepared, prepare
    from walsrec.datasets import VISITS_PREPARE, generate_visits
    from walsrec.report import example_users, write_report
    from walsrec.serving.model import load_model
    from walsrec.training import train

    started = time.perf_counter()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _stderr(f"demo: [1/5] generating {args.interactions:,} visits (seed {args.seed})")
    table = generate_visits(args.interactions, seed=args.seed)
    csv_path = workdir / "visits.csv"
    pcsv.write_csv(table, csv_path)
    data_dir, model_dir = workdir / "data", workdir / "model"
    _stderr("demo: [2/5] preparing: scaled-median rating, 10% of each user's visits held out")
    meta = prepare(
        [str(csv_path)],
        data_dir,
        **VISITS_PREPARE,
        eval_fraction=0.1,
        split="user",
        seed=args.seed,
        overwrite=True,
        progress=lambda m: _stderr(f"prepare: {m}"),
    )
    print(f"Wrote {csv_path} ({table.num_rows:,} visits)")
    print(_prepare_summary(meta, data_dir))
    _stderr(
        f"demo: [3/5] training WALS for {args.sweeps} sweeps with held-out evaluation (the "
        "first run after installing also compiles the kernels, once: up to a minute more)"
    )
    result = train(
        data=str(data_dir),
        model_dir=str(model_dir),
        sweeps=args.sweeps,
        seed=args.seed,
        overwrite=True,
        show_progress=True,
        log=lambda m: _stderr(f"train: {m}"),
    )
    last = result.evaluations[-1]
    k = int(last.get("k", 10))
    print(
        f"\nTrained {result.steps // 2} sweeps; held-out metrics (top {k}, training items "
        "excluded):"
    )
    print(_metrics_table(last, result.baseline))

    _stderr("demo: [4/5] recommending for three example users")
    model = load_model(result.export_path)
    examples = example_users(model, load_prepared(data_dir), n=3, k=5, seed=args.seed)
    print("\nThree users drawn at random: their strongest visits beside their top 5")
    for ex in examples:
        print(_example_block(ex))

    _stderr("demo: [5/5] writing the HTML report")
    some_user = examples[0].user if examples else model.users.id(0)
    commands = [
        f"walsrec serve --model {model_dir} --port 8000",
        f"curl 'http://127.0.0.1:8000/recommendations/{some_user}?k=5'",
        f"walsrec recommend --model {model_dir} --user {some_user} --k 5",
    ]
    c = meta["counts"]
    report = write_report(
        workdir / "report.html",
        title="walsrec demo: news-site visits",
        model=last,
        baseline=result.baseline,
        curve=model_dir / "training_curve.png",
        examples=examples,
        facts=[
            ("visits generated", table.num_rows),
            ("users", c["n_users"]),
            ("articles", c["n_items"]),
            ("training interactions", c["train_interactions"]),
            ("held-out interactions", c["eval_interactions"]),
            ("embedding dimension", model.embedding_dim),
            ("sweeps", result.steps // 2),
            ("export", str(result.export_path)),
        ],
        commands=commands,
    )
    print(f"\nExported {result.export_path}")
    print(f"Report: {report} (open it in a browser)")
    print(f"Finished in {time.perf_counter() - started:.1f} s.")
    print("\nServe the model and query it (in two terminals):")
    print("".join(f"  {line}\n" for line in commands[:2]), end="")
    print("or without a server:")
    print(f"  {commands[2]}")
    return 0


def _example_block(ex) -> str:
    width = max([len("history"), *(len(i) for i, _ in ex.history[:5])]) + 9
    held = set(ex.held_out)
    n = len(ex.held_out)
    lines = [f"  user {ex.user}  ({n} held-out visit{'' if n == 1 else 's'}; * = one of them)"]
    lines.append(f"    {'history (rating)':<{width}}  recommended (score)")
    rows = max(min(len(ex.history), 5), len(ex.recommendations))
    for r in range(rows):
        left = ""
        if r < min(len(ex.history), 5):
            item, value = ex.history[r]
            left = f"{item} ({value:.2f})"
        right = ""
        if r < len(ex.recommendations):
            item, score = ex.recommendations[r]
            right = f"{item} ({score:.3f}){' *' if item in held else ''}"
        lines.append(f"    {left:<{width}}  {right}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="walsrec",
        description="WALS matrix factorization recommendations: prepare, train, serve.",
        epilog="Run 'walsrec COMMAND --help' for a command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"walsrec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_prepare(sub)
    _add_train(sub)
    _add_evaluate(sub)
    from walsrec.serving.commands import add_commands as add_serving_commands

    add_serving_commands(sub)
    from walsrec.tuning.commands import add_commands as add_tuning_commands

    add_tuning_commands(sub)
    _add_pipeline(sub)
    _add_demo(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``walsrec`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.func(args)
    except WalsrecError as exc:
        _stderr(f"walsrec {args.command}: error: {exc}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _stderr(f"walsrec {args.command}: interrupted")
        return 130
    except BrokenPipeError:  # the reader went away (e.g. `walsrec ... | head`)
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout
        return 141
    except OSError as exc:  # after BrokenPipeError, one of its subclasses
        _stderr(f"walsrec {args.command}: error: {_os_error_text(exc)}")
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
