"""Ranking quality on MovieLens 100K under Microsoft Recommenders' protocol.

Protocol: per-user stratified random split of ../shared/data/ml100k.csv, 75% train / 25%
test (seed 42); top-10 with each user's training items excluded; MAP@10, nDCG@10,
precision@10 and recall@10 as defined in ``walsrec.metrics`` (Microsoft Recommenders'
conventions). Hyper-parameters are chosen on a validation split carved from train the same
way (75/25, seed 43), never on the test split; the chosen configuration is then refitted on
the whole train split and scored on test.

Models, each searched over a grid of its own parameters with the same budget (at most 30
configurations):

* walsrec WALS: target 1 on every rated movie, observed weight W = 1 + r, unobserved
  weight w0 = 1, over k, λ and the frequency-scaled regularisation exponent ν
  (λ_i = λ·(count_i + w0·n)^ν, Rendle et al. 2022), with a λ range per ν since ν rescales
  λ: 3 k × (3 λ for ν = 0, 0.5 and 1) = 27 configurations;
* implicit's ALS (benfred/implicit, ``use_cg=False``): confidence α·r, over k, λ and α:
  3 k × 5 λ × 2 α = 30 configurations;
* most-popular.

    python benchmarks/quality_ml100k.py [--sweeps 15] [--quick]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit warns on threaded BLAS

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import pyarrow.csv as pcsv
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from walsrec.data.interactions import Interactions
from walsrec.metrics import evaluate, evaluate_scorer, popularity_baseline
from walsrec.model.wals import WALS

ROOT = Path(__file__).resolve().parents[1]
ML100K = ROOT.parent / "shared" / "data" / "ml100k.csv"
K = 10
METRICS = (f"map@{K}", f"ndcg@{K}", f"precision@{K}", f"recall@{K}")


def stratified_split(m: sp.csr_matrix, ratio: float, seed: int):
    """Per user, a random ``ratio`` of the ratings (rounded) to the first part."""
    coo = m.tocoo()
    rng = np.random.default_rng(seed)
    key = (coo.row.astype(np.int64) << 32) | rng.integers(0, 2**32, coo.nnz, dtype=np.int64)
    order = np.argsort(key)
    rows = coo.row[order]
    starts = np.searchsorted(rows, rows, side="left")
    rank = np.empty(coo.nnz, dtype=np.int64)
    rank[order] = np.arange(coo.nnz) - starts
    counts = np.bincount(coo.row, minlength=m.shape[0])
    first = rank < np.round(ratio * counts[coo.row])

    def part(mask):
        return sp.csr_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=m.shape)

    return part(first), part(~first)


def fit_walsrec(train: sp.csr_matrix, k: int, lam: float, nu: float, sweeps: int, seed=0):
    binary = train.copy()
    binary.data[:] = 1.0
    weights = train.copy()
    weights.data = 1.0 + weights.data
    model = WALS(
        k,
        unobserved_weight=1.0,
        regularization=lam,
        regularization_exponent=nu,
        sweeps=sweeps,
        n_jobs=2,
        random_state=seed,
    )
    model.fit(binary, weights=weights)
    return model.user_factors_, model.item_factors_


def fit_implicit(train: sp.csr_matrix, k: int, lam: float, alpha: float, sweeps: int, seed=0):
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(
        factors=k,
        regularization=lam,
        alpha=alpha,
        iterations=sweeps,
        use_cg=False,
        num_threads=2,
        random_state=seed,
    )
    model.fit(train.astype(np.float32), show_progress=False)
    return np.asarray(model.user_factors), np.asarray(model.item_factors)


def search(name, fit, grid, train, valid, sweeps):
    best, best_score, seconds = None, -1.0, 0.0
    for params in grid:
        t = time.perf_counter()
        u, v = fit(train, *params, sweeps)
        seconds += time.perf_counter() - t
        score = evaluate(u, v, train, valid, k=K, metrics=[f"ndcg@{K}"])[f"ndcg@{K}"]
        if score > best_score:
            best, best_score = params, score
    print(
        f"# {name}: {len(grid)} configurations, best {best}, "
        f"validation ndcg@{K} {best_score:.4f}, {seconds:.1f} s of fitting"
    )
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweeps", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="a 4-point grid (smoke test)")
    args = parser.parse_args()
    if not ML100K.exists():
        raise SystemExit(f"{ML100K} not found")
    table = pcsv.read_csv(ML100K)
    data = Interactions.from_table(table, "user", "item", "rating").user_items
    train, test = stratified_split(data, 0.75, seed=42)
    fit_part, valid = stratified_split(train, 0.75, seed=43)
    print(
        f"# ml100k: {data.shape[0]} users, {data.shape[1]} items; train {train.nnz}, test "
        f"{test.nnz}; validation split of train: {fit_part.nnz} / {valid.nnz}; "
        f"{args.sweeps} sweeps; load average {os.getloadavg()[0]:.2f}"
    )
    ks = [32, 64] if args.quick else [32, 64, 128]
    lam_nu = [
        (10.0, 0.0),
        (30.0, 0.0),
        (100.0, 0.0),
        (0.3, 0.5),
        (1.0, 0.5),
        (3.0, 0.5),
        (0.01, 1.0),
        (0.03, 1.0),
        (0.1, 1.0),
    ]
    walsrec_grid = [(k, lam, nu) for k in ks for lam, nu in lam_nu[:: 3 if args.quick else 1]]
    implicit_grid = list(
        itertools.product(ks, [1.0, 3.0, 10.0, 30.0, 100.0][:: 2 if args.quick else 1], [1.0, 3.0])
    )
    rows = []
    with threadpool_limits(1, "blas"):
        for name, fit, grid, what in (
            ("walsrec WALS", fit_walsrec, walsrec_grid, "(k, lambda, nu)"),
            ("implicit ALS", fit_implicit, implicit_grid, "(k, lambda, alpha)"),
        ):
            params = search(f"{name} {what}", fit, grid, fit_part, valid, args.sweeps)
            u, v = fit(train, *params, args.sweeps)
            rows.append((f"{name} {what} = {params}", evaluate(u, v, train, test, k=K)))
    rows.append(("most-popular", evaluate_scorer(popularity_baseline(train), train, test, k=K)))
    print(f"| model | {' | '.join(METRICS)} |")
    print("|---|" + "---|" * len(METRICS))
    for name, scores in rows:
        print(f"| {name} | " + " | ".join(f"{scores[m]:.4f}" for m in METRICS) + " |")


if __name__ == "__main__":
    main()
