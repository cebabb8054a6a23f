"""Held-out evaluation on the workers equals walsrec.metrics.evaluate on one machine."""

from __future__ import annotations

import numpy as np
import pytest

from walsrec.data.prepare import load_prepared
from walsrec.distributed.evaluate import evaluate_dask
from walsrec.distributed.wals import DaskWALS
from walsrec.errors import InvalidParameterError
from walsrec.metrics import evaluate

PARAMS = dict(partitions=3, sweeps=2, random_state=2, n_jobs=1)


@pytest.fixture(scope="module")
def fitted(client, data_dir):
    """Every partition's indices renumbered into its touched items (mapped back to rank)."""
    model = DaskWALS(5, client=client, ship_whole_above=np.inf, **PARAMS).fit(data_dir)
    assert not any(r["whole"] for r in model._reads["user"])
    return model


def test_evaluate_on_workers_equals_one_machine(client, data_dir, fitted):
    prepared = load_prepared(data_dir)
    train, heldout = prepared.train.user_items, prepared.eval
    heldout = heldout.user_items if hasattr(heldout, "user_items") else heldout
    U, V = fitted.user_factors_, fitted.item_factors_
    before = dict(fitted.stats_)
    for k, gain in ((10, "binary"), (3, "raw")):
        ref = evaluate(U, V, train, heldout, k=k, ndcg_gain=gain, n_jobs=1)
        got = evaluate_dask(fitted, data_dir, k=k, ndcg_gain=gain, n_jobs=1)
        assert list(got) == list(ref)
        for name in ref:
            assert got[name] == pytest.approx(ref[name], rel=1e-9, abs=1e-12), name
    # only sums and coverage bits came back: nothing of the size of a factor matrix
    assert fitted.stats_["bytes_from_workers"] - before["bytes_from_workers"] < 2 * 3 * 200
    # the course's eval TFRecords give the same, for a subset of the metrics
    rows = str(data_dir / "eval" / "items_for_user-*")
    got = evaluate_dask(fitted, eval_rows=rows, k=5, metrics=["recall@5", "auc", "coverage"])
    ref = evaluate(U, V, train, heldout, k=5, metrics=["recall@5", "auc", "coverage"])
    assert got == pytest.approx(ref, rel=1e-9)
    # partitions reading the whole item factor (indices not renumbered) agree too
    whole = DaskWALS(5, client=client, ship_whole_above=0.0, **PARAMS).fit(data_dir)
    assert all(r["whole"] for r in whole._reads["user"])
    ref = evaluate(whole.user_factors_, whole.item_factors_, train, heldout, k=4)
    assert evaluate_dask(whole, data_dir, k=4) == pytest.approx(ref, rel=1e-9)


def test_evaluate_dask_errors(client, data_dir, fitted):
    with pytest.raises(InvalidParameterError, match="exactly one of 'data'"):
        evaluate_dask(fitted)
    with pytest.raises(InvalidParameterError, match="'k' parameter of evaluate_dask"):
        evaluate_dask(fitted, data_dir, k=0)
    with pytest.raises(InvalidParameterError, match="'metrics' parameter of evaluate_dask"):
        evaluate_dask(fitted, data_dir, metrics=["nope"])
    assert np.isfinite(evaluate_dask(fitted, data_dir, metrics=["rmse"])["rmse"])
