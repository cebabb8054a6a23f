"""Top-10 for every user: walsrec's batch prediction against implicit's batched recommend.

Both rank the same factors (an epinions WALS model, k=64, trained here on first use and
cached under bench-out/) with the users' training items excluded:

* walsrec ``Recommender.recommend_indices`` (what ``walsrec predict`` computes), with its
  default method (items scored by decreasing norm, stopping at the Cauchy-Schwarz bound:
  exact) and with ``method="gemm"`` (one GEMM per chunk of users, then a numba top-k that
  skips seen items: the same work as implicit), and ``predict`` to a file in the course's
  format (the default method plus writing ``batch_pred.txt``);
* implicit 0.7 ``AlternatingLeastSquares.recommend(userids, user_items, N=10,
  filter_already_liked_items=True)`` on an ``implicit.cpu.als.AlternatingLeastSquares``
  whose ``user_factors``/``item_factors`` are set to the same arrays.

Same process, ``--threads`` threads for both, calls alternated, medians of ``--repeats``
timed runs after one warm-up each. implicit runs twice per repeat, with BLAS on
``--threads`` threads and on one thread (its own advice); the ratio walsrec / implicit is
printed against the faster of the two (target <= 1.0), and how many users get the same
list.

    .venv/bin/python benchmarks/predict_vs_implicit.py [--threads 2] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CACHE = ROOT / "bench-out" / "epinions"


def epinions_model(workdir: Path, embedding_dim: int, sweeps: int) -> Path:
    """MODEL_DIR of an epinions model, prepared and trained with the walsrec CLI if absent."""
    model_dir = workdir / f"model-k{embedding_dim}-s{sweeps}"
    if (model_dir / "export").is_dir() and any((model_dir / "export").iterdir()):
        return model_dir
    csv = SHARED / "epinions_trust.csv"
    if not csv.is_file():
        sys.exit(f"{csv} not found (the shared datasets are needed)")
    cli = [sys.executable, "-m", "walsrec"]
    data = workdir / "data"
    if not (data / "meta.json").is_file():
        subprocess.run(
            [*cli, "prepare", str(csv), "--out", str(data), "--rating-col", "rating", "--quiet"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    subprocess.run(
        [*cli, "train", "--data", str(data), "--model-dir", str(model_dir), "--embedding-dim",
         str(embedding_dim), "--sweeps", str(sweeps), "--quiet"],
        check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return model_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--k", type=int, default=10, help="items per user (default 10)")
    ap.add_argument("--embedding-dim", type=int, default=64)
    ap.add_argument("--sweeps", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=CACHE)
    args = ap.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    model_dir = epinions_model(args.workdir, args.embedding_dim, args.sweeps)

    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from walsrec.serving.model import load_model
    from walsrec.serving.predict import predict

    warnings.filterwarnings("ignore", message="OpenBLAS is configured to use")
    model = load_model(model_dir)
    n_users, n_items = model.n_users, model.n_items
    users = np.arange(n_users)
    ui = model.user_items.astype(np.float32)

    peer = AlternatingLeastSquares(factors=model.embedding_dim, num_threads=args.threads)
    peer.user_factors = model.user_factors
    peer.item_factors = model.item_factors

    out_dir = Path(tempfile.mkdtemp(prefix="walsrec-predict-bench-"))

    def run_walsrec():
        return model.recommend_indices(users, args.k, n_jobs=args.threads)

    def run_walsrec_gemm():
        return model.recommend_indices(users, args.k, n_jobs=args.threads, method="gemm")

    def run_predict():
        predict(model, out_dir / "batch_pred.txt", k=args.k, format="course", n_jobs=args.threads)

    def run_implicit():
        return peer.recommend(users, ui, N=args.k, filter_already_liked_items=True)

    def run_implicit_blas1():
        # implicit recommends one BLAS thread (it warns otherwise): time it both ways
        with threadpool_limits(limits=1, user_api="blas"):
            return run_implicit()

    blas_n = f"implicit (BLAS {args.threads} thr)"
    fns = {
        "walsrec": run_walsrec,
        "walsrec (method=gemm)": run_walsrec_gemm,
        "walsrec predict (file)": run_predict,
        blas_n: run_implicit,
        "implicit (BLAS 1 thr)": run_implicit_blas1,
    }
    times = {name: [] for name in fns}
    with threadpool_limits(limits=args.threads, user_api="blas"):
        ours = run_walsrec()
        theirs = run_implicit()
        for fn in fns.values():
            fn()
        for _ in range(args.repeats):
            for name, fn in fns.items():
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)

    gemm = run_walsrec_gemm()
    same = int(np.sum(np.all(ours[0] == theirs[0], axis=1)))
    same_gemm = int(np.sum(np.all(gemm[0] == theirs[0], axis=1)))
    score_err = float(np.max(np.abs(ours[1] - theirs[1])))
    med = {name: statistics.median(v) for name, v in times.items()}
    print(
        f"epinions: {n_users:,} users x {n_items:,} items, k={model.embedding_dim}, "
        f"top-{args.k}, {model.user_items.nnz:,} seen items excluded, {args.threads} threads, "
        f"{args.repeats} alternating repeats (median)"
    )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for name, value in med.items():
        print(f"  {name:<24} {value * 1000:9.1f} ms   {n_users / value:>12,.0f} users/s")
    peer_name = min((blas_n, "implicit (BLAS 1 thr)"), key=med.get)
    print(f"ratio walsrec / {peer_name} (the faster): {med['walsrec'] / med[peer_name]:.3f}")
    for name in ("walsrec (method=gemm)", "walsrec predict (file)"):
        print(f"ratio {name} / {peer_name}: {med[name] / med[peer_name]:.3f}")
    print(f"identical top-{args.k} lists: {same:,} of {n_users:,} users "
          f"({same_gemm:,} with method=gemm); max |score difference| {score_err:.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
