"""Seconds per sweep of walsrec's WALS against implicit's ALS on the same problem.

Both libraries solve the identical implicit-feedback problem (Hu, Koren & Volinsky):
confidence c = alpha·value on stored entries, 1 elsewhere, targets 1 and 0, plain λ. In
walsrec that is ``unobserved_weight=1``, ``weights=alpha·X`` and targets ``X.data = 1``
(``tests/model/test_wals.py`` checks that both reach the same factors). Pairs are timed
alternately in the same process: walsrec "cholesky" against implicit ``use_cg=False`` and
walsrec "cg" against implicit ``use_cg=True`` with the same ``cg_steps``; the per-sweep
times are the medians over every timed sweep of every repetition.

walsrec's sweep time includes the full objective that ``fit`` records after each
half-step (implicit computes none, ``calculate_training_loss=False``).

Also printed: the FLOP floor of one exact sweep, nnz·k² + (n_users + n_items)·k³/3 flops
(the rank-1 Gram updates and one Cholesky per row) at this machine's measured float32
matrix-multiply rate (np.dot of two 2048² float32 matrices with BLAS on ``--threads``
threads), and the first-fit compile time of walsrec's kernels with an empty numba cache.

Run (OpenBLAS core-type overrides slow numpy's BLAS; unset them for this command only):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/vs_implicit.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
ALPHA = 40.0  # Hu et al.'s confidence scale
LAMBDA = 0.1


def load_csv(name: str) -> sp.csr_matrix:
    import pandas as pd

    df = pd.read_csv(DATA / name, usecols=["user", "item"])
    users, u = np.unique(df["user"].to_numpy(), return_inverse=True)
    items, i = np.unique(df["item"].to_numpy(), return_inverse=True)
    x = sp.csr_matrix((np.ones(len(df), np.float32), (u, i)), shape=(len(users), len(items)))
    x.sum_duplicates()
    x.data[:] = 1.0
    return x


def generated(n_interactions: int) -> tuple[sp.csr_matrix, str]:
    """walsrec.datasets.generate_visits, repeated visits collapsed to one binary entry."""
    import pyarrow.compute as pc

    from walsrec.datasets import generate_visits

    table = generate_visits(n_interactions, seed=0)
    u = pc.cast(pc.utf8_slice_codeunits(table["visitor_id"], 1), "int64").to_numpy()
    i = pc.cast(pc.utf8_slice_codeunits(table["article_id"], 1), "int64").to_numpy()
    shape = (int(u.max()) + 1, int(i.max()) + 1)
    x = sp.csr_matrix((np.ones(u.shape[0], np.float32), (u, i)), shape=shape)
    x.sum_duplicates()
    x.data[:] = 1.0
    return x, f"walsrec.datasets.generate_visits({n_interactions:,}, seed=0), binarised"


def matmul_rate(threads: int) -> float:
    """Measured float32 GEMM flops/s with BLAS on ``threads`` threads (best of 5)."""
    from threadpoolctl import threadpool_limits

    n = 2048
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    best = np.inf
    with threadpool_limits(threads, "blas"):
        np.dot(a, b)
        for _ in range(5):
            t = time.perf_counter()
            np.dot(a, b)
            best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best


def time_walsrec(x, weights, k, solver, sweeps, threads) -> list[float]:
    from walsrec.model.wals import WALS

    stamps: list[float] = []
    model = WALS(
        embedding_dim=k,
        unobserved_weight=1.0,
        regularization=LAMBDA,
        solver=solver,
        cg_steps=3,
        sweeps=sweeps,
        n_jobs=threads,
        random_state=0,
        callback=lambda s, m: stamps.append(time.perf_counter()),
    )
    start = time.perf_counter()
    model.fit(x, weights=weights)
    # the first interval includes input checks, the transpose and the initialisation
    return list(np.diff(stamps)) if len(stamps) > 1 else [stamps[0] - start]


def time_implicit(conf, k, use_cg, sweeps, threads) -> list[float]:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    times: list[float] = []
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=k,
            regularization=LAMBDA,
            alpha=1.0,
            use_cg=use_cg,
            iterations=sweeps,
            num_threads=threads,
            random_state=0,
        )
        model.fit(conf, show_progress=False, callback=lambda it, el, loss: times.append(el))
    return times[1:] if len(times) > 1 else times


def compile_time(threads: int) -> float:
    """Seconds of the first small fit (both solvers) in a fresh process with an empty cache,
    minus the same fits once compiled."""
    code = textwrap.dedent(
        f"""
        import time, numpy as np, scipy.sparse as sp
        from walsrec.model.wals import WALS
        x = sp.random(300, 200, density=0.05, format="csr", random_state=0, dtype=np.float32)
        def run():
            t = time.perf_counter()
            for solver in ("cholesky", "cg"):
                WALS(embedding_dim=8, sweeps=1, solver=solver, n_jobs={threads}).fit(x)
            return time.perf_counter() - t
        first = run(); second = run()
        print(first - second)
        """
    )
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=["epinions", "ml100k", "generated10m"],
        choices=["epinions", "ml100k", "generated10m", "generated1m"],
    )
    parser.add_argument("--k", nargs="+", type=int, default=[32, 64, 128])
    parser.add_argument("--repeats", type=int, default=3, help="alternated fits per pair")
    parser.add_argument("--sweeps", type=int, default=4, help="sweeps per fit (first dropped)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--quick", action="store_true", help="epinions and ml100k at k=64, 2 repeats"
    )
    parser.add_argument("--no-compile", action="store_true", help="skip the compile timing")
    args = parser.parse_args(argv)
    if args.quick:
        args.datasets, args.k, args.repeats = ["epinions", "ml100k"], [64], 2

    import implicit
    from threadpoolctl import threadpool_info

    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"load at start: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (1, 5 min)")
    print(f"implicit {implicit.__version__}; threads {args.threads}; BLAS 1 thread in kernels")
    for info in threadpool_info():
        if info.get("user_api") == "blas":
            print(
                f"BLAS: {info.get('internal_api')} {info.get('version')} "
                f"{info.get('architecture')} ({Path(info['filepath']).name})"
            )
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    rate = matmul_rate(args.threads)
    print(f"float32 GEMM rate, {args.threads} BLAS threads: {rate / 1e9:.1f} GFLOP/s")
    # warm the kernels (compile or load from cache) outside the timings
    time_walsrec(
        sp.random(50, 40, density=0.2, format="csr", dtype=np.float32),
        None,
        4,
        "cholesky",
        1,
        args.threads,
    )
    time_walsrec(
        sp.random(50, 40, density=0.2, format="csr", dtype=np.float32),
        None,
        4,
        "cg",
        1,
        args.threads,
    )

    rows = []
    for name in args.datasets:
        if name == "epinions":
            x, source = load_csv("epinions_trust.csv"), "epinions_trust.csv"
        elif name == "ml100k":
            x, source = load_csv("ml100k.csv"), "ml100k.csv (binarised)"
        else:
            x, source = generated(10_000_000 if name == "generated10m" else 1_000_000)
        conf = (ALPHA * x).astype(np.float32).tocsr()
        n_users, n_items = x.shape
        print(f"\n{name}: {n_users:,} users x {n_items:,} items, nnz {x.nnz:,} ({source})")
        sweeps, repeats = args.sweeps, args.repeats
        if x.nnz > 2_000_000:  # implicit's Cholesky takes minutes per sweep here
            sweeps, repeats = 2, 1
            print(f"  (large: {sweeps} sweeps per fit, the second timed; {repeats} repetition)")
        for k in args.k:
            t = {key: [] for key in ("w_chol", "i_chol", "w_cg", "i_cg")}
            for _ in range(repeats):
                t["i_chol"] += time_implicit(conf, k, False, sweeps, args.threads)
                t["w_chol"] += time_walsrec(x, conf, k, "cholesky", sweeps, args.threads)
                t["i_cg"] += time_implicit(conf, k, True, sweeps, args.threads)
                t["w_cg"] += time_walsrec(x, conf, k, "cg", sweeps, args.threads)
            med = {key: statistics.median(v) for key, v in t.items()}
            floor_flops = x.nnz * k * k + (n_users + n_items) * k**3 / 3
            floor = floor_flops / rate
            print(
                f"  k={k:<4d} cholesky: walsrec {med['w_chol']:.4f} s  implicit "
                f"{med['i_chol']:.4f} s  ratio {med['w_chol'] / med['i_chol']:.2f} | "
                f"cg: walsrec {med['w_cg']:.4f} s  implicit {med['i_cg']:.4f} s  ratio "
                f"{med['w_cg'] / med['i_cg']:.2f} | floor {floor:.4f} s "
                f"({floor_flops / 1e9:.2f} GFLOP), walsrec cholesky/floor "
                f"{med['w_chol'] / floor:.1f}"
            )
            rows.append((name, k, med, floor))
    if not args.no_compile:
        print(f"\nfirst-fit compile time, empty numba cache: {compile_time(args.threads):.1f} s")
    print(f"load at end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (1, 5 min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
