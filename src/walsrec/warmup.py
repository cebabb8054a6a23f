"""``walsrec warmup``: compile the kernels the commands run into numba's on-disk cache, once.

walsrec's numerical kernels are compiled by numba the first time a process calls them and
cached on disk (beside the package, or under ``NUMBA_CACHE_DIR``); later processes load
them in milliseconds. :func:`warm_up` runs a small version of everything the commands do
(prepare with TFRecords, train with λ auto and held-out evaluation, both solvers, float32
and float64, fold-in, recommend, similar items, batch prediction) on generated data in a
temporary folder, so that a Docker image, a cluster node or CI pays the compile time at
build time rather than in front of a user. One kernel is left out: the reordering of
TFRecord shards whose records are out of key order (as TensorFlow may write them). The
cache is valid for the walsrec version and the CPU it was built on (numba keys it by
both).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["warm_up"]


def warm_up(progress: Callable[[str], None] | None = None) -> dict:
    """Compile (or load from the cache) the kernels walsrec's commands run.

    Parameters
    ----------
    progress : callable, optional
        Receives a one-line message before each part.

    Returns
    -------
    dict
        ``seconds`` (the whole run) and ``parts``: seconds per part, in order.
    """
    say = progress or (lambda message: None)
    started = time.perf_counter()
    parts: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="walsrec-warmup-") as tmp:
        root = Path(tmp)
        for name, part in (
            ("prepare", _prepare),
            ("train", _train),
            ("solvers and dtypes", _solvers),
            ("serve and predict", _serve),
        ):
            say(f"warmup: {name}")
            t = time.perf_counter()
            part(root)
            parts[name] = round(time.perf_counter() - t, 3)
    return {"seconds": round(time.perf_counter() - started, 3), "parts": parts}


def _prepare(root: Path) -> None:
    """Readers, the split and the TFRecord writer and reader (prepare's path)."""
    import pyarrow.csv as pcsv

    from walsrec.data.prepare import prepare
    from walsrec.data.tfrecord import read_tfrecords
    from walsrec.datasets import VISITS_PREPARE, generate_visits

    pcsv.write_csv(generate_visits(3_000, n_users=200, n_items=120, seed=0), root / "v.csv")
    prepare(
        [str(root / "v.csv")],
        root / "data",
        **VISITS_PREPARE,
        eval_fraction=0.2,
        split="user",
        seed=0,
        overwrite=True,
    )
    read_tfrecords(str(root / "data" / "train" / "items_for_user-*"), 120)


def _train(root: Path) -> None:
    """``walsrec train`` with its defaults (λ auto, evaluation, baseline, export)."""
    from walsrec.training.loop import train

    # WALS alone: its serving kernels (the top-k that stops early by norm) are the ones to
    # compile; the hybrid's serving uses the plain top-k, and EASE is LAPACK, not numba
    train(
        data=str(root / "data"),
        model_dir=str(root / "model"),
        sweeps=2,
        threads=None,
        item_item="off",
    )


def _solvers(root: Path) -> None:
    """Both solvers in both dtypes, fold-in, and the held-out metrics (of factors in both
    dtypes, and of given top-k lists)."""
    import numpy as np

    from walsrec.data.prepare import load_prepared
    from walsrec.metrics import evaluate, evaluate_topk
    from walsrec.model.wals import WALS

    data = load_prepared(root / "data")
    ui = data.train.user_items
    for dtype in ("float32", "float64"):
        for solver in ("cholesky", "cg"):
            model = WALS(8, solver=solver, dtype=dtype, sweeps=1, random_state=0).fit(ui)
        model.project_rows(ui[:3])
        evaluate(model.user_factors_, model.item_factors_, ui, data.eval.user_items, k=5)
        model.recommend(0, ui, k=5)
        model.similar_items(0, k=5)
    top = np.tile(np.arange(5, dtype=np.int64), (ui.shape[0], 1))
    evaluate_topk(top, ui, data.eval.user_items, k=5)


def _serve(root: Path) -> None:
    """The Recommender's ranking (by norm and by GEMM), fold-in and batch prediction."""
    import numpy as np

    from walsrec.serving.model import load_model
    from walsrec.serving.predict import predict

    model = load_model(root / "model")
    user = model.users.id(0)
    model.recommend(user, k=5)
    model.similar_items(model.items.id(0), k=5)
    model.recommend_for_interactions([(model.items.id(0), 1.0)], k=5)
    for method in ("norm", "gemm"):
        model.recommend_indices(np.arange(min(20, model.n_users)), k=5, method=method)
    model.warm_up()
    predict(root / "model", root / "top.csv", k=5)
