from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from walsrec.data.vocabulary import Vocabulary
from walsrec.serving.export import write_export


@pytest.fixture(scope="session")
def trained_model_dir(data_dir, tmp_path_factory):
    """MODEL_DIR of a small model trained by walsrec.train on generated visits."""
    from walsrec.training import train

    model_dir = tmp_path_factory.mktemp("serving") / "model"
    train(
        data=str(data_dir),
        model_dir=str(model_dir),
        sweeps=3,
        embedding_dim=8,
        threads=1,
        item_item="off",  # WALS alone: the tests hold its answers to u·v (the hybrid's own tests
    )  # are in test_hybrid.py)
    return model_dir


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
