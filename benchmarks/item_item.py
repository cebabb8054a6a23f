"""The hybrid's item-item part: sparse against dense B, and what it adds to training.

Three parts:

* ``quality``: EASE alone and the hybrid, with dense (exact) B and with the sparse form
  (the ``density`` × n_items largest weights, one global threshold), under
  ``benchmarks/quality.py``'s protocol (Microsoft Recommenders' 75/25 per-user split, seed
  42; top-10, training items excluded). λ_B and β are chosen on a validation split of train
  (:func:`walsrec.training.hybrid.choose_hybrid`, dense B), then both forms are fitted on
  train at that λ_B and scored on test. On epinions (36,165 items, 4,718 users) the exact
  reference is computed through the users (Woodbury), as the sparse form's columns are.
* ``time``: ``walsrec.train`` with train's defaults on a DATA_DIR, ``--item-item off``
  against ``auto``: wall seconds and export bytes. Data: ML-100K, the demo's generated
  visits and generated visits with a 20,000-item catalogue (the dense form's limit).
* ``fit``: one dense EASE fit (``walsrec.model.ease.gram_matrix`` then ``ease_dense``) on a
  random binary 50,000-user matrix with 1,000,000 entries, at 10,000 and 20,000 items.

    python benchmarks/item_item.py [--parts quality,time,fit] [--datasets ml100k,generated,epinions]
                                   [--density 100] [--big-visits 1000000]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.csv as pcsv
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import SHARED, K, Split, fit_walsrec, load_csv, load_generated
from walsrec.metrics import evaluate_scorer
from walsrec.model.ease import EASE, binary_rows, blend, item_item_scores
from walsrec.training.hybrid import choose_hybrid
from walsrec.training.regularization import choose_regularization

METRIC = f"ndcg@{K}"


def _nbytes(a) -> int:
    if sp.issparse(a):
        return int(a.data.nbytes + a.indices.nbytes + a.indptr.nbytes)
    return int(np.asarray(a).nbytes)


def _exact_scorer(train: sp.csr_matrix, lam: float):
    """x·B with the exact B: dense through the items, or through the users (Woodbury) when
    there are more items than users (metrics' EASE baseline, which never forms B then)."""
    from walsrec.metrics import ease_baseline

    return ease_baseline(train, lam, max_items=max(train.shape))


def quality(name: str, split: Split, density: int) -> None:
    n_users, n_items = split.train.shape
    print(f"\n## {name}: {n_users:,} users, {n_items:,} items; train {split.train.nnz:,}")
    t = time.perf_counter()
    lam = choose_regularization(split.train, {}, k=K, n_jobs=2).value
    u, v = fit_walsrec({"regularization": lam}, split.train, 10)
    vt = np.ascontiguousarray(v.T)
    forced = choose_hybrid(
        split.train, {"regularization": lam}, item_item="on", k=K, n_jobs=2
    )  # β > 0 even where auto would keep WALS alone: the forms are compared in the blend
    print(
        f"# λ {lam:g}; λ_B and β on validation: {forced.reason} ({time.perf_counter() - t:.1f} s)"
    )
    lam_b, beta = forced.item_regularization, forced.blend_weight
    x = binary_rows(split.train)
    rows = {}
    t = time.perf_counter()
    exact = _exact_scorer(split.train, lam_b)
    dense_s = time.perf_counter() - t
    rows["EASE, exact B"] = (
        evaluate_scorer(exact, split.train, split.test, k=K, metrics=[METRIC])[METRIC],
        dense_s,
        4 * n_items**2,  # a dense float32 B's bytes
    )
    t = time.perf_counter()
    sparse = EASE(lam_b, form="sparse", density=density).fit(split.train).weights_
    sparse_s = time.perf_counter() - t
    rows[f"EASE, sparse B ({density} per item)"] = (
        evaluate_scorer(
            lambda users: item_item_scores(x[users], sparse),
            split.train,
            split.test,
            k=K,
            metrics=[METRIC],
        )[METRIC],
        sparse_s,
        sparse,
    )
    wals = evaluate_scorer(lambda users: u[users] @ vt, split.train, split.test, k=K)[METRIC]
    for label, scorer in (
        ("hybrid, exact B", exact),
        (
            f"hybrid, sparse B ({density} per item)",
            lambda users: item_item_scores(x[users], sparse),
        ),
    ):
        got = evaluate_scorer(
            lambda users, s=scorer: blend(u[users] @ vt, np.asarray(s(users), np.float32), beta),
            split.train,
            split.test,
            k=K,
            metrics=[METRIC],
        )[METRIC]
        rows[label] = (got, None, None)
    print(f"| {name}, λ_B {lam_b:g}, β {beta:g} | {METRIC} | % of exact | fit s | B bytes |")
    print("|---|---|---|---|---|")
    print(f"| WALS defaults | {wals:.4f} | | | |")
    for label, (value, seconds, weights) in rows.items():
        ref = rows["hybrid, exact B" if label.startswith("hybrid") else "EASE, exact B"][0]
        size = (
            ""
            if weights is None
            else f"{weights if isinstance(weights, int) else _nbytes(weights):,}"
        )
        secs = f"{seconds:.1f}" if seconds is not None else ""
        print(f"| {label} | {value:.4f} | {100 * value / ref:.1f} | {secs} | {size} |")


def _prepare(name: str, root: Path, big_visits: int) -> Path:
    from walsrec.data.prepare import prepare
    from walsrec.datasets import VISITS_PREPARE, generate_visits

    out = root / name
    if name == "ml100k":
        prepare([str(SHARED / "ml100k.csv")], out, user_col="user", item_col="item",
                rating_col="rating", eval_fraction=0.1, split="user")  # fmt: skip
        return out
    if name == "generated":
        table = generate_visits(200_000, seed=0)
    else:
        table = generate_visits(big_visits, n_users=big_visits // 20, n_items=20_000, seed=0)
    pcsv.write_csv(table, root / f"{name}.csv")
    prepare([str(root / f"{name}.csv")], out, **VISITS_PREPARE, eval_fraction=0.1, split="user")
    return out


def _export_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def timing(names: list[str], big_visits: int) -> None:
    from walsrec.training import train

    print(f"\n## time: walsrec.train defaults, item_item off against auto ({big_visits:,} visits "
          "in the 20k-item set)")  # fmt: skip
    print("| data | users × items | off s | auto s | ratio | choice | export off B | auto B |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in names:
            data = _prepare(name, root, big_visits)
            runs = {}
            for item_item in ("off", "auto"):
                t = time.perf_counter()
                result = train(data=str(data), model_dir=str(root / f"{name}-{item_item}"),
                               item_item=item_item, threads=2)  # fmt: skip
                runs[item_item] = (time.perf_counter() - t, result)
            off_s, off = runs["off"]
            auto_s, auto = runs["auto"]
            import json

            record = json.loads((auto.model_dir / "item_item.json").read_text())
            shape = off.model.user_factors_.shape[0], off.model.item_factors_.shape[0]
            print(
                f"| {name} | {shape[0]:,} × {shape[1]:,} | {off_s:.1f} | {auto_s:.1f} | "
                f"{auto_s / off_s:.2f} | {record['reason']} ({record['seconds']:.1f} s) | "
                f"{_export_bytes(off.export_path):,} | {_export_bytes(auto.export_path):,} |",
                flush=True,
            )


def fit_time() -> None:
    from walsrec.model.ease import ease_dense, gram_matrix

    print("\n## fit: one dense EASE fit, 50,000 users, 1,000,000 entries, λ_B 500, float32")
    for n_items in (10_000, 20_000):
        density = 1_000_000 / (50_000 * n_items)
        x = binary_rows(sp.random(50_000, n_items, density=density, format="csr", random_state=0))
        t = time.perf_counter()
        gram = gram_matrix(x)
        gram_s = time.perf_counter() - t
        t = time.perf_counter()
        weights = ease_dense(x, 500.0, np.float32, gram=gram)
        fit_s = time.perf_counter() - t
        print(
            f"{n_items:,} items: XᵀX {gram_s:.1f} s, potrf + potri + B {fit_s:.1f} s, "
            f"total {gram_s + fit_s:.1f} s, B {weights.nbytes:,} B",
            flush=True,
        )
        del gram, weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="quality,time,fit")
    parser.add_argument("--datasets", default="ml100k,generated,epinions")
    parser.add_argument("--density", type=int, default=100)
    parser.add_argument("--big-visits", type=int, default=1_000_000)
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    names = args.datasets.split(",")
    parts = args.parts.split(",")
    if "quality" in parts:
        with threadpool_limits(1, "blas"):
            for name in names:
                if name == "generated":
                    quality(name, load_generated(), args.density)
                    continue
                path = SHARED / ("ml100k.csv" if name == "ml100k" else "epinions_trust.csv")
                if not path.exists():
                    print(f"# {name}: {path} not found, skipped")
                    continue
                quality(name, load_csv(path), args.density)
    if "time" in parts:
        wanted = [n for n in names if n != "epinions"] + ["generated-20k"]
        if not (SHARED / "ml100k.csv").exists():
            wanted = [n for n in wanted if n != "ml100k"]
        timing(wanted, args.big_visits)
    if "fit" in parts:
        fit_time()


if __name__ == "__main__":
    main()
