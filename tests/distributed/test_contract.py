"""The estimator contract, run against both back ends (as implicit's
RecommenderBaseTestMixin and scikit-learn's check_estimator do): the same parameters and
signatures, the same ``loss_`` bookkeeping per sweep, the same errors and messages for the
same bad input, the same factors for the same seed, the same fold-in and recommendations."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from walsrec.data.prepare import load_prepared
from walsrec.distributed.wals import DaskWALS
from walsrec.errors import InvalidParameterError, NotFittedError
from walsrec.model.wals import WALS

SHARED_METHODS = [
    "initialize",
    "update_rows",
    "update_cols",
    "loss",
    "rwse",
    "project_rows",
    "project_cols",
    "recommend",
    "similar_items",
    "get_params",
    "set_params",
]
PARAMS = dict(embedding_dim=4, dtype="float64", random_state=5, n_jobs=1)


@pytest.fixture(scope="module")
def user_items(data_dir):
    return load_prepared(data_dir).train.user_items


@pytest.fixture(params=["WALS", "DaskWALS"])
def backend(request, client, data_dir, user_items):
    """(make an estimator from WALS's parameters, fit it, the matrix its methods take)."""
    if request.param == "WALS":
        return WALS, lambda m: m.fit(user_items)
    return (
        lambda *a, **k: DaskWALS(*a, client=client, partitions=3, **k),
        lambda m: m.fit(data_dir),
    )


@pytest.mark.parametrize("method", SHARED_METHODS)
def test_the_shared_methods_take_the_same_arguments(method):
    def names(cls):
        sig = inspect.signature(getattr(cls, method))
        return [(p.name, p.kind) for p in sig.parameters.values()]

    assert names(DaskWALS) == names(WALS)


def test_the_parameters_are_walss_and_three_for_the_cluster():
    ours, theirs = WALS().get_params(), DaskWALS().get_params()
    assert list(theirs) == [*ours, "client", "partitions", "ship_whole_above"]
    assert {k: theirs[k] for k in ours} == ours
    model = DaskWALS().set_params(regularization=0.5, partitions=2)
    assert (model.regularization, model.partitions) == (0.5, 2)
    with pytest.raises(InvalidParameterError, match=r"Invalid parameter 'nope' for DaskWALS"):
        model.set_params(nope=1)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'nope'"):
        DaskWALS(nope=1)


def test_loss_is_recorded_twice_per_sweep(backend, user_items):
    make, fit = backend
    model = fit(make(sweeps=3, **PARAMS))
    assert model.n_iter_ == 3 and len(model.loss_) == 6
    assert model.rwse_ == pytest.approx(model.rwse(user_items), rel=1e-9)
    assert model.loss_[-1] == pytest.approx(model.loss(user_items), rel=1e-9)
    assert all(b <= a * (1 + 1e-9) for a, b in zip(model.loss_, model.loss_[1:], strict=False))


def test_a_callback_stops_the_fit_after_its_sweep(backend):
    make, fit = backend
    seen = []

    def stop_at_two(sweep, model):
        seen.append((sweep, len(model.loss_)))
        return sweep == 2

    model = fit(make(sweeps=5, callback=stop_at_two, **PARAMS))
    assert seen == [(1, 2), (2, 4)] and model.n_iter_ == 2


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"embedding_dim": 0}, "The 'embedding_dim' parameter of WALS must be an int >= 1. Got 0"),
        ({"solver": "lu"}, "The 'solver' parameter of WALS must be one of ['cholesky', 'cg']"),
        ({"dtype": "float16"}, "The 'dtype' parameter of WALS must be one of ['float32'"),
        ({"regularization": -1.0}, "The 'regularization' parameter of WALS must be a finite"),
        ({"confidence": "nope"}, "The 'confidence' parameter of WALS must be one of"),
        ({"sweeps": 0}, "The 'sweeps' parameter of WALS must be an int >= 1. Got 0"),
    ],
)
def test_bad_parameters_are_the_same_error(backend, bad, message):
    import re

    make, fit = backend
    with pytest.raises(InvalidParameterError, match=re.escape(message)):
        fit(make(**{**PARAMS, **bad}))


def test_methods_before_fit_are_not_fitted_errors(backend, user_items):
    make, _ = backend
    model = make(**PARAMS)
    for call in (
        lambda: model.loss(user_items),
        lambda: model.update_rows(user_items),
        lambda: model.project_rows(user_items[:2]),
        lambda: model.recommend(0, user_items),
    ):
        with pytest.raises(NotFittedError, match=r"This (Dask)?WALS instance is not fitted yet"):
            call()


def test_the_same_seed_gives_the_same_model(client, data_dir, user_items):
    one = WALS(sweeps=2, **PARAMS).fit(user_items)
    dask = DaskWALS(client=client, partitions=3, sweeps=2, **PARAMS).fit(data_dir)
    for a, b in ((one.user_factors_, dask.user_factors_), (one.item_factors_, dask.item_factors_)):
        assert np.abs(a - b).max() <= 1e-7 * np.abs(a).max()
    np.testing.assert_allclose(dask.loss_, one.loss_, rtol=1e-7)
    np.testing.assert_allclose(
        dask.project_rows(user_items[:5]), one.project_rows(user_items[:5]), rtol=1e-6
    )
    np.testing.assert_allclose(
        dask.project_cols(user_items[:, :5].T.tocsr()),
        one.project_cols(user_items[:, :5].T.tocsr()),
        rtol=1e-6,
    )
    for user in (0, 7):
        ids_a, scores_a = one.recommend(user, user_items, k=5)
        ids_b, scores_b = dask.recommend(user, user_items, k=5)
        np.testing.assert_array_equal(ids_a, ids_b)
        np.testing.assert_allclose(scores_a, scores_b, rtol=1e-6)
    np.testing.assert_array_equal(one.similar_items(3, k=4)[0], dask.similar_items(3, k=4)[0])
    shared = dict(metric="dot", filter_items=[0], items=[0, 1, 2, 4, 5, 6])
    np.testing.assert_array_equal(
        one.similar_items(3, 4, **shared)[0], dask.similar_items(3, 4, **shared)[0]
    )
    np.testing.assert_array_equal(
        one.recommend(7, user_items, 5, False, filter_items=[1], items=np.arange(20))[0],
        dask.recommend(7, user_items, 5, False, filter_items=[1], items=np.arange(20))[0],
    )
    local = dask.to_local()
    assert isinstance(local, WALS) and local.get_params() == {
        k: v for k, v in dask.get_params().items() if k in local.get_params()
    }
    np.testing.assert_array_equal(local.user_factors_, dask.user_factors_)
    np.testing.assert_array_equal(local.item_factors_, dask.item_factors_)
