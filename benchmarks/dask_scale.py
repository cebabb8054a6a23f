"""End to end on a 2-worker Dask cluster at growing sizes: seconds, traffic and peak memory.

For each size (generated visits, ``walsrec.datasets.generate_visits``, cached in bench-out/):

1. the peer of prepare: ``walsrec prepare`` (the course's settings, no eval split) of the
   one CSV file in a process of its own, on one machine;
2. a ``LocalCluster`` of 2 worker processes (one thread each, ``--memory-limit`` each);
3. ``walsrec prepare --dask`` in a client process of its own, from the same rows cut into
   files of 5M rows (bench-out/visits-N/part-*.csv): the workers read, combine and write
   the DATA_DIR, which is compared file by file (SHA-256) with the peer's;
4. a client process (this script with ``--drive``) runs ``walsrec.train(..., dask=)`` on it:
   ``--sweeps`` sweeps with a fixed λ, a checkpoint per sweep and the export (written by the
   workers), then one more sweep on the same model whose traffic is counted alone, then
   ``predict_dask`` (top 10 of every user, parquet shards);
5. the peer of training: ``walsrec.train`` with the same settings on one machine, in a
   process of its own, its kernels on every core (as many as the two workers' threads on
   this 2-core machine), timed as the client's call is: from the call to its return.

The parent samples, every 0.1 s with psutil, the resident memory of the client processes,
of each worker process and of the peers, and reports each stage's peak. Bytes per sweep:
client → workers and workers → client as DaskWALS counts them (arrays in task arguments and
results), worker ↔ worker counted from the tasks' placement and measured (the workers'
``transfer_incoming_log``). The factors of the cluster's export are compared with the
peer's (largest difference relative to the largest factor).

    python benchmarks/dask_scale.py [--sizes 10000000 30000000 100000000] [--k 32]
                                    [--sweeps 3] [--memory-limit 6GiB]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench-out"
SETTINGS = dict(regularization=0.02, embedding_dim=32, dtype="float32", seed=0)


class Sampler:
    """Peak resident memory of some processes, sampled in a thread, per named interval."""

    def __init__(self, every: float = 0.1) -> None:
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.pids: dict[str, int] = {}
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            now, rss = time.time(), {}
            for name, pid in list(self.pids.items()):
                try:
                    rss[name] = psutil.Process(pid).memory_info().rss
                except psutil.Error:
                    pass
            self.samples.append((now, rss))
            self._stop.wait(self.every)

    def peak(self, name: str, start: float = 0.0, end: float = float("inf")) -> int:
        return max((s.get(name, 0) for t, s in self.samples if start <= t <= end), default=0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def run_sampled(sampler: Sampler, name: str, args: list[str]) -> tuple[float, str]:
    """Run a command, its RSS sampled under ``name``; (seconds, stdout)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler.pids[name] = proc.pid
    out, err = proc.communicate()
    sampler.pids.pop(name, None)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:4])} failed:\n{out}\n{err}")
    return time.perf_counter() - t0, out


def walsrec_cli() -> list[str]:
    return [sys.executable, "-m", "walsrec"]


def prepared(n: int, sampler: Sampler) -> tuple[Path, dict]:
    """DATA_DIR of ``n`` generated visits (cached) and its prepare's seconds and peak RSS."""
    out = CACHE / f"scale-{n}"
    record = CACHE / f"scale-{n}.prepare.json"
    if (out / "meta.json").is_file() and record.is_file():
        return out, json.loads(record.read_text())
    csv = CACHE / f"visits-{n}.csv"
    if not csv.exists():  # in a process of its own: its memory is given back
        CACHE.mkdir(exist_ok=True)
        tmp = csv.with_suffix(".tmp")
        code = (
            "import pyarrow.csv as c, sys; from walsrec.datasets import generate_visits; "
            "c.write_csv(generate_visits(int(sys.argv[1]), seed=0), sys.argv[2])"
        )
        subprocess.run([sys.executable, "-c", code, str(n), str(tmp)], check=True)
        os.replace(tmp, csv)
    t0 = time.time()
    seconds, _ = run_sampled(
        sampler,
        "prepare",
        [*walsrec_cli(), "prepare", str(csv), "--out", str(out), *PREPARE_ARGS],
    )
    info = {"seconds": round(seconds, 2), "peak_rss": sampler.peak("prepare", t0)}
    record.write_text(json.dumps(info))
    return out, info


PREPARE_ARGS = ["--user-col", "visitor_id", "--item-col", "article_id", "--rating-col",
                "session_duration", "--rating-transform", "scaled-median",
                "--overwrite"]  # fmt: skip
ROWS_PER_FILE = 5_000_000


def input_parts(n: int) -> list[str]:
    """The rows of bench-out/visits-N.csv cut into files of ``ROWS_PER_FILE`` rows, each
    with the header (cached)."""
    folder = CACHE / f"visits-{n}"
    done = folder / "done"
    if not done.is_file():
        folder.mkdir(exist_ok=True)
        with open(CACHE / f"visits-{n}.csv", "rb") as f:
            header = f.readline()
            part, rows, out = 0, 0, None
            for line in f:
                if out is None:
                    out = open(folder / f"part-{part:03d}.csv", "wb")
                    out.write(header)
                out.write(line)
                rows += 1
                if rows == ROWS_PER_FILE:
                    out.close()
                    out, rows, part = None, 0, part + 1
            if out is not None:
                out.close()
        done.write_text("")
    return sorted(str(p) for p in folder.glob("part-*.csv"))


def digests(folder: Path) -> dict:
    """SHA-256 of every file of a DATA_DIR but meta.json (which holds time stamps)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != "meta.json":
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 24):
                    h.update(chunk)
            found[str(path.relative_to(folder))] = h.hexdigest()
    return found


def drive_one(data: str, model_dir: str, sweeps: int) -> None:
    """The peer's process: ``walsrec.train`` on this machine, timed as the client's call
    is (from the call to its return); JSON on stdout."""
    from walsrec.training.loop import train

    start = time.time()
    train(data=data, model_dir=model_dir, sweeps=sweeps, eval_every=1, overwrite=True, **SETTINGS)
    print(json.dumps({"seconds": time.time() - start}))


def drive(address: str, data: str, model_dir: str, out: str, sweeps: int) -> None:
    """The client process: train, one more sweep counted alone, predict; JSON on stdout."""
    from distributed import Client
    from walsrec.distributed.predict import predict_dask
    from walsrec.training.loop import train

    marks = {"start": time.time()}
    result = train(
        data=data,
        model_dir=model_dir,
        dask=address,
        sweeps=sweeps,
        eval_every=1,
        threads=1,
        overwrite=True,
        **SETTINGS,
    )
    marks["trained"] = time.time()
    records = [r["seconds"] for r in result.evaluations]
    from walsrec.distributed.wals import DaskWALS

    with Client(address) as client:
        # train closed its client: the same model on a new one, from the export's blocks
        model = DaskWALS(**{**result.model.get_params(), "client": client})
        model.open(result.model.source_)
        model.load_factors(result.export_path / "user_factors", result.export_path / "item_factors")
        opened = dict(model.stats_)
        before = dict(model.stats_)
        measured = incoming_bytes(client)
        marks["sweep"] = time.time()
        model.update_rows().update_cols()
        marks["swept"] = time.time()
        moved = {k: model.stats_[k] - before[k] for k in before}
        moved["measured_between_workers"] = incoming_bytes(client) - measured
        marks["predict"] = time.time()
        info = predict_dask(client, model_dir, out, k=10, format="parquet")
        marks["predicted"] = time.time()
    print(
        json.dumps(
            {
                "marks": marks,
                "sweep_seconds": np.diff([0.0, *records]).tolist(),
                "per_sweep": moved,
                "open": opened,
                "users": info["users"],
                "export": str(result.export_path),
            }
        )
    )


def incoming_bytes(client) -> int:
    def total(dask_worker):
        return int(sum(entry["total"] for entry in dask_worker.transfer_incoming_log))

    return int(sum(client.run(total).values()))


def one_size(n: int, args, sampler: Sampler) -> dict:
    from distributed import Client, LocalCluster
    from walsrec.serving.export import read_export

    one_data, prep = prepared(n, sampler)
    meta = json.loads((one_data / "meta.json").read_text())["counts"]
    parts = input_parts(n)
    work = CACHE / f"scale-{n}-run"
    data = work / "data"
    row = {"n": n, "users": meta["n_users"], "items": meta["n_items"], "prepare": prep}
    cluster = LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        memory_limit=args.memory_limit,
        dashboard_address=":0",
    )
    client = Client(cluster)
    try:
        pids = client.run(os.getpid)
        for i, pid in enumerate(sorted(pids.values())):
            sampler.pids[f"worker{i}"] = pid
        limit = min(w["memory_limit"] for w in client.scheduler_info()["workers"].values())
        t0 = time.time()
        seconds, _ = run_sampled(
            sampler,
            "prepare-client",
            [*walsrec_cli(), "prepare", *parts, "--out", str(data), *PREPARE_ARGS,
             "--dask", cluster.scheduler_address, "--quiet"],
        )  # fmt: skip
        t1 = time.time()
        row["prepare_dask"] = {
            "seconds": round(seconds, 2),
            "files": len(parts),
            "client": sampler.peak("prepare-client", t0, t1),
            "workers": [sampler.peak(f"worker{i}", t0, t1) for i in range(2)],
        }
        ours, theirs = digests(data), digests(one_data)
        row["prepare_identical"] = ours == theirs
        row["prepare_files_compared"] = len(theirs)
        _seconds, out = run_sampled(
            sampler,
            "client",
            [sys.executable, __file__, "--drive", cluster.scheduler_address, str(data),
             str(work / "model"), str(work / "top10"), str(args.sweeps)],
        )  # fmt: skip
        driven = json.loads(out.strip().splitlines()[-1])
        m = driven["marks"]
        stages = {
            "train (sweeps, checkpoints, export)": (m["start"], m["trained"]),
            "one more sweep, counted": (m["sweep"], m["swept"]),
            "predict_dask, top 10 of every user": (m["predict"], m["predicted"]),
        }
        row["stages"] = {
            name: {
                "seconds": round(b - a, 2),
                "client": sampler.peak("client", a, b),
                "workers": [sampler.peak(f"worker{i}", a, b) for i in range(2)],
            }
            for name, (a, b) in stages.items()
        }
        row["client_peak"] = max(sampler.peak("client", t0), sampler.peak("prepare-client", t0))
        row["worker_peaks"] = [sampler.peak(f"worker{i}", t0) for i in range(2)]
        row["worker_limit"] = int(limit)
        row["per_sweep"] = driven["per_sweep"]
        row["sweep_seconds"] = driven["sweep_seconds"]
    finally:
        for name in ("worker0", "worker1"):
            sampler.pids.pop(name, None)
        client.close()
        cluster.close()
    # the peer: the same training on one machine, timed from the call to its return
    t0 = time.time()
    _, out = run_sampled(
        sampler,
        "peer",
        [sys.executable, __file__, "--drive-one", str(data), str(work / "one"), str(args.sweeps)],
    )
    peer_s = json.loads(out.strip().splitlines()[-1])["seconds"]
    row["peer"] = {"seconds": round(peer_s, 2), "peak": sampler.peak("peer", t0)}
    a, b = read_export(work / "one"), read_export(driven["export"])
    row["max_rel_diff"] = max(
        float(np.abs(x - y).max() / np.abs(x).max())
        for x, y in ((a.user_factors, b.user_factors), (a.item_factors, b.item_factors))
    )
    return row


def mb(x: int) -> str:
    return f"{x / 2**20:,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000_000, 30_000_000, 100_000_000])
    ap.add_argument("--sweeps", type=int, default=3)
    ap.add_argument("--memory-limit", default="6GiB", help="per worker (default 6GiB)")
    ap.add_argument("--drive", nargs=5, metavar=("ADDRESS", "DATA", "MODEL", "OUT", "SWEEPS"))
    ap.add_argument("--drive-one", nargs=3, metavar=("DATA", "MODEL", "SWEEPS"))
    args = ap.parse_args()
    if args.drive_one:
        drive_one(args.drive_one[0], args.drive_one[1], int(args.drive_one[2]))
        return
    if args.drive:
        address, data, model_dir, out, sweeps = args.drive
        drive(address, data, model_dir, out, int(sweeps))
        return
    sampler = Sampler()
    rows = []
    try:
        for n in args.sizes:
            print(f"--- {n:,} visits", flush=True)
            rows.append(one_size(n, args, sampler))
            r = rows[-1]
            print(json.dumps(r), flush=True)
    finally:
        sampler.close()
    print(
        f"\nk {SETTINGS['embedding_dim']}, {SETTINGS['dtype']}, {args.sweeps} sweeps, 2 workers "
        f"of 1 thread, memory limit {args.memory_limit} each, {os.cpu_count()} cores; RSS in MB"
    )
    print(
        f"{'visits':>12s} {'users':>10s} {'items':>8s}  {'stage':38s} {'s':>7s} "
        f"{'client MB':>9s} {'worker MB (each)':>17s}"
    )
    for r in rows:
        head = f"{r['n']:>12,} {r['users']:>10,} {r['items']:>8,}"
        p = r["prepare_dask"]
        workers = " / ".join(mb(w) for w in p["workers"])
        name = f"prepare --dask ({p['files']} files)"
        print(f"{head}  {name:38s} {p['seconds']:7.1f} {mb(p['client']):>9s} {workers:>17s}")
        p = r["prepare"]
        print(f"{'':>32s}  {'peer: walsrec prepare, one process':38s} {p['seconds']:7.1f} "
              f"{mb(p['peak_rss']):>9s} {'-':>17s}")  # fmt: skip
        for name, s in r["stages"].items():
            workers = " / ".join(mb(w) for w in s["workers"])
            print(f"{'':>32s}  {name:38s} {s['seconds']:7.1f} {mb(s['client']):>9s} {workers:>17s}")
        peer = r["peer"]
        print(f"{'':>32s}  {'peer: walsrec.train, one machine':38s} {peer['seconds']:7.1f} "
              f"{mb(peer['peak']):>9s} {'-':>17s}")  # fmt: skip
    print(
        f"\n{'visits':>12s} {'s/sweep':>8s} {'client->workers B':>18s} {'workers->client B':>18s}"
        f" {'worker<->worker B (counted / measured)':>40s} {'max rel diff':>12s}"
    )
    for r in rows:
        t = r["per_sweep"]
        sweep = float(np.median(r["sweep_seconds"][1:] or r["sweep_seconds"]))
        between = f"{t['bytes_between_workers']:,} / {t['measured_between_workers']:,}"
        print(
            f"{r['n']:>12,} {sweep:8.2f} {t['bytes_to_workers']:>18,} "
            f"{t['bytes_from_workers']:>18,} {between:>40s} {r['max_rel_diff']:12.1e}"
        )
    first = rows[0]
    print()
    for r in rows:
        over = [w > r["worker_limit"] for w in r["worker_peaks"]]
        print(
            f"{r['n']:>12,}: client peak {mb(r['client_peak'])} MB = "
            f"{r['client_peak'] / first['client_peak']:.2f} x its peak at {first['n']:,}; "
            f"workers' peaks {' / '.join(mb(w) for w in r['worker_peaks'])} MB of "
            f"{mb(r['worker_limit'])} ({'OVER' if any(over) else 'within'} the limit); "
            f"cluster / one machine: {r['stages']['train (sweeps, checkpoints, export)']['seconds'] / r['peer']['seconds']:.2f} x the time"  # noqa: E501
        )
        ratio = r["prepare_dask"]["seconds"] / r["prepare"]["seconds"]
        print(
            f"{'':>12s}  prepare --dask: {ratio:.2f} x one process's time; its DATA_DIR "
            f"{'IS' if r['prepare_identical'] else 'IS NOT'} identical to one process's "
            f"({r['prepare_files_compared']} files compared by SHA-256)"
        )


if __name__ == "__main__":
    main()
