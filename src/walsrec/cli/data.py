"""``walsrec prepare``: interaction files to a DATA_DIR."""

from __future__ import annotations

import argparse
import textwrap

from walsrec._argtypes import positive_int
from walsrec.cli._common import _stderr


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
    p.add_argument("--user-col", help="user id column (default: user, or the parent's)")
    p.add_argument("--item-col", help="item id column (default: item, or the parent's)")
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
        choices=["none", "binary", "log1p", "scaled-median"],
        help="scaled-median: min(cap, scale*r/median(r)), the course's rating (default: none)",
    )
    p.add_argument("--scale", type=float, help="scaled-median scale (default 0.3)")
    p.add_argument("--cap", type=float, help="scaled-median cap (default 1)")
    p.add_argument(
        "--duplicates",
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
    p.add_argument("--shards", type=int, help="TFRecord files per direction (default 1)")
    p.add_argument(
        "--compression",
        choices=["none", "gzip"],
        help="TFRecord compression (default: none, or the parent's)",
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
    p.add_argument(
        "--append-to",
        metavar="DATA_DIR",
        help=(
            "merge the inputs into this prepared DATA_DIR, written as --out: its ids keep "
            "their indices, new ids are appended, its rating transform (with its recorded "
            "median), duplicates rule and split are kept, and meta.json records the lineage"
        ),
    )
    p.add_argument(
        "--dask",
        metavar="ADDRESS|local:N",
        help=(
            "prepare on a Dask cluster's workers (a scheduler address or local:N): they read "
            "the files, one task each, and write DATA_DIR, which must be on storage every "
            "worker writes to; the result is the same DATA_DIR, byte for byte"
        ),
    )
    p.add_argument(
        "--partitions",
        type=positive_int,
        metavar="N",
        help="with --dask: ranges of users the work is split into (default: 2 per worker)",
    )
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.set_defaults(func=_cmd_prepare)


def _cmd_prepare(args) -> int:
    from walsrec.distributed.prepare import prepare

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
        compression=args.compression,
        on_bad_rows=args.on_bad_rows,
        overwrite=args.overwrite,
        progress=None if args.quiet else (lambda m: _stderr(f"prepare: {m}")),
        append_to=args.append_to,
        dask=args.dask,
        partitions=args.partitions,
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
    if meta.get("lineage"):
        from walsrec._files import show_path

        last = meta["lineage"][-1]
        lines.append(
            f"  appended to {show_path(last['parent'])}: {last['new_users']:,} new users, "
            f"{last['new_items']:,} new items, {last['new_pairs']:,} new pairs, "
            f"{last['train_pairs_combined'] + last['eval_pairs_combined']:,} pairs combined"
        )
    return "\n".join(lines)


def add_commands(sub) -> None:
    """Add this module's commands to the ``walsrec`` parser."""
    _add_prepare(sub)
