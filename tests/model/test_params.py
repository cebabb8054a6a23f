"""estimator_from_settings: walsrec's settings to a WALS estimator, in one place."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from walsrec.errors import InvalidParameterError
from walsrec.model.params import (
    COLUMN_WEIGHT_DEFAULTS,
    column_weights,
    estimator_from_settings,
    wals_params,
)
from walsrec.model.wals import WALS

# the estimator's own defaults, as for an export, with the column weights' and a w0 mass
DEFAULTS = {**WALS().get_params(), **COLUMN_WEIGHT_DEFAULTS, "unobserved_mass": 30.0}


def matrix(seed: int = 0) -> sp.csr_matrix:
    x = sp.random(30, 12, density=0.3, format="csr", random_state=np.random.default_rng(seed))
    x.data = 1.0 + 4.0 * x.data
    return x


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_estimator_is_wals_params_and_column_weights_then_the_run_arguments(seed):
    x = matrix(seed)
    settings = {
        "embedding_dim": 5,
        "regularization": 0.05,
        "unobserved_weight": "auto",
        "alpha": "auto",
        "confidence": "log",
        "col_weights_from_counts": "log",
        "col_weight_exponent": 0.5,
        "sweeps": 99,  # not a WALS setting: ignored
    }
    model = estimator_from_settings(
        settings, x, defaults=DEFAULTS, sweeps=3, n_jobs=1, random_state=seed
    )
    want = wals_params(settings, x, defaults=DEFAULTS)
    weights = column_weights(settings, x, defaults=DEFAULTS)
    got = model.get_params()
    assert {name: got[name] for name in want} == want
    np.testing.assert_array_equal(got["col_weights"], weights)
    assert (got["sweeps"], got["n_jobs"], got["random_state"]) == (3, 1, seed)
    assert not hasattr(model, "user_factors_")  # not fitted
    ref = WALS(**want, col_weights=weights, sweeps=3, n_jobs=1, random_state=seed).fit(x)
    np.testing.assert_array_equal(model.fit(x).user_factors_, ref.user_factors_)


def test_given_arguments_replace_settings_and_given_col_weights_are_used_as_they_are():
    settings = {"embedding_dim": 4, "regularization": 0.1, "col_weights_from_counts": "log"}
    # no matrix: column_weights would need one for col_weights_from_counts, so it is not called
    model = estimator_from_settings(
        settings, defaults=DEFAULTS, col_weights=2.0, dtype="float64", embedding_dim=6
    )
    assert (model.col_weights, model.dtype, model.embedding_dim) == (2.0, "float64", 6)
    assert model.regularization == 0.1


def test_the_estimator_class_and_defaults_are_the_callers():
    class Sub(WALS):
        pass

    model = estimator_from_settings({"regularization": 0.2}, defaults=DEFAULTS, estimator_class=Sub)
    assert type(model) is Sub
    assert model.embedding_dim == WALS().embedding_dim  # from the defaults
    other = estimator_from_settings(
        {"regularization": 0.2}, defaults={**DEFAULTS, "embedding_dim": 7}
    )
    assert other.embedding_dim == 7


def test_validate_checks_the_arguments_now_and_settings_errors_pass_through():
    bad = {"embedding_dim": 0, "regularization": 0.1}
    estimator_from_settings(bad, defaults=DEFAULTS)  # not checked until fit
    with pytest.raises(
        InvalidParameterError, match=r"The 'embedding_dim' parameter of WALS must be an int >= 1"
    ):
        estimator_from_settings(bad, defaults=DEFAULTS, validate=True)
    with pytest.raises(
        InvalidParameterError, match=r"regularization = auto is chosen by validation: resolve"
    ):
        estimator_from_settings({"regularization": "auto"}, matrix(), defaults=DEFAULTS)
    with pytest.raises(
        InvalidParameterError, match=r"unobserved_weight = auto needs the training matrix"
    ):
        estimator_from_settings(
            {"regularization": 0.1, "unobserved_weight": "auto"}, defaults=DEFAULTS
        )
