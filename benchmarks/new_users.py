"""New users (strong generalization): the hybrid by fold-in against WALS, EASE and implicit.

Protocol (Liang et al. 2018, "Variational autoencoders for collaborative filtering"): the
users are shuffled (seed 98765) and cut 80/10/10 into training, validation and test users.
Models are fitted on the training users' interactions only. Each validation and test user's
interactions are cut at random (seed 98765 + user) into 80% "folded in" (what the model
gets to know about the user) and 20% held out; top-k lists exclude the folded-in items.
Metrics are Liang's: nDCG@100 (binary relevance, ideal DCG over min(100, held out)) and
Recall@k = hits / min(k, held out), averaged over test users with held-out items.

Models, every setting chosen without the test users:

* hybrid, defaults: what ``walsrec train`` does (λ auto; λ_B and β by
  :func:`walsrec.training.hybrid.choose_hybrid` on a validation split of the training
  users); a new user's scores are z(fold-in · Vᵀ) + β·z(x · B), as
  ``Recommender.recommend_for_interactions`` serves them;
* WALS fold-in: the same WALS, each new user solved exactly against the item factors
  (``WALS.project_rows``);
* EASE: λ_B chosen on the validation users (nDCG@100), walking factors of 2 from 500 as
  train's λ_B search does; x · B (sparse B beyond 20,000 items, as train fits it);
* implicit ALS, ``recalculate_user`` (benfred/implicit's fold-in): factors 128,
  regularization and alpha chosen on the validation users from a 3 × 3 grid.

    python benchmarks/new_users.py [--datasets ml100k,epinions,generated]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import SHARED, load_csv, load_generated
from walsrec.model.ease import EASE, binary_rows, blend, item_item_scores
from walsrec.model.params import estimator_from_settings
from walsrec.training.config import TrainConfig
from walsrec.training.hybrid import _walk_lambda, choose_hybrid
from walsrec.training.regularization import choose_regularization

SEED = 98765


def user_split(x: sp.csr_matrix):
    """Training, validation and test users (80/10/10), each new user's rows cut 80/20."""
    n = x.shape[0]
    order = np.random.default_rng(SEED).permutation(n)
    cut1, cut2 = int(0.8 * n), int(0.9 * n)
    train = x[np.sort(order[:cut1])]
    parts = []
    for users in (np.sort(order[cut1:cut2]), np.sort(order[cut2:])):
        rows = x[users]
        fold, held = [], []
        for i in range(rows.shape[0]):
            items = rows.indices[rows.indptr[i] : rows.indptr[i + 1]]
            rng = np.random.default_rng(SEED + int(users[i]))
            keep = np.zeros(items.size, dtype=bool)
            keep[rng.permutation(items.size)[: round(0.8 * items.size)]] = True
            fold.append(items[keep])
            held.append(items[~keep])
        parts.append((_rows(fold, x.shape[1]), _rows(held, x.shape[1])))
    return train, parts[0], parts[1]


def _rows(lists, n_items) -> sp.csr_matrix:
    indptr = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum([len(a) for a in lists], out=indptr[1:])
    indices = np.concatenate(lists).astype(np.int64) if lists else np.zeros(0, np.int64)
    m = sp.csr_matrix((np.ones(indices.size), indices, indptr), shape=(len(lists), n_items))
    m.sort_indices()
    return m


def metrics(scores: np.ndarray, fold: sp.csr_matrix, held: sp.csr_matrix) -> dict:
    """Liang et al.'s nDCG@100 and Recall@20/50 over users with held-out items."""
    scores = np.array(scores, dtype=np.float64)
    scores[fold.nonzero()] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :100]
    discount = 1.0 / np.log2(np.arange(2, 102))
    out = {"ndcg@100": [], "recall@20": [], "recall@50": []}
    for i in range(scores.shape[0]):
        truth = held.indices[held.indptr[i] : held.indptr[i + 1]]
        if truth.size == 0:
            continue
        hit = np.isin(top[i], truth)
        ideal = discount[: min(100, truth.size)].sum()
        out["ndcg@100"].append(float((hit * discount).sum() / ideal))
        for k in (20, 50):
            out[f"recall@{k}"].append(float(hit[:k].sum() / min(k, truth.size)))
    return {name: float(np.mean(v)) for name, v in out.items()}


def run(name: str, x: sp.csr_matrix) -> None:
    x = binary_rows(x, np.float64)
    train, (vfold, vheld), (tfold, theld) = user_split(x)
    print(
        f"\n## {name}: {x.shape[0]:,} users ({train.shape[0]:,} training, {vfold.shape[0]:,} "
        f"validation, {tfold.shape[0]:,} test), {x.shape[1]:,} items; training users' "
        f"interactions {train.nnz:,}",
        flush=True,
    )
    rows = {}
    # WALS defaults and the hybrid, as walsrec train fits them
    t = time.perf_counter()
    lam = choose_regularization(train, {}, k=10, n_jobs=2).value
    wals = estimator_from_settings(
        {"regularization": lam},
        train,
        defaults=TrainConfig().to_dict(),
        sweeps=TrainConfig.DEFAULT_SWEEPS,
        n_jobs=2,
        random_state=0,
    ).fit(train)
    wals_s = time.perf_counter() - t
    t = time.perf_counter()
    choice = choose_hybrid(train, {"regularization": lam}, k=10, n_jobs=2)
    b = EASE(choice.item_regularization).fit(train).weights_ if choice.item_item else None
    hybrid_s = time.perf_counter() - t
    print(f"# WALS λ {lam:g} ({wals_s:.1f} s); hybrid: {choice.reason} ({hybrid_s:.1f} s)")
    vt = np.ascontiguousarray(wals.item_factors_.T, dtype=np.float32)

    def fold_in(fold):
        return np.asarray(wals.project_rows(fold), dtype=np.float32) @ vt

    wals_scores = fold_in(tfold)
    rows["WALS fold-in"] = (metrics(wals_scores, tfold, theld), wals_s)
    hybrid = (
        blend(wals_scores.copy(), item_item_scores(binary_rows(tfold), b), choice.blend_weight)
        if b is not None
        else wals_scores
    )
    rows["hybrid, defaults (fold-in)"] = (metrics(hybrid, tfold, theld), wals_s + hybrid_s)

    # EASE, λ_B on the validation users
    t = time.perf_counter()

    def ease_score(lam_b):
        weights = EASE(lam_b).fit(train).weights_
        value = metrics(item_item_scores(binary_rows(vfold), weights), vfold, vheld)["ndcg@100"]
        return value, weights

    lam_b, weights = _walk_lambda(ease_score, {})
    ease_scores = item_item_scores(binary_rows(tfold), weights)
    form = "sparse" if sp.issparse(weights) else "dense"
    rows[f"EASE (λ_B {lam_b:g}, {form} B)"] = (
        metrics(ease_scores, tfold, theld),
        time.perf_counter() - t,
    )

    # implicit's fold-in, its settings on the validation users
    t = time.perf_counter()
    best = (-1.0, None)
    for reg in (0.1, 1.0, 10.0):
        for alpha in (1.0, 10.0, 40.0):
            model = _implicit(train, reg, alpha)
            u = model.recalculate_user(np.arange(vfold.shape[0]), vfold.astype(np.float32))
            value = metrics(u @ model.item_factors.T, vfold, vheld)["ndcg@100"]
            if value > best[0]:
                best = (value, (reg, alpha, model))
    reg, alpha, model = best[1]
    u = model.recalculate_user(np.arange(tfold.shape[0]), tfold.astype(np.float32))
    label = f"implicit ALS, recalculate_user (reg {reg:g}, alpha {alpha:g})"
    rows[label] = (metrics(u @ model.item_factors.T, tfold, theld), time.perf_counter() - t)

    print(f"| {name} | ndcg@100 | recall@20 | recall@50 | fit s |")
    print("|---|---|---|---|---|")
    for label, (m, seconds) in rows.items():
        print(
            f"| {label} | {m['ndcg@100']:.4f} | {m['recall@20']:.4f} | {m['recall@50']:.4f} | "
            f"{seconds:.1f} |",
            flush=True,
        )


def _implicit(train, reg, alpha):
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(
        factors=128, regularization=reg, alpha=alpha, iterations=15, num_threads=2, random_state=0
    )
    model.fit(train.astype(np.float32), show_progress=False)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="ml100k,epinions,generated")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        for name in args.datasets.split(","):
            if name == "generated":
                split = load_generated()
            else:
                path = SHARED / ("ml100k.csv" if name == "ml100k" else "epinions_trust.csv")
                if not path.exists():
                    print(f"# {name}: {path} not found, skipped")
                    continue
                split = load_csv(path)
            run(name, (split.train + split.test).tocsr())


if __name__ == "__main__":
    main()
