from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from walsrec.data.prepare import load_prepared
from walsrec.distributed.wals import DaskWALS, native_source
from walsrec.errors import DataFormatError, InvalidParameterError, NotFittedError
from walsrec.model.wals import WALS


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(a).max())


@pytest.fixture(scope="module")
def user_items(data_dir):
    return load_prepared(data_dir).train.user_items


@pytest.mark.parametrize(
    ("dtype", "solver", "tol"),
    [("float64", "cholesky", 1e-6), ("float32", "cholesky", 1e-4), ("float64", "cg", 1e-6)],
)
def test_same_factors_and_loss_as_one_machine(client, data_dir, user_items, dtype, solver, tol):
    params = dict(embedding_dim=6, sweeps=3, random_state=3, dtype=dtype, solver=solver, n_jobs=1)
    ref = WALS(**params).fit(user_items)
    model = DaskWALS(client=client, partitions=3, **params).fit(data_dir)
    assert model.user_factors_.dtype == np.dtype(dtype)
    assert _rel(ref.user_factors_, model.user_factors_) < tol
    assert _rel(ref.item_factors_, model.item_factors_) < tol
    assert len(model.loss_) == len(ref.loss_) == 6
    np.testing.assert_allclose(model.loss_, ref.loss_, rtol=tol)
    assert model.rwse_ == pytest.approx(ref.rwse_, rel=tol)
    # the loss recomputed on the workers from the factors agrees with the one machine
    assert model.loss() == pytest.approx(ref.loss(user_items), rel=tol)
    model._loss_state = None
    assert model.loss() == pytest.approx(ref.loss(user_items), rel=tol)
    assert model.rwse() == pytest.approx(ref.rwse(user_items), rel=tol)
    # nothing but k×k Gramians, Q and loss terms went to or came back from the cluster
    k = params["embedding_dim"]
    assert model.stats_["bytes_to_workers"] < 200 * k * k * 8


def test_initial_factors_equal_wals_initialize(client, data_dir, user_items):
    gen = np.random.default_rng(5)
    ref = WALS(4, random_state=np.random.default_rng(5), dtype="float64")
    ref.initialize(*user_items.shape)
    model = DaskWALS(4, client=client, partitions=4, random_state=gen, dtype="float64")
    model.open(data_dir).initialize()
    np.testing.assert_array_equal(model.user_factors_, ref.user_factors_)
    np.testing.assert_array_equal(model.item_factors_, ref.item_factors_)
    # the caller's generator advanced as WALS.initialize advances it
    assert gen.random() == ref.random_state.random()


def test_vector_weights_and_frequency_regularisation(client, data_dir, user_items):
    n_users, n_items = user_items.shape
    rng = np.random.default_rng(0)
    params = dict(
        embedding_dim=5,
        sweeps=2,
        random_state=1,
        dtype="float64",
        n_jobs=1,
        row_weights=rng.uniform(0.5, 2, n_users),
        col_weights=rng.uniform(0.5, 2, n_items),
        regularization_exponent=1.0,
    )
    ref = WALS(**params).fit(user_items)
    model = DaskWALS(client=client, **params).fit(data_dir)
    assert _rel(ref.user_factors_, model.user_factors_) < 1e-6
    np.testing.assert_allclose(model.loss_, ref.loss_, rtol=1e-6)
    # the vectors reach the workers once (make_side's input), not inside every task's settings
    settings = model._worker_params()
    assert np.ndim(settings.row_weights) == 0 and np.ndim(settings.col_weights) == 0


def test_worker_killed_mid_run(own_client, data_dir, user_items):
    """A worker process is SIGKILLed while the fit runs (its nanny starts a new one): the
    factor blocks and data partitions it held are recomputed from their lineage (inputs
    re-read from storage), and the result is still the one machine's."""
    import threading

    client = own_client  # see the fixture: this test kills a worker

    params = dict(embedding_dim=6, sweeps=4, random_state=7, dtype="float64", n_jobs=1)
    ref = WALS(**params).fit(user_items)
    killed = []

    def kill_one(sweep, model):
        if sweep == 1:
            pids = client.run(os.getpid)
            victim = sorted(pids.items())[0][1]
            # shortly after: during sweep 2's tasks, or between them
            threading.Timer(0.02, os.kill, (victim, signal.SIGKILL)).start()
            killed.append(victim)

    model = DaskWALS(client=client, partitions=4, callback=kill_one, **params).fit(data_dir)
    assert len(killed) == 1
    assert killed[0] not in client.run(os.getpid).values()
    assert _rel(ref.user_factors_, model.user_factors_) < 1e-6
    assert _rel(ref.item_factors_, model.item_factors_) < 1e-6
    np.testing.assert_allclose(model.loss_, ref.loss_, rtol=1e-6)


def test_load_factors_resumes_exactly(client, data_dir, user_items, tmp_path):
    params = dict(embedding_dim=4, random_state=2, dtype="float64", n_jobs=1)
    ref = WALS(sweeps=3, **params).fit(user_items)
    half = WALS(sweeps=1, **params).fit(user_items)
    np.save(tmp_path / "u.npy", half.user_factors_)
    np.save(tmp_path / "v.npy", half.item_factors_)
    model = DaskWALS(client=client, **params).open(data_dir)
    model.load_factors(tmp_path / "u.npy", tmp_path / "v.npy")
    assert model.loss() == pytest.approx(half.loss(user_items), rel=1e-9)
    for _ in range(2):
        model.update_rows(user_items).update_cols()
    assert _rel(ref.user_factors_, model.user_factors_) < 1e-6
    assert model.loss() == pytest.approx(ref.loss_[-1], rel=1e-6)
    with pytest.raises(InvalidParameterError, match="do not fit the data"):
        model.load_factors(tmp_path / "v.npy", tmp_path / "v.npy")


def test_errors(client, data_dir, user_items, tmp_path):
    with pytest.raises(InvalidParameterError, match="'client' parameter of DaskWALS"):
        DaskWALS(4).fit(data_dir)
    with pytest.raises(InvalidParameterError, match="'partitions' parameter of DaskWALS"):
        DaskWALS(4, client=client, partitions=0).open(data_dir)
    with pytest.raises(InvalidParameterError, match="'embedding_dim' parameter of WALS"):
        DaskWALS(0, client=client).open(data_dir)
    with pytest.raises(NotFittedError, match="call 'fit' or 'initialize' before 'loss'"):
        DaskWALS(4, client=client).loss()
    model = DaskWALS(4, client=client, random_state=0).open(data_dir).initialize()
    with pytest.raises(InvalidParameterError, match=r"'rows' argument of WALS\.update_rows must"):
        model.update_rows(rows=[0, 10**6])
    with pytest.raises(InvalidParameterError, match=r"'weights' argument of DaskWALS\.update_rows"):
        model.update_rows(weights=user_items)
    with pytest.raises(InvalidParameterError, match=r"must be None or a NativeSource of per-entry"):
        model.open(data_dir, weights=user_items)
    with pytest.raises(InvalidParameterError, match="must have the opened data's shape"):
        model.update_cols(user_items[:5])
    with pytest.raises(DataFormatError, match="missing"):
        native_source(tmp_path)


def test_singular_system_raised_from_a_worker(client, data_dir):
    from walsrec.errors import SingularSystemError

    model = DaskWALS(
        40, client=client, regularization=0.0, unobserved_weight=0.0, random_state=0, sweeps=1
    )
    with pytest.raises(SingularSystemError, match=r"row half-step is singular .* Set 'regul"):
        model.fit(data_dir)


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_touched_rows_only_give_the_same_factors(client, data_dir, user_items, solver):
    """ship_whole_above=inf: every partition reads only the fixed rows it touches."""
    params = dict(embedding_dim=5, sweeps=2, random_state=8, dtype="float64", solver=solver)
    ref = WALS(n_jobs=1, **params).fit(user_items)
    model = DaskWALS(client=client, partitions=4, ship_whole_above=np.inf, n_jobs=1, **params)
    model.fit(data_dir)
    assert not any(r["whole"] for side in model._reads.values() for r in side)
    assert _rel(ref.user_factors_, model.user_factors_) < 1e-6
    assert _rel(ref.item_factors_, model.item_factors_) < 1e-6
    np.testing.assert_allclose(model.loss_, ref.loss_, rtol=1e-6)
    model._loss_state = None
    assert model.loss() == pytest.approx(ref.loss(user_items), rel=1e-6)


def _block_diagonal(tmp_path, n_users=40, n_items=30, seed=0):
    """Two diagonal blocks: users 0:20 rate items 0:15 only, users 20:40 items 15:30; every
    tenth user rates all the items of its block."""
    import scipy.sparse as sp

    from walsrec.data.native import save_csr

    rng = np.random.default_rng(seed)
    dense = np.zeros((n_users, n_items))
    for us, its in ((slice(0, 20), slice(0, 15)), (slice(20, 40), slice(15, 30))):
        block = dense[us, its]
        block[...] = rng.uniform(1, 5, block.shape) * (rng.random(block.shape) < 0.5)
        block[::10] = rng.uniform(1, 5, block[::10].shape)  # users 0, 10, ... rate them all
    m = sp.csr_matrix(dense)
    save_csr(tmp_path, "user_items", m)
    save_csr(tmp_path, "item_users", m.T.tocsr())
    return m


def test_bytes_between_workers_block_diagonal(client, tmp_path):
    """Partition p of either side touches only block p of the other, placed on the same
    worker: touched rows never leave their worker; the whole factor crosses every sweep."""
    m = _block_diagonal(tmp_path)
    k = 3
    params = dict(embedding_dim=k, sweeps=2, random_state=1, dtype="float64", n_jobs=1)
    ref = WALS(**params).fit(m)
    source = native_source(tmp_path)
    moved = {}
    for whole in (0.5, 0.0):
        model = DaskWALS(client=client, partitions=2, ship_whole_above=whole, **params)
        model.open(source).initialize()
        opened = model.stats_["bytes_between_workers"]
        model.update_rows().update_cols()
        moved[whole] = model.stats_["bytes_between_workers"] - opened
        model.update_rows().update_cols()
        assert _rel(ref.user_factors_, model.user_factors_) < 1e-6
        assert _rel(ref.item_factors_, model.item_factors_) < 1e-6
    assert len(model._workers()) == 2
    assert moved[0.5] == 0
    # each worker receives the other's block of V (user half-step) and of U (item)
    assert moved[0.0] == (30 + 40) * k * 8
    # 4 partitions on 2 workers: each worker's two user partitions touch both item blocks,
    # 30 rows in all, so the decision per worker flips at ship_whole_above = 30/30
    for whole, expect in ((0.99, True), (1.0, False)):
        model = DaskWALS(client=client, partitions=4, ship_whole_above=whole, **params)
        reads = model.open(source)._reads["user"]
        assert [r["counts"].sum() for r in reads] == [15, 15, 15, 15]
        assert [r["whole"] for r in reads] == [expect] * 4
    with pytest.raises(InvalidParameterError, match=r"'ship_whole_above' .* >= 0 \(or inf\)"):
        DaskWALS(client=client, ship_whole_above=-1).open(source)


@pytest.mark.parametrize(
    ("scheme", "solver"),
    [
        (dict(confidence="bm25", targets="binary", alpha=2.0, bm25_k1=1.2, bm25_b=0.75), "cg"),
        (dict(confidence="tfidf", targets="binary"), "cholesky"),
        (dict(confidence="log", alpha=3.0, epsilon=0.5), "cholesky"),
    ],
)
def test_weighting_schemes_same_as_one_machine(client, data_dir, user_items, scheme, solver):
    """Confidences computed on the workers (BM25/TF-IDF statistics reduced there) give the
    single machine's factors, loss history and statistics."""
    params = dict(embedding_dim=5, sweeps=2, random_state=9, dtype="float64", n_jobs=1)
    ref = WALS(solver=solver, **scheme, **params).fit(user_items)
    model = DaskWALS(client=client, partitions=3, solver=solver, **scheme, **params)
    model.fit(data_dir)
    assert _rel(ref.user_factors_, model.user_factors_) < 1e-6
    assert _rel(ref.item_factors_, model.item_factors_) < 1e-6
    np.testing.assert_allclose(model.loss_, ref.loss_, rtol=1e-6)
    model._loss_state = None
    assert model.loss() == pytest.approx(ref.loss(user_items), rel=1e-6)
    assert model.rwse() == pytest.approx(ref.rwse(user_items), rel=1e-6)
    if scheme["confidence"] in ("bm25", "tfidf"):
        mine, theirs = model.weighting_stats_, ref.weighting_stats_
        np.testing.assert_array_equal(mine.item_counts, theirs.item_counts)
        np.testing.assert_array_equal(mine.user_sums, theirs.user_sums)
        # folding in a user weighs its entries with those statistics, as on one machine
        np.testing.assert_allclose(
            model.project_rows(user_items[:3]), ref.project_rows(user_items[:3]), rtol=1e-6
        )
    else:
        assert model.weighting_stats_ is None


def test_batches_of_rows_and_columns_equal_one_machine(client, data_dir, user_items):
    """tf.contrib's row and column steps: the partitions holding a batch solve it."""
    params = dict(embedding_dim=5, random_state=1, dtype="float64", n_jobs=1, solver="cg")
    ref = WALS(**params).initialize(*user_items.shape)
    model = DaskWALS(client=client, partitions=3, **params).open(data_dir).initialize()
    n_users, n_items = user_items.shape
    csc = user_items.tocsc()
    batches = [
        ("rows", np.arange(0, 250)),  # two partitions
        ("cols", np.arange(40, 90)),  # one partition
        ("rows", np.array([598, 3, 3, 420])),  # scattered, a repeat
        ("cols", np.arange(n_items)),
        ("rows", np.arange(250, n_users)),
    ]
    for name, batch in batches:
        if name == "rows":
            ref.update_rows(user_items, rows=batch)
            model.update_rows(rows=batch)
        else:
            ref.update_cols(csc, cols=batch)
            model.update_cols(cols=batch)
        assert _rel(ref.user_factors_, model.user_factors_) < 1e-9, name
        assert _rel(ref.item_factors_, model.item_factors_) < 1e-9, name
        assert model.loss() == pytest.approx(ref.loss(user_items), rel=1e-9)


def test_per_entry_weights_equal_one_machine(client, data_dir, user_items, tmp_path):
    import scipy.sparse as sp

    from walsrec.data.native import save_csr

    weights = user_items.copy().astype(np.float64)
    weights.data = 0.5 + np.random.default_rng(0).random(weights.nnz) * 3
    save_csr(tmp_path, "weights", weights)
    save_csr(tmp_path, "weights_t", weights.T.tocsr())
    source = native_source(tmp_path, "weights", "weights_t")
    params = dict(embedding_dim=5, sweeps=2, random_state=1, dtype="float64", n_jobs=1)
    ref = WALS(confidence="bm25", **params).fit(user_items, weights=weights)
    model = DaskWALS(client=client, partitions=3, confidence="bm25", **params)
    model.fit(data_dir, weights=source)
    assert _rel(ref.user_factors_, model.user_factors_) < 1e-6
    np.testing.assert_allclose(model.loss_, ref.loss_, rtol=1e-6)
    assert model.loss(weights=source) == pytest.approx(ref.loss(user_items, weights), rel=1e-6)
    assert model.weighting_stats_ is None  # the weights replace the scheme: nothing reduced

    # weights with another pattern, negative weights, another shape: refused, named
    other = weights.tolil()
    other[5, int(np.flatnonzero(user_items[5].toarray().ravel() == 0)[0])] = 1.0
    other[5, int(user_items[5].indices[0])] = 0.0
    other = sp.csr_matrix(other)
    other.eliminate_zeros()
    save_csr(tmp_path / "o", "weights", other)
    save_csr(tmp_path / "o", "weights_t", other.T.tocsr())
    with pytest.raises(InvalidParameterError, match=r"same sparsity pattern .* \(first in row 5\)"):
        model.open(data_dir, weights=native_source(tmp_path / "o", "weights", "weights_t"))
    negative = weights.copy()
    negative.data[7] = -1.0
    save_csr(tmp_path / "n", "weights", negative)
    save_csr(tmp_path / "n", "weights_t", negative.T.tocsr())
    with pytest.raises(InvalidParameterError, match=r"non-negative weights. Got -1.0 instead"):
        model.open(data_dir, weights=native_source(tmp_path / "n", "weights", "weights_t"))
    small = weights[:10]
    save_csr(tmp_path / "s", "weights", small)
    save_csr(tmp_path / "s", "weights_t", small.T.tocsr())
    with pytest.raises(InvalidParameterError, match=r"must have the shape of the data"):
        model.open(data_dir, weights=native_source(tmp_path / "s", "weights", "weights_t"))
