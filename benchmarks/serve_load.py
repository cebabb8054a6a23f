"""Load test of ``walsrec serve``: recommendations against a no-work endpoint of the same app.

Starts ``python -m walsrec serve`` on the epinions model (k=64, 4,718 users × 36,165 items,
trained on first use and cached under bench-out/) on a free loopback port, then runs
``--clients`` concurrent clients (threads in ``--procs`` processes, one keep-alive
connection each, http.client) for ``--seconds`` against

* ``GET /recommendations/{user_id}?k=10`` for random users (a 36,165 × 64 matrix-vector
  product, seen items excluded, top 10), and
* ``GET /health``, which does no work (reads the active model's version),

measured the same way and alternated (``--rounds`` rounds of each). Printed: requests per
second of each and their ratio (target >= 0.7), p50/p99 latency, errors (must be 0), and
the server's resident memory (VmRSS from /proc/<pid>/status) before and after. Loopback
only; every loop is bounded by time and by ``--max-requests`` per client.

    .venv/bin/python benchmarks/serve_load.py [--clients 8] [--seconds 10] [--procs 2]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from queue import Empty

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict_vs_implicit import CACHE, epinions_model


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client(port, paths, seconds, max_requests, out, seed):
    """One keep-alive connection: requests until the deadline; latencies and errors."""
    rng = np.random.default_rng(seed)
    latencies = []
    errors = 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    deadline = time.perf_counter() + seconds
    try:
        while len(latencies) < max_requests:
            path = paths[int(rng.integers(len(paths)))]
            t = time.perf_counter()
            if t >= deadline:
                break
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    errors += 1
            except (OSError, http.client.HTTPException):
                errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            latencies.append(time.perf_counter() - t)
    finally:
        conn.close()
    out.append((latencies, errors))


def process_main(port, paths, seconds, threads, max_requests, seed, queue):
    out = []
    pool = [
        threading.Thread(target=client, args=(port, paths, seconds, max_requests, out, seed + i))
        for i in range(threads)
    ]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    queue.put(out)


def load(port, paths, clients, procs, seconds, max_requests, seed):
    """Run ``clients`` clients split over ``procs`` processes; (requests/s, latencies, errors)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    workers = [
        ctx.Process(
            target=process_main,
            args=(port, paths, seconds, n, max_requests, seed + 1000 * i, queue),
        )
        for i, n in enumerate(per)
        if n
    ]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    results = []
    deadline = time.perf_counter() + seconds + 120
    while len(results) < len(workers):
        try:
            results.append(queue.get(timeout=1.0))
        except Empty:
            if time.perf_counter() > deadline or any(w.exitcode not in (None, 0) for w in workers):
                for w in workers:
                    w.kill()
                sys.exit("a client process failed or hung")
    for w in workers:
        w.join(timeout=30)
    elapsed = time.perf_counter() - t0
    latencies = np.concatenate([np.asarray(lat) for r in results for lat, _ in r])
    errors = sum(e for r in results for _, e in r)
    # rate over the clients' own measuring window, not process start-up
    return latencies.size / seconds, latencies, errors, elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--procs", type=int, default=2, help="client processes (default 2)")
    ap.add_argument("--seconds", type=float, default=10.0, help="per round and endpoint")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-requests", type=int, default=200_000, help="per client and round")
    ap.add_argument("--embedding-dim", type=int, default=64)
    ap.add_argument("--sweeps", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=CACHE)
    args = ap.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    model_dir = epinions_model(args.workdir, args.embedding_dim, args.sweeps)
    users = (
        (sorted((model_dir / "export").iterdir())[-1].joinpath("vocab", "users.txt"))
        .read_text()
        .splitlines()
    )

    port = free_port()
    log = open(args.workdir / "serve_load.server.log", "w")
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "walsrec", "serve", "--model", str(model_dir), "--host",
         "127.0.0.1", "--port", str(port), "--poll-interval", "0", "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        for _ in range(600):
            if server.poll() is not None:
                sys.exit(f"server exited with {server.returncode}; see {log.name}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        ready = time.perf_counter() - started
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/model")
        info = json.loads(conn.getresponse().read())
        rss_before = rss_kib(server.pid)

        rng = np.random.default_rng(0)
        rec_paths = [f"/recommendations/{u}?k=10" for u in rng.choice(users, 5000)]
        endpoints = {"/recommendations/{user}?k=10": rec_paths, "/health": ["/health"]}
        stats = {name: ([], 0, 0) for name in endpoints}
        for r in range(args.rounds):
            for name, paths in endpoints.items():
                _rps, lat, err, _ = load(
                    port, paths, args.clients, args.procs, args.seconds, args.max_requests, r
                )
                old_lat, old_err, old_n = stats[name]
                stats[name] = ([*old_lat, lat], old_err + err, old_n + lat.size)
        rss_after = rss_kib(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()

    c = info["counts"]
    print(
        f"walsrec serve on epinions: {c['n_users']:,} users x {c['n_items']:,} items, "
        f"k={c['embedding_dim']}; ready (/health) {ready:.1f} s after start"
    )
    print(
        f"{args.clients} clients in {args.procs} processes, keep-alive, loopback; "
        f"{args.rounds} rounds x {args.seconds:g} s per endpoint, alternated"
    )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    total = args.rounds * args.seconds
    rates = {}
    for name, (lats, errors, n) in stats.items():
        lat = np.concatenate(lats) * 1000
        rates[name] = n / total
        print(
            f"  {name:<30} {rates[name]:>8,.0f} req/s   p50 {np.percentile(lat, 50):6.2f} ms"
            f"   p99 {np.percentile(lat, 99):6.2f} ms   errors {errors}   ({n:,} requests)"
        )
    names = list(stats)
    print(f"ratio recommendations / health: {rates[names[0]] / rates[names[1]]:.3f}")
    print(f"server RSS: {rss_before / 1024:.1f} MiB before, {rss_after / 1024:.1f} MiB after")


if __name__ == "__main__":
    main()
