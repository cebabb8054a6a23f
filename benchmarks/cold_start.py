"""What a new user waits for: each step in a fresh process, with an empty numba cache
(cold) and then again with the cache that run filled (warm).

Steps: ``import walsrec``; ``walsrec prepare`` of MovieLens 100K; ``walsrec train`` with
its defaults on it (λ auto included); ``walsrec predict`` of the export; ``walsrec
serve`` until ``/health`` answers; one 3-sweep ``WALS.fit``; a 3-sweep fit with each
solver and each confidence scheme (one process); ``walsrec demo``; then, on the cache the
demo filled, ``walsrec train`` with README's tf.contrib migration flags (another
combination of options: what it compiles beyond the demo's); a 3-sweep ``DaskWALS.fit`` on
a ``LocalCluster`` of 2 worker processes, which also prints how many of walsrec's functions
each worker compiled. For each: seconds cold, seconds warm, and the kernel specialisations
compiled in that run (the ``.nbc`` files numba added to the cache: one per compiled
signature of a cached kernel).

The peer is implicit, which ships compiled extensions: importing it and running a 3-sweep
ALS fit on the same matrix, in a fresh process. Its time is printed beside walsrec's cold
and warm fits, with the ratios.

    .venv/bin/python benchmarks/cold_start.py [--skip demo,serve]

Needs ../shared/data/ml100k.csv. Every step runs on one scratch directory; nothing is
written in the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ml100k.csv"
BIN = Path(sys.executable).parent
WALSREC = str(BIN / "walsrec")

FIT_ONE = """
import sys
from walsrec.data.prepare import load_prepared
from walsrec.model.wals import WALS
ui = load_prepared(sys.argv[1]).train.user_items
WALS(16, sweeps=3, solver="cholesky", random_state=0).fit(ui)
"""

FIT = """
import sys, time
from walsrec.data.prepare import load_prepared
from walsrec.model.wals import WALS
ui = load_prepared(sys.argv[1]).train.user_items
for solver in ("cholesky", "cg"):
    for confidence in ("constant", "linear", "log", "bm25", "tfidf"):
        WALS(16, sweeps=3, solver=solver, confidence=confidence, random_state=0).fit(ui)
"""

# A 3-sweep DaskWALS fit on a LocalCluster of 2 worker processes; prints how many of
# walsrec's functions each worker compiled (numba's compile event fires only on a cache miss).
DASK = """
import json, sys
from distributed import Client, LocalCluster
from walsrec.distributed.wals import DaskWALS


def count_compiles():
    import builtins
    from numba.core import event

    class Count(event.Listener):
        n = 0

        def on_start(self, data):
            func = getattr(data.data.get("dispatcher"), "py_func", None)
            if getattr(func, "__module__", "").startswith("walsrec."):
                Count.n += 1

        def on_end(self, data):
            pass

    event.register("numba:compile", Count())
    builtins.walsrec_compiles = Count


def compiled():
    import builtins

    return builtins.walsrec_compiles.n


if __name__ == "__main__":
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster, Client(cluster) as client:
        client.run(count_compiles)
        DaskWALS(16, client=client, sweeps=3, random_state=0).fit(sys.argv[1])
        print(json.dumps(sorted(client.run(compiled).values())))
"""

# README's tf.contrib migration command: another combination of options than the demo's.
MIGRATION = [
    "--embedding-dim", "10", "--unobserved-weight", "0.01", "--regularization", "0.07",
    "--col-weights-from-counts", "log", "--col-weight-exponent", "0.08", "--sweeps", "10",
    "--confidence", "constant", "--targets", "values", "--regularization-exponent", "0",
]  # fmt: skip

IMPLICIT = """
import sys
import numpy as np
import implicit
from threadpoolctl import threadpool_limits
from walsrec.data.prepare import load_prepared
ui = load_prepared(sys.argv[1]).train.user_items.astype(np.float32).tocsr()
with threadpool_limits(1, "blas"):
    model = implicit.cpu.als.AlternatingLeastSquares(
        factors=16, iterations=3, random_state=0, calculate_training_loss=False
    )
    model.fit(ui, show_progress=False)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _compiled(cache: Path) -> int:
    return sum(1 for _ in cache.rglob("*.nbc"))


def _run(cmd: list[str], env: dict, out: list | None = None) -> float:
    """Seconds ``cmd`` took; its last line of output is appended to ``out`` when given."""
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.decode()[-2000:]}")
    if out is not None:
        out.append(proc.stdout.decode().strip().splitlines()[-1])
    return seconds


def _serve(model_dir: Path, env: dict) -> float:
    """Seconds from starting `walsrec serve` until /health answers 200."""
    port = _free_port()
    cmd = [WALSREC, "serve", "--model", str(model_dir), "--port", str(port)]
    cmd += ["--log-level", "warning"]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while time.perf_counter() - t < 600:
            if proc.poll() is not None:
                raise SystemExit(f"serve exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - t
            except OSError:
                time.sleep(0.05)
        raise SystemExit("serve did not answer /health within 600 s")
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip", default="", help="comma-separated steps to leave out")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    if not DATA.is_file():
        raise SystemExit(f"{DATA} not found (the shared datasets)")
    work = Path(tempfile.mkdtemp(prefix="walsrec-cold-"))
    data = work / "data"

    def train(model_dir: Path, *flags: str) -> list[str]:
        return [
            WALSREC,
            "train",
            "--data",
            str(data),
            "--model-dir",
            str(model_dir),
            "--quiet",
            *flags,
        ]

    steps = [
        ("import", "import walsrec", lambda run: [sys.executable, "-c", "import walsrec.cli"]),
        (
            "prepare",
            "walsrec prepare ML-100K",
            lambda run: [
                WALSREC,
                "prepare",
                str(DATA),
                "--out",
                str(data),
                "--rating-col",
                "rating",
                "--eval-fraction",
                "0.1",
                "--split",
                "user",
                "--quiet",
                "--overwrite",
            ],
        ),
        (
            "train",
            "walsrec train (defaults, lambda auto)",
            lambda run: train(work / f"model-{run}"),
        ),
        (
            "predict",
            "walsrec predict (top 10, every user)",
            lambda run: [
                WALSREC,
                "predict",
                "--model",
                str(work / f"model-{run}"),
                "--out",
                str(work / f"top10-{run}.csv"),
                "--quiet",
            ],
        ),
        ("serve", "walsrec serve until /health", None),
        (
            "fit1",
            "WALS.fit, 3 sweeps (as the peer's fit)",
            lambda run: [sys.executable, "-c", FIT_ONE, str(data)],
        ),
        (
            "fit",
            "WALS.fit, 3 sweeps, 2 solvers x 5 confidences",
            lambda run: [sys.executable, "-c", FIT, str(data)],
        ),
        (
            "demo",
            "walsrec demo",
            lambda run: [WALSREC, "demo", "--workdir", str(work / f"demo-{run}")],
        ),
        (
            "migration",
            "then walsrec train (README's tf.contrib flags)",
            lambda run: train(work / f"migration-{run}", *MIGRATION),
        ),
        (
            "dask",
            "DaskWALS.fit, 3 sweeps, 2 worker processes",
            lambda run: [sys.executable, "-c", DASK, str(data)],
        ),
    ]
    # "then" steps run on the cache the step before them filled (cold: after that step's
    # warm run), to count what another combination of options adds
    shared_cache = {"migration": "demo"}
    worker_compiles = {}
    rows, fit_times = [], {}
    for key, label, make in steps:
        if key in skip:
            continue
        cache = work / f"numba-cache-{shared_cache.get(key, key)}"
        cache.mkdir(exist_ok=True)
        env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
        result = []
        for run in ("cold", "warm"):
            before = _compiled(cache)
            if key == "serve":
                seconds = _serve(work / f"model-{run}", env)
            elif key == "dask":
                said: list[str] = []
                seconds = _run(make(run), env, said)
                worker_compiles[run] = json.loads(said[0])
            else:
                seconds = _run(make(run), env)
            result.append((seconds, _compiled(cache) - before))
        if key == "fit1":
            fit_times = {"cold": result[0][0], "warm": result[1][0]}
        rows.append((label, *result[0], *result[1]))
        print(f"  {label}: cold {result[0][0]:.1f} s, warm {result[1][0]:.1f} s", flush=True)
    peer = None
    if "fit1" not in skip:
        try:
            peer = _run([sys.executable, "-c", IMPLICIT, str(data)], dict(os.environ))
        except SystemExit as exc:
            print(f"  implicit not run: {exc}", flush=True)
    load = os.getloadavg()[0]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(
        f"\n# walsrec cold start, {stamp}, commit {commit}, {os.cpu_count()} cores, "
        f"load average {load:.2f}"
    )
    print(f"{'step':48} {'cold s':>8} {'compiled':>9} {'warm s':>8} {'compiled':>9}")
    print("-" * 86)
    for label, cs, cn, ws, wn in rows:
        print(f"{label:48} {cs:8.1f} {cn:9d} {ws:8.1f} {wn:9d}")
    if peer is not None and fit_times:
        print(
            f"\npeer: implicit (compiled wheels): import + a 3-sweep ALS fit, k 16, BLAS 1 "
            f"thread, fresh process: {peer:.1f} s"
        )
        print(
            f"walsrec / implicit (the one-fit step): cold {fit_times['cold'] / peer:.2f}, "
            f"warm {fit_times['warm'] / peer:.2f}"
        )
    if worker_compiles:
        print(
            f"\nDask workers (2 processes, one cache): walsrec functions each worker compiled: "
            f"cold {worker_compiles['cold']}, warm {worker_compiles['warm']}"
        )
    print(json.dumps({"work": str(work)}))


if __name__ == "__main__":
    main()
