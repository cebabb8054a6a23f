"""regularization = "auto": λ chosen by validation inside the training data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.sparse as sp

from walsrec.errors import InvalidParameterError
from walsrec.metrics import evaluate
from walsrec.model.wals import WALS
from walsrec.training.config import column_weights, wals_params
from walsrec.training.regularization import (
    FALLBACK_REGULARIZATION,
    RegularizationChoice,
    choose_regularization,
)
from walsrec.tuning.study import validation_split

SETTINGS = {"embedding_dim": 8}


def planted(n_users=300, n_items=120, rank=4, per_user=24, seed=0) -> sp.csr_matrix:
    """Users draw items from a rank-`rank` taste model with a popularity skew: a model with
    too little regularization memorises, one with too much ranks by popularity only."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n_users, rank))
    v = rng.standard_normal((n_items, rank))
    logits = 2.0 * u @ v.T / math.sqrt(rank) + np.linspace(1.5, -1.5, n_items)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    rows, cols = [], []
    for user in range(n_users):
        items = rng.choice(n_items, per_user, replace=False, p=p[user])
        rows += [user] * per_user
        cols += list(items)
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_users, n_items))


def test_the_choice_is_the_best_score_of_a_path_that_stops_after_patience():
    x = planted()
    grid = [1e-4, 1e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]
    seen = []
    choice = choose_regularization(
        x, SETTINGS, grid=grid, patience=2, n_jobs=1, progress=lambda *a: seen.append(a)
    )
    lams = list(choice.scores)
    assert lams == grid[: len(lams)]
    assert seen == list(choice.scores.items())
    assert choice.value == max(choice.scores, key=choice.scores.get)
    # an interior optimum: memorising (1e-4) and shrinking to popularity (10) both lose
    best = grid.index(choice.value)
    assert 0 < best < len(grid) - 1
    assert choice.scores[grid[0]] < choice.scores[choice.value]
    # stopped two λ after the best, so the tail of the grid was never fitted
    assert len(lams) == min(best + 3, len(grid))
    assert all(choice.scores[lam] < choice.scores[choice.value] for lam in lams[best + 1 :])
    assert choice.metric == "ndcg@10" and choice.sweeps == choice.folds * (10 + 3 * (len(lams) - 1))


def test_one_lambda_scores_what_a_fit_at_that_lambda_scores_on_the_split():
    """The oracle: WALS.fit on the fit part at λ, evaluated on the held-out part."""
    x = planted(seed=1)
    choice = choose_regularization(x, SETTINGS, grid=[0.05], seed=4, min_validated=1, k=5, n_jobs=1)
    fit, val = validation_split(x, 0.1, 4)
    settings = {**SETTINGS, "regularization": 0.05}
    model = WALS(
        **wals_params(settings, fit),
        col_weights=column_weights(settings, fit),
        sweeps=10,
        n_jobs=1,
        random_state=4,
    ).fit(fit)
    want = evaluate(model.user_factors_, model.item_factors_, fit, val, k=5)["ndcg@5"]
    assert choice.folds == 1 and choice.metric == "ndcg@5"
    assert choice.scores == {0.05: pytest.approx(want)}
    assert choice.validated_users == np.count_nonzero(np.diff(val.indptr))


def test_a_later_lambda_continues_from_the_previous_factors():
    x = planted(seed=2)
    choice = choose_regularization(
        x, SETTINGS, grid=[0.01, 0.1], warm_sweeps=2, patience=5, min_validated=1, n_jobs=1
    )
    fit, val = validation_split(x, 0.1, 0)
    settings = {**SETTINGS, "regularization": 0.01}
    model = WALS(
        **wals_params(settings, fit),
        col_weights=column_weights(settings, fit),
        sweeps=10,
        n_jobs=1,
        random_state=0,
    ).fit(fit)
    model.set_params(regularization=0.1)
    for _ in range(2):
        model.update_rows(fit)
        model.update_cols(fit)
    want = evaluate(model.user_factors_, model.item_factors_, fit, val, k=10)["ndcg@10"]
    assert choice.scores[0.1] == pytest.approx(want)


def test_small_data_is_scored_on_more_splits_up_to_three():
    x = planted(n_users=120)
    one = choose_regularization(x, SETTINGS, grid=[0.05], min_validated=1, n_jobs=1)
    three = choose_regularization(x, SETTINGS, grid=[0.05], min_validated=10**6, n_jobs=1)
    assert (one.folds, three.folds) == (1, 3)
    assert 0 < one.validated_users <= 120 and three.validated_users > 2 * one.validated_users
    sampled = choose_regularization(
        x, SETTINGS, grid=[0.05], min_validated=1, max_users=25, n_jobs=1
    )
    assert sampled.validated_users == 25


def test_without_a_user_to_validate_the_fallback_is_chosen():
    x = sp.csr_matrix(np.eye(6, 4))  # one entry per user: none can be held out
    choice = choose_regularization(x, SETTINGS, n_jobs=1)
    assert choice == RegularizationChoice(FALLBACK_REGULARIZATION, metric="ndcg@10")
    assert json.loads(json.dumps(choice.to_dict()))["regularization"] == FALLBACK_REGULARIZATION


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (
            {"grid": [0.1, 0.01]},
            r"'grid' parameter of choose_regularization must be a non-empty ascending "
            r"sequence of finite floats > 0. Got \[0.1, 0.01\]",
        ),
        ({"grid": []}, r"'grid' parameter .* Got \[\]"),
        ({"k": 0}, r"'k' parameter of choose_regularization must be an int >= 1. Got 0"),
        ({"patience": 1.5}, r"'patience' parameter .* an int >= 1. Got 1.5"),
        (
            {"validation_fraction": 1.0},
            r"'validation_fraction' parameter of choose_regularization must be a float in "
            r"\(0, 1\). Got 1.0",
        ),
    ],
)
def test_bad_arguments_name_the_parameter_and_value(kw, message):
    with pytest.raises(InvalidParameterError, match=message):
        choose_regularization(planted(n_users=20), SETTINGS, **kw)


def test_to_dict_is_plain_json_with_undefined_scores_as_null():
    choice = RegularizationChoice(0.01, {0.005: math.nan, 0.01: 0.25}, "ndcg@10", 1, 7, 13, 0.5)
    data = json.loads(json.dumps(choice.to_dict(), allow_nan=False))
    assert data["scores"] == [[0.005, None], [0.01, 0.25]]
    assert data["regularization"] == 0.01 and data["folds"] == 1
