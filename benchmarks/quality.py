"""Ranking quality of walsrec's defaults and of ``walsrec tune`` against the field.

Protocol (Microsoft Recommenders'): each dataset is split per user, 75% train / 25% test,
exactly as ``recommenders.datasets.python_splitters.python_stratified_split(data, 0.75,
seed=42)`` does it (one uniform draw per row in file order from ``np.random.seed(42)``; a
user's rows ranked by it, the top 75% to train). Top-10 lists exclude each user's training
items; nDCG@10 and the other metrics are ``walsrec.metrics``' (Microsoft Recommenders'
definitions). Hyper-parameters are chosen on train only, never on test; the chosen
configuration is refitted on the whole train split and scored on test.

Rows of the table, per dataset:

* walsrec, defaults: ``walsrec train``'s settings untouched (TrainConfig's defaults; its
  time includes choosing λ, ``regularization = "auto"``), with ``item_item = "off"``;
* walsrec hybrid, defaults: the same with train's default ``item_item = "auto"``: λ_B and
  the blend weight β chosen on a validation split of train
  (:func:`walsrec.training.hybrid.choose_hybrid`), EASE refitted on train, the blend
  scored (the WALS defaults' row when β = 0 wins); its time includes the WALS defaults';
* walsrec, tuned: ``walsrec.tune`` with its defaults (default search space, each trial the
  mean over its validation splits of train) and ``--trials`` trials, the best refitted on
  train;
* implicit ALS (benfred/implicit, its default conjugate-gradient solver), the same budget:
  Optuna's TPE sampler over factors (16–256), regularization (1e-3–1e3) and alpha
  (0.1–100), raw values as confidence, each trial scored on the same validation splits as
  walsrec's (same seeds, fraction and number);
* EASE (Steck 2019, ``walsrec.metrics.ease_baseline``), λ chosen from a grid on the
  protocol's validation split of train (75/25 stratified like the test split, seed 42);
* most-popular.

    python benchmarks/quality.py [--datasets ml100k,epinions,generated] [--trials 100]
                                 [--trials-large 30] [--sweeps 15] [--skip-tuning]

``--trials`` is the budget on ML-100K (the issue's target: at most 100 trials to nDCG@10 ≥
0.50), ``--trials-large`` on epinions (36,165 items: a trial there costs ~15× one on
ML-100K) and on the generated visits. Needs ../shared/data (datasets absent there are
skipped); the generated data is made on the fly (the demo's, 200,000 visits).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit warns on threaded BLAS

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.csv as pcsv
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from walsrec.data.interactions import Interactions
from walsrec.data.prepare import PreparedData
from walsrec.metrics import ease_baseline, evaluate, evaluate_scorer, popularity_baseline
from walsrec.model.ease import EASE, binary_rows, blend, item_item_scores
from walsrec.model.wals import WALS
from walsrec.training.config import TrainConfig, column_weights, wals_params
from walsrec.training.hybrid import choose_hybrid
from walsrec.training.regularization import choose_regularization
from walsrec.tuning.study import tune

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
K = 10
METRICS = (f"ndcg@{K}", f"map@{K}", f"precision@{K}", f"recall@{K}")
EASE_GRID = (10.0, 30.0, 100.0, 300.0, 500.0, 1000.0, 3000.0)


def stratified_split(rows: np.ndarray, ratio: float = 0.75, seed: int = 42) -> np.ndarray:
    """Microsoft Recommenders' ``python_stratified_split``: True for the rows that go to the
    first part. ``rows`` holds each record's user, in file order."""
    # their splitter seeds NumPy's global generator, a RandomState: the same stream
    draw = np.random.RandomState(seed).rand(rows.shape[0])
    # rank within the user by draw, descending, ties by position ("first")
    order = np.lexsort((np.arange(rows.shape[0]), -draw, rows))
    sorted_rows = rows[order]
    starts = np.searchsorted(sorted_rows, sorted_rows, side="left")
    rank = np.empty(rows.shape[0], dtype=np.int64)
    rank[order] = np.arange(rows.shape[0]) - starts + 1
    counts = np.bincount(rows)[rows]
    return rank / counts <= ratio


def _csr(rows, cols, values, shape) -> sp.csr_matrix:
    m = sp.csr_matrix((values, (rows, cols)), shape=shape)
    m.sum_duplicates()
    return m


class Split:
    """train/test and the validation split of train, as index triplets."""

    def __init__(self, rows, cols, values, shape):
        first = stratified_split(rows)
        self.train = _csr(rows[first], cols[first], values[first], shape)
        self.test = _csr(rows[~first], cols[~first], values[~first], shape)
        r, c, v = rows[first], cols[first], values[first]
        inner = stratified_split(r)
        self.fit = _csr(r[inner], c[inner], v[inner], shape)
        self.valid = _csr(r[~inner], c[~inner], v[~inner], shape)


def load_csv(path: Path) -> Split:
    table = pcsv.read_csv(path)
    data = Interactions.from_table(table, "user", "item", "rating")
    users = data.users.indices(table.column("user"))
    items = data.items.indices(table.column("item"))
    values = np.asarray(table.column("rating").to_numpy(), dtype=np.float64)
    return Split(users, items, values, data.user_items.shape)


def load_generated(n: int = 200_000) -> Split:
    """The demo's data: generated visits, prepared as the demo does (scaled-median)."""
    from walsrec.data.prepare import load_prepared, prepare
    from walsrec.datasets import VISITS_PREPARE, generate_visits

    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "visits.csv"
        pcsv.write_csv(generate_visits(n, seed=0), csv)
        prepare([str(csv)], Path(tmp) / "data", **VISITS_PREPARE, eval_fraction=0.0)
        m = load_prepared(Path(tmp) / "data").train.user_items.tocoo()
    return Split(m.row.astype(np.int64), m.col.astype(np.int64), m.data, m.shape)


def _nbytes(a) -> int:
    """Bytes an array (or a CSR matrix's three arrays) takes in an export."""
    if sp.issparse(a):
        return int(a.data.nbytes + a.indices.nbytes + a.indptr.nbytes)
    return int(np.asarray(a).nbytes)


def score(u, v, train, held) -> dict:
    return evaluate(u, v, train, held, k=K, metrics=list(METRICS))


def fit_walsrec(settings: dict, train, sweeps: int, seed: int = 0):
    model = WALS(
        **wals_params(settings, train),
        col_weights=column_weights(settings, train),
        sweeps=sweeps,
        n_jobs=2,
        random_state=seed,
    )
    model.fit(train)
    return model.user_factors_, model.item_factors_


def fit_implicit(params: dict, train, sweeps: int, seed: int = 0):
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(
        factors=params["factors"],
        regularization=params["regularization"],
        alpha=params["alpha"],
        iterations=sweeps,
        num_threads=2,
        random_state=seed,
    )
    model.fit(train.astype(np.float32), show_progress=False)
    return np.asarray(model.user_factors), np.asarray(model.item_factors)


def tune_implicit(split: Split, trials: int, sweeps: int) -> tuple[dict, float]:
    """TPE over implicit's three settings, each trial scored as ``walsrec.tune`` scores its
    own: the mean nDCG@10 over the same validation splits of train (same seeds, fraction
    and number)."""
    import inspect

    import optuna

    from walsrec.tuning.study import tune as walsrec_tune
    from walsrec.tuning.study import validation_split

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    defaults = inspect.signature(walsrec_tune).parameters
    fraction = defaults["validation_fraction"].default
    splits = [validation_split(split.train, fraction, f) for f in range(defaults["folds"].default)]

    def objective(trial):
        params = {
            "factors": trial.suggest_int("factors", 16, 256, log=True),
            "regularization": trial.suggest_float("regularization", 1e-3, 1e3, log=True),
            "alpha": trial.suggest_float("alpha", 0.1, 100.0, log=True),
        }
        scores = []
        for fit, valid in splits:
            u, v = fit_implicit(params, fit, sweeps)
            scores.append(evaluate(u, v, fit, valid, k=K, metrics=[f"ndcg@{K}"])[f"ndcg@{K}"])
        return float(np.mean(scores))

    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=10)
    )
    study.optimize(objective, n_trials=trials)
    return study.best_params, study.best_value


def choose_ease(split: Split) -> tuple[float, float]:
    """EASE's λ from EASE_GRID, by nDCG@10 on the protocol's own validation split of train
    (75/25 stratified, seed 42: the split the header line counts), not on tune's splits."""
    best = (math.nan, -1.0)
    for lam in EASE_GRID:
        got = evaluate_scorer(
            ease_baseline(split.fit, lam), split.fit, split.valid, k=K, metrics=[f"ndcg@{K}"]
        )[f"ndcg@{K}"]
        if got > best[1]:
            best = (lam, got)
    return best


def run(
    name: str, split: Split, trials: int, sweeps: int, skip_tuning: bool = False
) -> list[tuple[str, dict, float]]:
    rows = []
    n_users, n_items = split.train.shape
    print(
        f"\n## {name}: {n_users:,} users, {n_items:,} items; train {split.train.nnz:,}, test "
        f"{split.test.nnz:,}; validation split of train {split.fit.nnz:,} / "
        f"{split.valid.nnz:,}; load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    defaults = TrainConfig()
    t = time.perf_counter()
    # regularization "auto": chosen by validation inside train, as walsrec train does
    choice = choose_regularization(split.train, {}, k=K, seed=defaults.seed, n_jobs=2)
    u, v = fit_walsrec({"regularization": choice.value}, split.train, defaults.DEFAULT_SWEEPS)
    print(
        f"# walsrec defaults: regularization auto chose {choice.value:g} on {choice.folds} "
        f"validation split(s) in {choice.seconds:.1f} s "
        f"({', '.join(f'{lam:g} {s:.4f}' for lam, s in choice.scores.items())})",
        flush=True,
    )
    wals_seconds = time.perf_counter() - t
    rows.append(("walsrec, defaults", score(u, v, split.train, split.test), wals_seconds))

    # the hybrid, train's item_item "auto": λ_B and β chosen on a validation split of train
    t = time.perf_counter()
    hybrid = choose_hybrid(split.train, {"regularization": choice.value}, k=K, n_jobs=2)
    got, extra_bytes = rows[0][1], 0
    if hybrid.item_item:
        weights = EASE(hybrid.item_regularization).fit(split.train).weights_
        extra_bytes = _nbytes(weights)
        x = binary_rows(split.train)
        vt = np.ascontiguousarray(v.T)
        got = evaluate_scorer(
            lambda users: blend(
                u[users] @ vt, item_item_scores(x[users], weights), hybrid.blend_weight
            ),
            split.train,
            split.test,
            k=K,
            metrics=list(METRICS),
        )
    seconds = time.perf_counter() - t
    print(
        f"# walsrec hybrid defaults: {hybrid.reason}; λ_B "
        f"{', '.join(f'{lam:g} {s:.4f}' for lam, s in hybrid.regularization_scores.items())}; "
        f"β {', '.join(f'{b:g} {s:.4f}' for b, s in hybrid.blend_scores.items())}; "
        f"choice {hybrid.seconds:.1f} s, with the final EASE fit {seconds:.1f} s: training "
        f"{(wals_seconds + seconds) / wals_seconds:.2f}x the WALS defaults'; export "
        f"{_nbytes(u) + _nbytes(v):,} B of factors + {extra_bytes:,} B of B",
        flush=True,
    )
    rows.append(("walsrec hybrid, defaults", got, wals_seconds + seconds))

    if skip_tuning:
        return _finish(name, split, rows)
    t = time.perf_counter()
    prepared = PreparedData(
        Interactions(split.train, *_vocabularies(split.train.shape)), None, {}, Path(name)
    )
    result = tune(prepared, trials=trials, sweeps=sweeps, seed=0, threads=2)
    best = result.best_params
    u, v = fit_walsrec(best, split.train, sweeps)
    seconds = time.perf_counter() - t
    print(f"# walsrec tune, {trials} trials: validation {result.best_value:.4f} with {best}")
    rows.append(
        (f"walsrec, tuned ({trials} trials)", score(u, v, split.train, split.test), seconds)
    )

    t = time.perf_counter()
    params, value = tune_implicit(split, trials, sweeps)
    u, v = fit_implicit(params, split.train, sweeps)
    seconds = time.perf_counter() - t
    print(f"# implicit, {trials} trials: validation {value:.4f} with {params}")
    rows.append((f"implicit ALS ({trials} trials)", score(u, v, split.train, split.test), seconds))

    return _finish(name, split, rows)


def _finish(name: str, split: Split, rows: list) -> list:
    """EASE and most-popular rows, then the table."""
    n_users, n_items = split.train.shape
    t = time.perf_counter()
    if min(n_users, n_items) <= 20_000:
        lam, value = choose_ease(split)
        got = evaluate_scorer(
            ease_baseline(split.train, lam), split.train, split.test, k=K, metrics=list(METRICS)
        )
        print(f"# EASE: lambda {lam:g} chosen on validation ({value:.4f})")
        rows.append((f"EASE (λ = {lam:g})", got, time.perf_counter() - t))
    rows.append(
        (
            "most-popular",
            evaluate_scorer(
                popularity_baseline(split.train), split.train, split.test, k=K, metrics=METRICS
            ),
            0.0,
        )
    )
    print(f"| {name} | {' | '.join(METRICS)} | seconds |")
    print("|---|" + "---|" * (len(METRICS) + 1))
    for label, scores, seconds in rows:
        cells = " | ".join(f"{scores[m]:.4f}" for m in METRICS)
        print(f"| {label} | {cells} | {seconds:.1f} |")
    tuned = [r for r in rows if r[0].startswith("walsrec, tuned")]
    if tuned:
        d = rows[0][1][f"ndcg@{K}"]
        print(f"# defaults / tuned ndcg@{K}: {d / tuned[0][1][f'ndcg@{K}']:.3f}", flush=True)
    return rows


def _vocabularies(shape):
    from walsrec.data.vocabulary import Vocabulary

    return (
        Vocabulary([str(i) for i in range(shape[0])], "users"),
        Vocabulary([str(i) for i in range(shape[1])], "items"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="ml100k,epinions,generated")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--trials-large", type=int, default=30)
    parser.add_argument("--sweeps", type=int, default=15)
    parser.add_argument(
        "--skip-tuning",
        action="store_true",
        help="leave out the tuned rows (walsrec tune, implicit): minutes instead of half an hour",
    )
    args = parser.parse_args()
    with threadpool_limits(1, "blas"):
        for name in args.datasets.split(","):
            if name == "generated":
                run("generated", load_generated(), args.trials_large, args.sweeps, args.skip_tuning)
                continue
            path = SHARED / ("ml100k.csv" if name == "ml100k" else "epinions_trust.csv")
            if not path.exists():
                print(f"# {name}: {path} not found, skipped")
                continue
            trials = args.trials if name == "ml100k" else args.trials_large
            run(name, load_csv(path), trials, args.sweeps, args.skip_tuning)


if __name__ == "__main__":
    main()
