"""EASE baseline: held to per-column ridge regressions, and to its published quality."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from walsrec.errors import InvalidParameterError
from walsrec.metrics import ease_baseline, evaluate_scorer, popularity_baseline


def test_ease_columns_are_ridge_regressions_on_the_other_items():
    """Column j of B minimises ‖X_j − X_{−j} b‖² + λ‖b‖² (Steck's closed form)."""
    x = sp.random(50, 12, density=0.3, format="csr", random_state=0)
    x.data[:] = 3.0  # values do not matter: EASE fits the binary matrix
    lam = 2.5
    scorer = ease_baseline(x, regularization=lam)
    b = scorer.weights
    xb = x.toarray() > 0
    xb = xb.astype(np.float64)
    for j in range(x.shape[1]):
        others = np.delete(np.arange(x.shape[1]), j)
        a = xb[:, others]
        want = np.linalg.solve(a.T @ a + lam * np.eye(len(others)), a.T @ xb[:, j])
        np.testing.assert_allclose(b[others, j], want, rtol=1e-4, atol=1e-6)
        assert b[j, j] == 0.0
    scores = scorer(np.array([3, 0, 7]))
    assert scores.shape == (3, 12) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, xb[[3, 0, 7]] @ b, rtol=1e-5, atol=1e-6)


def test_ease_through_the_users_equals_ease_through_the_items():
    """More items than users: the Woodbury form gives the item form's scores."""
    x = sp.random(15, 40, density=0.25, format="csr", random_state=1)
    wide = ease_baseline(x, regularization=3.0)
    assert not hasattr(wide, "weights")  # the users' form was taken
    users = np.arange(15)
    xb = (x.toarray() > 0).astype(np.float64)
    gram = xb.T @ xb + 3.0 * np.eye(40)
    p = np.linalg.inv(gram)
    b = np.eye(40) - p / np.diag(p)[None, :]
    np.testing.assert_allclose(wide(users), xb @ b, rtol=1e-4, atol=1e-5)


def test_ease_errors_name_the_parameter():
    x = sp.random(5, 4, density=0.5, format="csr", random_state=0)
    with pytest.raises(InvalidParameterError, match=r"'regularization' .* > 0. Got 0 instead"):
        ease_baseline(x, regularization=0)
    with pytest.raises(
        InvalidParameterError,
        match=r"min\(n_users, n_items\) = 4; the 'max_items' parameter allows 3. Got 5 users",
    ):
        ease_baseline(x, max_items=3)
    wide = sp.random(4, 30, density=0.5, format="csr", random_state=0)
    with pytest.raises(
        InvalidParameterError, match=r"through the users needs dense 4 × 30 arrays .* allows 10²"
    ):
        ease_baseline(wide, max_items=10)


def test_ease_beats_most_popular_on_movielens(shared_data):
    import pyarrow.csv as pcsv

    from walsrec.data.interactions import Interactions

    data = Interactions.from_table(
        pcsv.read_csv(shared_data / "ml100k.csv"), "user", "item", "rating"
    ).user_items
    rng = np.random.default_rng(0)
    coo = data.tocoo()
    test = rng.random(coo.nnz) < 0.25
    train = sp.csr_matrix((coo.data[~test], (coo.row[~test], coo.col[~test])), shape=data.shape)
    held = sp.csr_matrix((coo.data[test], (coo.row[test], coo.col[test])), shape=data.shape)
    ease = evaluate_scorer(ease_baseline(train), train, held, metrics=["ndcg@10"])
    pop = evaluate_scorer(popularity_baseline(train), train, held, metrics=["ndcg@10"])
    # the figure under a per-user split is 0.480; most-popular 0.250
    assert ease["ndcg@10"] > 0.45 and ease["ndcg@10"] > pop["ndcg@10"] + 0.15


def test_eases_cholesky_runs_on_one_blas_thread(monkeypatch):
    """OpenBLAS's threaded Cholesky crashed the process from about 15,800 items: the
    baseline factorises with BLAS limited to one thread, through the items and the users."""
    import scipy.linalg
    from threadpoolctl import threadpool_info

    seen = []
    real = scipy.linalg.cho_factor

    def spy(*args, **kwargs):
        blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
        seen.append(max(blas, default=1))
        return real(*args, **kwargs)

    monkeypatch.setattr(scipy.linalg, "cho_factor", spy)
    ease_baseline(sp.random(60, 20, density=0.3, format="csr", random_state=0), 5.0)
    ease_baseline(sp.random(20, 60, density=0.3, format="csr", random_state=0), 5.0)
    assert seen == [1, 1]
