"""Sweep time of the Dask back end on 1 and 2 local workers, next to the single machine.

A generated dataset (``walsrec.datasets.generate_visits``, 10M visits by default, cached in
bench-out/ like benchmarks/prepare.py's) is prepared once (``walsrec.data.prepare``, the
course's settings, no eval split) and fitted with the same parameters by

* ``WALS`` on this machine, ``n_jobs`` = 1 and = all cores (the peer);
* ``DaskWALS`` on a ``LocalCluster`` of 1 and of 2 worker processes (one task thread and
  ``--threads`` kernel threads per worker).

For each: seconds per sweep (median of the measured sweeps; the first sweep, which includes
loading the partitions and numba's cache, is reported apart), scaling efficiency
(time on 1 worker / (workers × time on N workers)), the bytes moved between the client and
the workers per sweep (counted: arrays in task arguments and gathered results), the bytes
moved between workers per sweep (the fixed factor rows each partition reads from blocks on
another worker: ``stats_["bytes_between_workers"]``, counted from the tasks' placement, and
measured: the sum of the workers' ``transfer_incoming_log``, which also holds anything else
Dask moved), and the largest relative difference of the factors from the single machine's.
On 2 workers, the default ``ship_whole_above=0.5`` runs next to 0 (always the whole fixed
factor) and inf (always only the touched rows).

    python benchmarks/dask_scaling.py [--interactions 10000000] [--k 32] [--sweeps 3]
                                      [--partitions N]   (per side; default two per worker)
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench-out"


def prepared(n: int) -> Path:
    import pyarrow.csv as pcsv

    from walsrec.data.prepare import prepare
    from walsrec.datasets import generate_visits

    out = CACHE / f"dask-visits-{n}"
    if (out / "train" / "native" / "user_items.json").is_file():
        return out
    csv = CACHE / f"visits-{n}.csv"
    if not csv.exists():
        CACHE.mkdir(exist_ok=True)
        tmp = csv.with_suffix(".tmp")
        pcsv.write_csv(generate_visits(n, seed=0), tmp)
        os.replace(tmp, csv)
    prepare(
        str(csv),
        out,
        user_col="visitor_id",
        item_col="article_id",
        rating_col="session_duration",
        rating_transform="scaled-median",
    )
    return out


def timed_fit(make, source, sweeps):
    marks = []

    def tick(sweep, model):
        marks.append(time.perf_counter())

    t0 = time.perf_counter()
    model = make(tick).fit(source)
    per = np.diff([t0, *marks])
    return model, float(per[0]), float(np.median(per[1:])) if len(per) > 1 else float(per[0])


def incoming_bytes(client) -> int:
    """Bytes all workers have received from other workers so far (Dask's transfer logs)."""

    def total(dask_worker):
        return int(sum(entry["total"] for entry in dask_worker.transfer_incoming_log))

    return int(sum(client.run(total).values()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interactions", type=int, default=10_000_000)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--sweeps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="kernel threads per Dask worker")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--partitions", type=int, default=None, help="per side (default 2/worker)")
    args = ap.parse_args()

    from distributed import Client, LocalCluster
    from walsrec.data.prepare import load_prepared
    from walsrec.distributed.wals import DaskWALS
    from walsrec.model.wals import WALS

    data = prepared(args.interactions)
    ui = load_prepared(data, mmap=False).train.user_items
    print(
        f"data: {ui.shape[0]:,} users x {ui.shape[1]:,} items, {ui.nnz:,} stored entries "
        f"({args.interactions:,} visits); k={args.k}, {args.dtype}, {os.cpu_count()} cores, "
        f"{args.partitions or 'two per worker'} partitions per side"
    )
    params = dict(
        embedding_dim=args.k, sweeps=args.sweeps, random_state=0, dtype=args.dtype, tol=0.0
    )
    rows = []
    ref = None
    for n_jobs in (1, None):
        model, first, per = timed_fit(
            lambda cb, n_jobs=n_jobs: WALS(n_jobs=n_jobs, callback=cb, **params), ui, args.sweeps
        )
        ref = ref or model
        name = f"WALS one machine, n_jobs={n_jobs or os.cpu_count()}"
        rows.append((name, first, per, None, None, 0.0))
    base = None
    for workers, whole in ((1, 0.5), (2, 0.5), (2, 0.0), (2, float("inf"))):
        cluster = LocalCluster(
            n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=":0"
        )
        client = Client(cluster)
        try:
            model, first, per = timed_fit(
                lambda cb, client=client, whole=whole: DaskWALS(
                    client=client,
                    n_jobs=args.threads,
                    ship_whole_above=whole,
                    partitions=args.partitions,
                    callback=cb,
                    **params,
                ),
                data,
                args.sweeps,
            )
            diff = max(
                float(np.abs(a - b).max() / np.abs(a).max())
                for a, b in (
                    (ref.user_factors_, model.user_factors_),
                    (ref.item_factors_, model.item_factors_),
                )
            )
            # traffic of one more sweep, counted alone
            before = dict(model.stats_)
            measured = incoming_bytes(client)
            model.update_rows().update_cols()
            moved = {k: model.stats_[k] - before[k] for k in before}
            moved["measured"] = incoming_bytes(client) - measured
            reads = [r["whole"] for side in model._reads.values() for r in side]
        finally:
            client.close()
            cluster.close()
        base = base or per
        eff = base / (workers * per) if whole == 0.5 else None
        name = f"DaskWALS {workers} worker(s), whole>{whole:g}"
        rows.append((name, first, per, eff, moved, diff))
        print(
            f"{name}: {sum(reads)} of {len(reads)} partitions read the whole fixed factor",
            flush=True,
        )
    print(
        f"{'back end':36s} {'1st sweep s':>11s} {'s/sweep':>8s} {'vs WALS1':>8s} "
        f"{'efficiency':>10s} {'client<->workers B/sweep':>25s} "
        f"{'worker<->worker B/sweep (counted / measured)':>45s} {'max rel diff':>12s}"
    )
    one = rows[0][2]
    for name, first, per, eff, moved, diff in rows:
        traffic = (
            f"{moved['bytes_to_workers']:,} + {moved['bytes_from_workers']:,}" if moved else "-"
        )
        between = f"{moved['bytes_between_workers']:,} / {moved['measured']:,}" if moved else "-"
        print(
            f"{name:36s} {first:11.2f} {per:8.2f} {one / per:8.2f} "
            f"{'-' if eff is None else f'{eff:.2f}':>10s} {traffic:>25s} {between:>45s} "
            f"{diff:12.1e}"
        )


if __name__ == "__main__":
    main()
