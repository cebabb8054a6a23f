from __future__ import annotations

import numpy as np
import pyarrow.csv as pcsv
import pytest
import scipy.sparse as sp

from walsrec.data.vocabulary import Vocabulary
from walsrec.serving.export import write_export


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory):
    """MODEL_DIR of a small model trained by walsrec.train on generated visits."""
    from walsrec.data.prepare import prepare
    from walsrec.datasets import generate_visits
    from walsrec.training import train

    root = tmp_path_factory.mktemp("serving")
    pcsv.write_csv(generate_visits(20_000, n_users=600, n_items=250, seed=11), root / "v.csv")
    prepare(
        str(root / "v.csv"),
        root / "data",
        user_col="visitor_id",
        item_col="article_id",
        rating_col="session_duration",
        rating_transform="scaled-median",
        eval_fraction=0.2,
        split="user",
        seed=0,
    )
    train(
        data=str(root / "data"), model_dir=str(root / "model"), sweeps=3, embedding_dim=8, threads=1
    )
    return root / "model"


@pytest.fixture(scope="session")
def trained_export(trained_model_dir):
    from walsrec.serving.export import list_exports

    return list_exports(trained_model_dir / "export")[-1]


@pytest.fixture(scope="session")
def model(trained_export):
    from walsrec.serving.model import load_model

    m = load_model(trained_export)
    m.warm_up()
    return m


def make_export(model_dir, *, seed=0, n_users=40, n_items=30, k=4, hyper=None, density=0.15):
    """A hand-made export with random factors (written by write_export)."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n_users, k)).astype(np.float32)
    v = rng.standard_normal((n_items, k)).astype(np.float32)
    ui = sp.random(n_users, n_items, density=density, format="csr", random_state=seed)
    ui.data[:] = rng.uniform(0.5, 2.0, ui.nnz)
    return write_export(
        model_dir,
        user_factors=u,
        item_factors=v,
        users=Vocabulary([f"u{i}" for i in range(n_users)], "users"),
        items=Vocabulary([f"i{i}" for i in range(n_items)], "items"),
        user_items=ui,
        hyperparameters=hyper
        or {"embedding_dim": k, "unobserved_weight": 0.1, "regularization": 0.1},
        metrics={"ndcg@10": 0.5},
    )
