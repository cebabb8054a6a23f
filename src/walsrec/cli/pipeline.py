"""``walsrec pipeline`` and ``walsrec demo``."""

from __future__ import annotations

import argparse
import textwrap

from walsrec._tables import evaluation_table
from walsrec._tables import metrics_table as _metrics_table
from walsrec.cli._common import _stderr, _trained_length
from walsrec.cli.data import _prepare_summary


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
        choices=["all", "prepare", "train", "update", "evaluate", "export", "predict"],
        help="run this step even if unchanged (repeatable; 'all' for every step)",
    )
    p.add_argument(
        "--only",
        action="append",
        choices=["prepare", "train", "update", "evaluate", "export", "predict"],
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
        print(evaluation_table(result.evaluation))
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


def _write_next_day(table, workdir, args):
    """WORKDIR/visits-next.csv: the day after the demo's 30 days, a thirtieth as many visits
    to the same site (for ``walsrec prepare --append-to`` and ``walsrec update``)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    from walsrec.datasets import generate_visits

    n = args.interactions
    day = generate_visits(
        max(1, n // 30),
        n_users=max(10, n // 20),  # the site the demo's visits came from
        n_items=max(20, n // 50),
        seed=args.seed,
        visits_seed=1,
    )
    start = pc.max(table.column("timestamp")).as_py() + 1
    times = day.column("timestamp").to_numpy()
    # squeezed from the generator's 30 days into the day after the demo's last visit
    day = day.set_column(3, "timestamp", pa.array(start + (times - times.min()) // 30))
    path = workdir / "visits-next.csv"
    pcsv.write_csv(day, path)
    return path


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
    next_path = _write_next_day(table, workdir, args)
    print(f"Wrote {csv_path} ({table.num_rows:,} visits)")
    print(_prepare_summary(meta, data_dir))
    _stderr(f"demo: [3/5] training WALS for {args.sweeps} sweeps with held-out evaluation")
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
        f"\nTrained {_trained_length(result, step_mode=False)}; held-out metrics (top {k}, "
        "training items excluded):"
    )
    targets = result.model.targets
    print(_metrics_table(last, result.baseline, targets=targets))

    model = load_model(result.export_path)
    hybrid = None
    if model.hybrid:
        from walsrec.evaluation import evaluate_export

        hybrid = evaluate_export(result.export_path, data_dir, k=k)
        print(
            f"\nServed: WALS + EASE's item-item scores (β {hybrid['blend_weight']:g}, "
            f"λ_B {hybrid['ease_regularization']:g}, chosen on a validation split of the "
            "training data):"
        )
        print(evaluation_table(hybrid))

    _stderr("demo: [4/5] recommending for three example users")
    data = load_prepared(data_dir)
    examples = example_users(model, data, n=3, k=5, seed=args.seed)
    drawn = examples[0].drawn if examples else "at random"
    print(f"\nThree users drawn {drawn}: their strongest visits beside their top 5")
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
    from walsrec.evaluation import ease_metrics

    ease = (
        hybrid["ease"]
        if hybrid is not None
        else ease_metrics(data.train.user_items, data.eval.user_items, k)
    )
    report = write_report(
        workdir / "report.html",
        title="walsrec demo: news-site visits",
        model=last,
        baseline=result.baseline,
        ease=ease,
        hyperparameters=model.meta["hyperparameters"],
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
    print(f"Take in the next day's visits ({next_path}) without retraining:")
    print(
        f"  walsrec prepare {next_path} --append-to {data_dir} --out {workdir / 'data-next'}\n"
        f"  walsrec update --model-dir {model_dir} --data {workdir / 'data-next'}"
    )
    return 0


def _example_block(ex) -> str:
    width = max([len("history"), *(len(i) for i, _ in ex.history[:5])]) + 9
    held = set(ex.held_out)
    n = len(ex.held_out)
    visits = f"{n} held-out visit{'' if n == 1 else 's'}"
    if ex.hits:
        note = f"{visits}; * = recommended and held out"
    else:
        note = f"{visits}, not among the top {len(ex.recommendations)}"
    lines = [f"  user {ex.user}  ({note})"]
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


# ---------------------------------------------------------------------------- warmup
def _add_warmup(sub) -> None:
    p = sub.add_parser(
        "warmup",
        help="compile the kernels into numba's cache once (for images, cluster nodes, CI)",
        description=(
            "Run a small version of everything the commands do (prepare, train with lambda "
            "auto and evaluation, both solvers in float32 and float64, fold-in, recommend, "
            "predict) on generated data in a temporary folder, so that numba compiles the "
            "kernels into its on-disk cache now: later processes load them in milliseconds "
            "instead of compiling for up to a minute. The cache lies beside the installed "
            "package, or in NUMBA_CACHE_DIR when set; it is valid for this walsrec version on "
            "this CPU. Run it once when building a Docker image or a cluster node's "
            "environment (docs/scaling.md has the recipe)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent(
            """\
            examples:
              walsrec warmup
              NUMBA_CACHE_DIR=/opt/walsrec/numba-cache walsrec warmup
            """
        ),
    )
    p.set_defaults(func=_cmd_warmup, compile_notice=False)  # it says itself that it compiles


def _cmd_warmup(args) -> int:
    import os

    from walsrec.warmup import warm_up

    summary = warm_up(progress=_stderr)
    where = os.environ.get("NUMBA_CACHE_DIR") or "beside the installed package"
    parts = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in summary["parts"].items())
    print(f"Kernels compiled or loaded in {summary['seconds']:.1f} s ({parts}).")
    print(f"numba's cache ({where}) now holds them: later runs load them instead of compiling.")
    return 0


def add_commands(sub) -> None:
    """Add this module's commands to the ``walsrec`` parser."""
    _add_pipeline(sub)
    _add_demo(sub)
    _add_warmup(sub)
