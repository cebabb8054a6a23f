"""WALS behaviour: planted answers, agreement with implicit, determinism, threads, fold-in,
singular systems and every validation message."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_info, threadpool_limits

from tests.model._problems import make_problem
from walsrec.errors import (
    InvalidParameterError,
    NotFittedError,
    SingularSystemError,
    WalsrecError,
)
from walsrec.model.wals import WALS


def _blocks(n_groups=5, size=10):
    """Users and items in ``n_groups`` blocks; user u saw every item of its block but one,
    item ``group_start + u % size``, which is therefore its right top-1 recommendation."""
    n = n_groups * size
    dense = np.zeros((n, n))
    for u in range(n):
        g = u // size
        dense[u, g * size : (g + 1) * size] = 1.0
        dense[u, g * size + u % size] = 0.0
    return sp.csr_matrix(dense)


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_planted_blocks_recommend_the_unseen_item_of_the_block(solver):
    x = _blocks()
    model = WALS(
        embedding_dim=6,
        unobserved_weight=0.5,
        regularization=0.01,
        solver=solver,
        sweeps=20,
        random_state=0,
    ).fit(x)
    for u in range(x.shape[0]):
        items, scores = model.recommend(u, x, k=3)
        assert items[0] == (u // 10) * 10 + u % 10
        assert scores[0] > scores[1] and items.shape == (3,)
        assert not set(items) & set(x[u].indices)
    items, _ = model.recommend(3, x, k=60, exclude_seen=False)
    assert items.shape == (50,)
    assert set(items[:10]) == set(range(10))


def test_similar_items_is_cosine_and_excludes_itself():
    x = _blocks()
    model = WALS(embedding_dim=6, unobserved_weight=0.5, sweeps=10, random_state=1).fit(x)
    items, sims = model.similar_items(12, k=5)
    assert 12 not in items and set(items) <= set(range(10, 20))
    v = model.item_factors_.astype(np.float64)
    want = v[items] @ v[12] / (np.linalg.norm(v[items], axis=1) * np.linalg.norm(v[12]))
    np.testing.assert_allclose(sims, want, rtol=1e-6)
    assert np.all(np.diff(sims) <= 0)


@pytest.mark.parametrize("use_cg", [False, True])
def test_agrees_with_implicit_als_from_the_same_start(use_cg):
    """implicit minimises Σ c_ui (p_ui − x_u·y_i)² + λ(‖X‖² + ‖Y‖²) with c = alpha·value on
    stored entries (p = 1) and c = 1, p = 0 elsewhere: walsrec with w0 = 1, weights = c,
    targets 1 and the same λ. Both start from the same factors (implicit keeps factors that
    are already set); float64, rows first in both."""
    implicit_als = pytest.importorskip("implicit.cpu.als")
    rng = np.random.default_rng(0)
    x, _ = make_problem(11, 120, 90, density=0.08)
    x.data = np.round(x.data * 2)  # counts 1..6
    k, lam, alpha = 8, 0.05, 2.0
    u0 = rng.standard_normal((x.shape[0], k)) * 0.1
    v0 = rng.standard_normal((x.shape[1], k)) * 0.1
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):  # implicit warns (rightly) when BLAS is threaded
        peer = implicit_als.AlternatingLeastSquares(
            factors=k,
            regularization=lam,
            alpha=alpha,
            dtype=np.float64,
            use_cg=use_cg,
            iterations=5,
            num_threads=1,
            random_state=0,
        )
    peer.user_factors, peer.item_factors = u0.copy(), v0.copy()
    peer.fit(x, show_progress=False)
    ones = x.copy()
    ones.data[:] = 1.0
    model = WALS(
        embedding_dim=k,
        unobserved_weight=1.0,
        regularization=lam,
        dtype="float64",
        solver="cg" if use_cg else "cholesky",
        cg_steps=peer.cg_steps,
    ).initialize(*x.shape)
    model.user_factors_, model.item_factors_ = u0.copy(), v0.copy()
    for _ in range(5):
        model.update_rows(ones, weights=alpha * x)
        model.update_cols(ones, weights=alpha * x)
    for ours, theirs in (
        (model.user_factors_, peer.user_factors),
        (model.item_factors_, peer.item_factors),
    ):
        assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(theirs).max()


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_same_seed_bitwise_and_thread_counts_agree(solver):
    x, _ = make_problem(12, 1200, 300, density=0.03, long_rows=5)  # > 2 blocks of rows
    kw = {"embedding_dim": 12, "solver": solver, "sweeps": 3, "random_state": 7}
    a = WALS(n_jobs=2, **kw).fit(x)
    b = WALS(n_jobs=2, **kw).fit(x)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    assert a.loss_ == b.loss_
    c = WALS(n_jobs=1, **kw).fit(x)
    for f, g in ((a.user_factors_, c.user_factors_), (a.item_factors_, c.item_factors_)):
        assert np.abs(f - g).max() <= 1e-6 * np.abs(f).max()
        # no result depends on the thread that computed it: in fact bitwise equal
        np.testing.assert_array_equal(f, g)
    d = WALS(n_jobs=2, **{**kw, "random_state": 8}).fit(x)
    assert not np.array_equal(a.user_factors_, d.user_factors_)


def test_recommend_breaks_ties_by_item_index():
    x, _ = make_problem(21, 30, 40)
    model = WALS(embedding_dim=3, sweeps=1, random_state=0).fit(x)
    model.item_factors_ = model.item_factors_.copy()
    model.item_factors_[::2] = 0.0  # 20 items tied at score 0
    for user in range(30):
        scores = model.user_factors_[user] @ model.item_factors_.T
        candidates = np.setdiff1d(np.arange(40), x[user].indices)
        want = candidates[np.lexsort((candidates, -scores[candidates]))][:25]
        got, _ = model.recommend(user, x, k=25)
        np.testing.assert_array_equal(got, want)


def test_factors_assigned_by_hand_work_without_initialize():
    x, _ = make_problem(22, 20, 15)
    fitted = WALS(embedding_dim=3, sweeps=2, random_state=0).fit(x)
    fresh = WALS(embedding_dim=3)
    fresh.user_factors_ = fitted.user_factors_.copy()
    fresh.item_factors_ = fitted.item_factors_.copy()
    np.testing.assert_allclose(fresh.project_rows(x[:3]), fitted.project_rows(x[:3]))
    assert fresh.loss(x) == pytest.approx(fitted.loss(x))


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_concurrent_fits_from_python_threads_match_sequential(n_jobs, solver):
    # with n_jobs 2 the fits' kernel launches share walsrec._threads' pool
    from walsrec._threads import resolve_n_jobs

    if resolve_n_jobs(n_jobs) != n_jobs:
        pytest.skip(f"NUMBA_NUM_THREADS allows fewer than {n_jobs} threads")
    x, _ = make_problem(14, 400, 300)
    kw = {"embedding_dim": 8, "sweeps": 3, "random_state": 3, "n_jobs": n_jobs, "solver": solver}
    want = WALS(**kw).fit(x)
    results = [None] * 4

    def work(i):
        results[i] = WALS(**kw).fit(x)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r.user_factors_, want.user_factors_)
        np.testing.assert_array_equal(r.item_factors_, want.item_factors_)
        assert r.loss_ == want.loss_


def test_singular_rows_raise_with_the_fix_and_leave_no_nan():
    x, _ = make_problem(15)  # row 0 is empty, most rows have < 5 interactions
    model = WALS(embedding_dim=5, unobserved_weight=0.0, regularization=0.0, random_state=0)
    with threadpool_limits(3, "blas"):  # the fit caps BLAS at 1 while kernels run
        with pytest.raises(
            SingularSystemError, match=r"row half-step is singular.*'regularization' > 0"
        ):
            model.fit(x)
        assert {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"} == {
            3
        }  # and lifts the cap although the fit failed
    assert np.isfinite(model.user_factors_).all()


def test_singular_by_rank_of_the_fixed_factors_is_caught_in_the_kernel():
    # Every row has ≥ k interactions, but the item factors span one direction only.
    x = sp.csr_matrix(np.ones((6, 8)))
    model = WALS(embedding_dim=3, unobserved_weight=0.0, regularization=0.0, dtype="float64")
    model.initialize(6, 8)
    model.item_factors_ = np.outer(np.arange(1.0, 9.0), [1.0, 2.0, 3.0])
    with pytest.raises(SingularSystemError, match=r"singular for 6 row.*Set 'regularization'"):
        model.update_rows(x)
    assert np.isfinite(model.user_factors_).all()


def test_zero_regularization_with_enough_data_solves():
    x = sp.csr_matrix(np.random.default_rng(0).uniform(1, 2, (20, 15)))
    model = WALS(embedding_dim=4, unobserved_weight=0.0, regularization=0.0, sweeps=3).fit(x)
    assert np.isfinite(model.user_factors_).all() and model.rwse_ < 0.5


@pytest.mark.parametrize("nu", [0.0, 1.0])
def test_fold_in_reproduces_a_training_users_row_step(nu):
    x, w = make_problem(16, weights="above")
    model = WALS(
        embedding_dim=5,
        regularization_exponent=nu,
        sweeps=4,
        random_state=0,
        dtype="float64",
        row_weights=2.0,
        col_weights=0.5,
    )
    model.fit(x, weights=w)
    rows = np.array([1, 4, 9])
    cols = np.array([0, 3, 29])
    proj = model.project_rows(x[rows], weights=w[rows])
    proj_c = model.project_cols(x.T.tocsr()[cols], weights=w.T.tocsr()[cols])
    items_before = model.item_factors_.copy()
    model.update_rows(x, rows=rows, weights=w)
    np.testing.assert_allclose(proj, model.user_factors_[rows], rtol=1e-10, atol=1e-12)
    model.fit(x, weights=w)  # the same factors again (same seed)
    np.testing.assert_array_equal(model.item_factors_, items_before)
    model.update_cols(x, cols=cols, weights=w)
    np.testing.assert_allclose(proj_c, model.item_factors_[cols], rtol=1e-10, atol=1e-12)
    # without weights: the model's scalar row weight, or an explicit one
    m2 = WALS(embedding_dim=5, sweeps=2, random_state=0, row_weights=3.0).fit(x)
    p3 = m2.project_rows(x[rows])
    p1 = m2.project_rows(x[rows], row_weights=1.0)
    m2.update_rows(x, rows=rows)
    np.testing.assert_allclose(p3, m2.user_factors_[rows], rtol=1e-4, atol=1e-6)
    assert not np.allclose(p1, p3)


def test_fit_records_history_callback_and_early_stop():
    x, _ = make_problem(17)
    seen = []
    model = WALS(embedding_dim=4, sweeps=5, callback=lambda s, m: seen.append((s, m.n_iter_)))
    model.fit(x)
    assert seen == [(s, s) for s in range(1, 6)] and len(model.loss_) == 10
    stop = WALS(embedding_dim=4, sweeps=5, callback=lambda s, m: s == 2).fit(x)
    assert stop.n_iter_ == 2 and len(stop.loss_) == 4
    early = WALS(embedding_dim=4, sweeps=200, tol=1e-3, random_state=0).fit(x)
    assert 2 <= early.n_iter_ < 200
    assert model.get_params()["sweeps"] == 5
    assert WALS().set_params(sweeps=3).sweeps == 3


def test_show_progress_runs():
    x, _ = make_problem(18)
    model = WALS(embedding_dim=3, sweeps=2, show_progress=True).fit(x)
    assert model.n_iter_ == 2


def test_accepts_coo_csc_int_bool_and_duplicates():
    x, _ = make_problem(19)
    ref = WALS(embedding_dim=4, sweeps=2, random_state=0, dtype="float64").fit(x)
    coo = x.tocoo()
    doubled = sp.coo_matrix(
        (np.concatenate([coo.data, coo.data]) / 2, (np.tile(coo.row, 2), np.tile(coo.col, 2))),
        shape=x.shape,
    )
    for variant in (x.tocsc(), coo, doubled, sp.csr_array(x)):
        got = WALS(embedding_dim=4, sweeps=2, random_state=0, dtype="float64").fit(variant)
        np.testing.assert_allclose(got.user_factors_, ref.user_factors_, rtol=1e-9, atol=1e-12)
    b = WALS(embedding_dim=4, sweeps=1).fit(x.astype(bool))
    assert b.user_factors_.dtype == np.float32


# ------------------------------------------------------------------------- validation

PARAM_ERRORS = [
    ("embedding_dim", 0, r"The 'embedding_dim' parameter of WALS must be an int >= 1\. Got 0"),
    ("embedding_dim", 2.5, r"'embedding_dim' parameter of WALS must be an int >= 1\. Got 2\.5"),
    ("unobserved_weight", -0.1, r"'unobserved_weight' .* finite float >= 0\. Got -0\.1"),
    ("unobserved_weight", float("nan"), r"'unobserved_weight' .* >= 0\. Got nan"),
    ("regularization", -1.0, r"'regularization' parameter of WALS .* >= 0\. Got -1\.0"),
    ("regularization_exponent", -0.5, r"'regularization_exponent' .* >= 0\. Got -0\.5"),
    (
        "row_weights",
        -2.0,
        r"'row_weights' parameter of WALS must be a finite float >= 0 or a 1-D array\. Got -2\.0",
    ),
    ("solver", "lu", r"'solver' parameter of WALS must be one of \['cholesky', 'cg'\]\. Got 'lu'"),
    ("cg_steps", 0, r"'cg_steps' parameter of WALS must be an int >= 1\. Got 0"),
    ("sweeps", 0, r"'sweeps' parameter of WALS must be an int >= 1\. Got 0"),
    ("tol", -1e-3, r"'tol' parameter of WALS must be a finite float >= 0\. Got -0\.001"),
    ("init_std", 0.0, r"'init_std' parameter of WALS must be a finite float > 0\. Got 0\.0"),
    ("dtype", "float16", r"'dtype' parameter of WALS must be one of \['float32', 'float64'\]"),
    ("dtype", "banana", r"'dtype' parameter of WALS must be one of .* Got 'banana'"),
    ("n_jobs", 0, r"'n_jobs' parameter of WALS must be None or a non-zero int"),
    ("random_state", "x", r"'random_state' parameter of WALS must be None, an int"),
    ("callback", 3, r"'callback' parameter of WALS must be None or a callable\. Got 3"),
    ("show_progress", "yes", r"'show_progress' parameter of WALS must be a bool"),
]


@pytest.mark.parametrize(("name", "value", "match"), PARAM_ERRORS)
def test_invalid_parameters_raise_with_name_rule_and_value(name, value, match):
    x, _ = make_problem(20)
    with pytest.raises(InvalidParameterError, match=match):
        WALS(**{name: value}).fit(x)


def test_invalid_inputs_raise_with_clear_messages():
    x, w = make_problem(21, weights="above")
    n_items = x.shape[1]
    model = WALS(embedding_dim=3, sweeps=1)
    with pytest.raises(TypeError, match=r"'user_items' argument of WALS.fit must be a scipy"):
        model.fit(x.toarray())
    bad = x.copy()
    bad.data[3] = np.nan
    with pytest.raises(
        InvalidParameterError,
        match=r"must contain only values that are finite "
        r"in float32. Got nan",
    ):
        model.fit(bad)
    bad.data[3] = np.inf
    with pytest.raises(InvalidParameterError, match=r"finite in float32. Got inf at \(row"):
        model.fit(bad)
    bad = x.astype(np.float64)
    bad.data[3] = 1e39  # finite in float64, inf in the float32 model
    with pytest.raises(InvalidParameterError, match=r"finite in float32. Got 1e\+39 at \(row"):
        model.fit(bad)
    with pytest.raises(
        InvalidParameterError,
        match=r"'row_weights' parameter of WALS must be a "
        r"scalar or a 1-D array of length 40. Got an array of shape \(3,\)",
    ):
        WALS(row_weights=np.ones(3)).fit(x)
    with pytest.raises(
        InvalidParameterError,
        match=r"'col_weights' .* non-negative finite "
        r"weights. Got -1.0 at index 2",
    ):
        WALS(col_weights=np.r_[1.0, 1.0, -1.0, np.ones(n_items - 3)]).fit(x)
    negw = w.copy()
    negw.data[0] = -1.0
    with pytest.raises(InvalidParameterError, match=r"'weights' .* non-negative weights. Got -1"):
        model.fit(x, weights=negw)
    nanw = w.copy()
    nanw.data[0] = np.nan
    with pytest.raises(
        InvalidParameterError, match=r"'weights' argument .* finite in float32. Got nan"
    ):
        model.fit(x, weights=nanw)
    other = w.copy()
    other.indices = other.indices.copy()
    other = sp.csr_matrix(w.toarray() + sp.eye(*w.shape).toarray())
    first = next(i for i in range(w.shape[0]) if list(other[i].indices) != list(w[i].indices))
    with pytest.raises(
        InvalidParameterError, match=rf"same sparsity pattern .*first in row {first}\)"
    ):
        model.fit(x, weights=other)
    # a batch names the row's index in the matrix, not in the batch
    model.initialize(*x.shape)
    last = max(i for i in range(w.shape[0]) if list(other[i].indices) != list(w[i].indices))
    assert last > 0
    with pytest.raises(InvalidParameterError, match=rf"first in row {last}\)"):
        model.update_rows(x, rows=[last], weights=other)
    with pytest.raises(InvalidParameterError, match=r"'weights' .* must have the shape of"):
        model.fit(x, weights=w[:5])
    with pytest.raises(NotFittedError, match=r"not fitted yet: call 'fit' or 'initialize'"):
        WALS().update_rows(x)
    with pytest.raises(NotFittedError, match=r"before 'recommend'"):
        WALS().recommend(0, x)
    model.fit(x)
    with pytest.raises(
        InvalidParameterError,
        match=r"must have shape \(n_users, n_items\) = "
        r"\(40, 30\), as the model's factors. Got \(40, 29\)",
    ):
        model.update_rows(x[:, :29])
    with pytest.raises(TypeError, match=r"'user_items' argument of WALS.update_cols must be"):
        model.update_cols([[1.0]])
    with pytest.raises(InvalidParameterError, match=r"'rows' .* indices in \[0, 40\). Got 40"):
        model.update_rows(x, rows=[0, 40])
    with pytest.raises(InvalidParameterError, match=r"'cols' .* 1-D array of int indices"):
        model.update_cols(x, cols=[0.5])
    with pytest.raises(
        InvalidParameterError,
        match=r"'k' argument of WALS.recommend must be "
        r"an int >= 1. Got 0",
    ):
        model.recommend(0, x, k=0)
    with pytest.raises(InvalidParameterError, match=r"'k' argument of WALS.similar_items"):
        model.similar_items(0, k=-1)
    with pytest.raises(InvalidParameterError, match=r"'user_index' .* in \[0, 40\). Got 40"):
        model.recommend(40, x)
    with pytest.raises(InvalidParameterError, match=r"'item_index' .* in \[0, 30\). Got -1"):
        model.similar_items(-1)
    with pytest.raises(InvalidParameterError, match=r"'new_user_items' .* must have 30 columns"):
        model.project_rows(x[:, :10])
    with pytest.raises(
        InvalidParameterError,
        match=r"'row_weights' argument of WALS."
        r"project_rows must be a non-negative finite float. Got -1",
    ):
        model.project_rows(x[:2], row_weights=-1.0)
    with pytest.raises(InvalidParameterError, match=r"'weights' argument of WALS.project_cols"):
        model.project_cols(x.T.tocsr()[:2], weights=x.T.tocsr()[:3])
    with pytest.raises(InvalidParameterError, match=r"Invalid parameter 'learning_rate' for WALS"):
        model.set_params(learning_rate=1.0)
    with pytest.raises(InvalidParameterError, match=r"'n_users' argument of WALS.initialize"):
        model.initialize(-1, 3)
    assert issubclass(InvalidParameterError, ValueError) and issubclass(
        SingularSystemError, WalsrecError
    )


def test_import_walsrec_does_not_import_numba_kernels():
    import subprocess
    import sys

    code = (
        "import sys, walsrec; walsrec.WALS; "
        "print('walsrec.model._kernels' in sys.modules, 'numba' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("confidence", ["constant", "bm25"])
def test_bound_data_steps_equal_the_estimators_calls_bit_for_bit(confidence):
    """WALS.bind: the weighted sides built once; every half-step, batch and loss the same
    as update_rows/update_cols/loss on the matrix."""
    from walsrec.model.wals import WALS

    x = sp.random(60, 25, density=0.25, format="csr", random_state=3, dtype=np.float64)
    x.data = np.round(x.data * 5, 1) + 0.1
    params = dict(embedding_dim=4, random_state=2, confidence=confidence, regularization=0.1)
    a = WALS(**params).initialize(60, 25)
    b = WALS(**params).initialize(60, 25)
    bound = b.bind(x)
    csc = x.tocsc()
    steps = [("rows", None), ("cols", [3, 7, 7, 24]), ("rows", np.arange(10, 40)), ("cols", None)]
    for name, subset in steps:
        if name == "rows":
            a.update_rows(x, rows=subset)
            bound.update_rows(subset)
        else:
            a.update_cols(csc, cols=subset)
            bound.update_cols(subset)
        np.testing.assert_array_equal(b.user_factors_, a.user_factors_)
        np.testing.assert_array_equal(b.item_factors_, a.item_factors_)
        assert bound.loss() == a.loss(x) and bound.rwse() == a.rwse(x)
    # other parameters weigh the matrix otherwise: the sides are rebuilt
    a.set_params(regularization=0.5)
    b.set_params(regularization=0.5)
    a.update_rows(x)
    bound.update_rows()
    np.testing.assert_array_equal(b.user_factors_, a.user_factors_)
    with pytest.raises(InvalidParameterError, match=r"'rows' argument of WALS.update_rows must"):
        bound.update_rows([0, 60])
    with pytest.raises(TypeError, match=r"bind"):
        b.bind(x.toarray())


def test_bound_data_rebuilds_its_sides_for_new_weight_vectors():
    """A vector parameter set anew (another array, other values) is compared by value."""
    from walsrec.model.wals import WALS

    x = sp.random(30, 20, density=0.3, format="csr", random_state=0)
    a = WALS(4, random_state=0, col_weights=np.ones(20)).initialize(30, 20)
    b = WALS(4, random_state=0, col_weights=np.ones(20)).initialize(30, 20)
    bound = b.bind(x)
    bound.update_cols()
    a.update_cols(x)
    for model in (a, b):
        model.set_params(col_weights=np.linspace(0.5, 2.0, 20))
    a.update_cols(x)
    bound.update_cols()
    np.testing.assert_array_equal(b.item_factors_, a.item_factors_)
    b.set_params(col_weights=np.linspace(0.5, 2.0, 20))  # equal values, a new array
    sides = bound._sides
    bound.update_cols()
    assert bound._sides is sides  # nothing rebuilt
