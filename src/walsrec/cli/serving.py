"""Command-line commands of the serving side (recommend, similar, predict, serve).

Thin: each handler imports the library lazily (``walsrec --help`` stays fast), calls it and
prints. Library errors (:class:`walsrec.errors.WalsrecError`) reach the main CLI, which
prints one line and exits with code 2.
"""

from __future__ import annotations

import argparse
import textwrap

from walsrec._argtypes import positive_int
from walsrec.errors import InvalidParameterError


def _print_list(result, as_json: bool, header: str) -> None:
    import json

    if as_json:
        payload = {"items": result.to_list()}
        if result.fallback:
            payload["fallback"] = "popular"
        if result.ignored:
            payload["ignored"] = result.ignored
        print(json.dumps(payload, ensure_ascii=False))
        return
    print(header)
    width = max([len("item"), *(len(i) for i in result.items)])
    print(f"  {'rank':>4}  {'item':<{width}}  {'score':>10}")
    for rank, (item, score) in enumerate(zip(result.items, result.scores.tolist(), strict=True), 1):
        print(f"  {rank:>4}  {item:<{width}}  {score:>10.4f}")


# ---------------------------------------------------------------------------- recommend
def _add_recommend(sub) -> None:
    p = sub.add_parser(
        "recommend",
        help="top-k items for one user of an exported model",
        description=(
            "Load an export (or a model directory's newest export) and print the top-k items "
            "for one user by predicted score, the user's training items excluded unless "
            "--include-seen. An unknown user is an error unless --fallback popular."
        ),
        epilog=textwrap.dedent(
            """\
            examples:
              walsrec recommend --model model/ --user v5045 --k 10
              walsrec recommend --model model/export/1796000000 --user v5045 --json
              walsrec recommend --model model/ --user new-visitor --fallback popular
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, metavar="EXPORT", help="export or model directory")
    p.add_argument("--user", required=True, metavar="ID", help="the user's original id")
    p.add_argument("--k", type=int, default=10, help="number of items (default 10)")
    p.add_argument("--include-seen", action="store_true", help="keep the user's training items")
    p.add_argument(
        "--fallback",
        choices=["popular"],
        help="for an unknown user, answer with the most popular items instead of an error",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_recommend)


def _cmd_recommend(args) -> int:
    from walsrec.serving.model import load_model

    model = load_model(args.model)
    result = model.recommend(
        args.user, k=args.k, exclude_seen=not args.include_seen, fallback=args.fallback
    )
    how = "most popular (unknown user)" if result.fallback else "recommended"
    _print_list(result, args.json, f"Top {len(result)} items {how} for user {args.user!r}:")
    return 0


# ---------------------------------------------------------------------------- similar
def _add_similar(sub) -> None:
    p = sub.add_parser(
        "similar",
        help="the k items most similar to an item (cosine of the item factors)",
        description=(
            "Load an export and print the k items whose factors are most similar to the "
            "given item's (cosine similarity by default, or the dot product), the item "
            "itself excluded."
        ),
        epilog=textwrap.dedent(
            """\
            examples:
              walsrec similar --model model/ --item a2874 --k 10
              walsrec similar --model model/ --item a2874 --metric dot --json
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, metavar="EXPORT", help="export or model directory")
    p.add_argument("--item", required=True, metavar="ID", help="the item's original id")
    p.add_argument("--k", type=int, default=10, help="number of items (default 10)")
    p.add_argument("--metric", choices=["cosine", "dot"], default="cosine")
    p.add_argument(
        "--method",
        choices=["factors", "item-item"],
        default="factors",
        help="rank by the item factors (default) or by the row of the hybrid's EASE weights "
        "(exports trained with --item-item)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_similar)


def _cmd_similar(args) -> int:
    from walsrec.serving.model import load_model

    model = load_model(args.model)
    result = model.similar_items(args.item, k=args.k, metric=args.metric, method=args.method)
    _print_list(result, args.json, f"Top {len(result)} items similar to {args.item!r}:")
    return 0


# ---------------------------------------------------------------------------- predict
def _add_predict(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="batch prediction: top-k items for every user into a file",
        description=(
            "Top-k items for every user of an export (or the users listed in --users FILE, "
            "one id per line), seen items excluded, computed in chunks in parallel with "
            "bounded memory, written atomically. Formats: csv (user,rank,item,score), jsonl "
            "(one object per user), parquet, and course: the course's batch_pred.txt, one "
            "line per user index with its item indices comma-separated, best first."
        ),
        epilog=textwrap.dedent(
            """\
            examples:
              walsrec predict --model model/ --out batch_pred.txt --k 3 --format course
              walsrec predict --model model/ --out top10.csv --k 10
              walsrec predict --model model/ --out some.jsonl --format jsonl --users ids.txt
              walsrec predict --model /shared/model/ --out /shared/top10/ --dask tcp://sched:8786
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, metavar="EXPORT", help="export or model directory")
    p.add_argument("--out", required=True, metavar="FILE", help="file to write")
    p.add_argument("--k", type=int, default=10, help="items per user (default 10)")
    p.add_argument(
        "--format", choices=["csv", "jsonl", "parquet", "course"], default="csv", help="csv"
    )
    p.add_argument("--users", metavar="FILE", help="only these user ids (one per line)")
    p.add_argument("--include-seen", action="store_true", help="keep training items")
    p.add_argument("--threads", type=positive_int, help="threads (default: all cores)")
    p.add_argument("--chunk-size", type=positive_int, help="users per chunk (default: auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--dask",
        metavar="ADDRESS|local:N",
        help=(
            "rank on a Dask cluster's workers (a scheduler address or local:N), each writing "
            "a shard: --out is then a directory of part-PPPPP-of-NNNNN files; the export and "
            "--out on storage every worker reads and writes"
        ),
    )
    p.add_argument(
        "--partitions", type=positive_int, help="shards with --dask (default 2 per worker)"
    )
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(args) -> int:
    from walsrec._files import check_output_file
    from walsrec.serving.model import load_model
    from walsrec.serving.predict import model_inputs, predict, read_user_ids

    if args.dask is not None:
        return _predict_dask(args)
    # before anything is loaded: --out may overwrite none of the inputs (predict checks
    # the export and its DATA_DIR again once loaded)
    check_output_file(args.out, inputs=[*model_inputs(args.model), args.users], parameter="out")
    model = load_model(args.model)
    users = read_user_ids(args.users) if args.users else None
    info = predict(
        model,
        args.out,
        k=args.k,
        format=args.format,
        users=users,
        exclude_seen=not args.include_seen,
        n_jobs=args.threads,
        chunk_size=args.chunk_size,
        progress=not args.quiet,
    )
    print(
        f"Wrote {info['out']} ({info['format']}): top {info['k']} for {info['users']:,} users "
        f"in {info['seconds']:.2f} s (model version {model.version})"
    )
    return 0


def _predict_dask(args) -> int:
    from walsrec.distributed.cluster import connected
    from walsrec.distributed.predict import predict_dask

    if args.users is not None:
        raise InvalidParameterError(
            "--users cannot be combined with --dask: on Dask every user is ranked, one shard "
            "per partition. Leave out --users, or run without --dask."
        )
    with connected(args.dask, "option of predict") as client:
        info = predict_dask(
            client,
            args.model,
            args.out,
            k=args.k,
            format=args.format,
            partitions=args.partitions,
            exclude_seen=not args.include_seen,
            n_jobs=args.threads or 1,
        )
    print(
        f"Wrote {len(info['shards'])} shards to {info['out_dir']} ({info['format']}): top "
        f"{info['k']} for {info['users']:,} users in {info['seconds']:.2f} s"
    )
    return 0


# ---------------------------------------------------------------------------- serve
def _add_serve(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="HTTP service: recommendations, fold-in, similar items, hot reload of exports",
        description=(
            "Serve an export over HTTP (FastAPI + uvicorn): GET /recommendations/{user_id}, "
            "POST /recommendations (fold-in of a new user's interactions), "
            "GET /similar/{item_id}, GET /health, GET /model, OpenAPI docs at /docs. Given a "
            "model directory, the service watches MODEL_DIR/export and swaps in newer "
            "exports without downtime; a broken export is logged and skipped."
        ),
        epilog=textwrap.dedent(
            """\
            examples:
              walsrec serve --model model/ --port 8000
              curl 'http://127.0.0.1:8000/recommendations/v5045?k=5'
              curl -X POST http://127.0.0.1:8000/recommendations \\
                  -H 'content-type: application/json' \\
                  -d '{"interactions": [{"item": "a1600", "value": 1.0}], "k": 5}'
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model", required=True, metavar="MODEL_DIR_OR_EXPORT", help="watched when a MODEL_DIR"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--poll-interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often MODEL_DIR/export is checked for a newer export (default 2; 0: never)",
    )
    p.add_argument(
        "--max-interactions",
        type=positive_int,
        default=10_000,
        help="largest fold-in request, in interactions (default 10000; more: 413)",
    )
    p.add_argument("--max-k", type=positive_int, default=1000, help="largest k (default 1000)")
    p.add_argument(
        "--fallback",
        choices=["popular"],
        help=(
            "answer unknown users, and new users whose interactions name no known item, with "
            "the most popular items instead of 404 and 422"
        ),
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--access-log", action="store_true", help="log every request (slower)")
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args) -> int:
    from walsrec.serving.app import ServiceSettings, run

    settings = ServiceSettings(
        model=args.model,
        poll_interval=args.poll_interval,
        max_interactions=args.max_interactions,
        max_k=args.max_k,
        fallback=args.fallback,
    )
    run(
        settings,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
    )
    return 0


def add_commands(sub) -> None:
    """Register the serving subcommands on the ``walsrec`` parser's subparsers."""
    _add_recommend(sub)
    _add_similar(sub)
    _add_predict(sub)
    _add_serve(sub)
