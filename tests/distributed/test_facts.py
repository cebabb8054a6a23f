"""Settings resolved from facts the workers measure equal those resolved on the matrix."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from walsrec.data.native import save_csr
from walsrec.distributed.facts import matrix_facts
from walsrec.distributed.sources import native_source
from walsrec.errors import InvalidParameterError
from walsrec.model.params import MatrixFacts, column_weights, wals_params
from walsrec.training.config import TrainConfig

DEFAULTS = TrainConfig().to_dict()


def _stored(tmp_path, m):
    save_csr(tmp_path, "user_items", m)
    save_csr(tmp_path, "item_users", m.T.tocsr())
    return native_source(tmp_path)


@pytest.fixture(scope="module")
def matrix():
    rng = np.random.default_rng(5)
    m = sp.random(300, 70, density=0.08, format="csr", random_state=rng, dtype=np.float64)
    m.data = np.round(m.data * 20, 1)
    return m


@pytest.mark.parametrize("confidence", ["constant", "linear", "log", "bm25", "tfidf"])
def test_auto_weights_from_the_workers_equal_the_matrix(client, tmp_path, matrix, confidence):
    source = _stored(tmp_path, matrix)
    settings = {
        **DEFAULTS,
        "confidence": confidence,
        "alpha": "auto",
        "unobserved_weight": "auto",
        "regularization": 0.1,
        "col_weights_from_counts": "log",
        "col_weight_exponent": 0.3,
    }
    facts = matrix_facts(client, source, settings, defaults=DEFAULTS, partitions=3)
    assert facts.shape == matrix.shape and facts.nnz == matrix.nnz
    want, got = (
        wals_params(settings, matrix, defaults=DEFAULTS),
        wals_params(settings, facts, defaults=DEFAULTS),
    )
    for name in ("alpha", "unobserved_weight"):
        assert got[name] == pytest.approx(want[name], rel=1e-12), name
    np.testing.assert_allclose(
        column_weights(settings, facts, defaults=DEFAULTS),
        column_weights(settings, matrix, defaults=DEFAULTS),
        rtol=1e-15,
    )


def test_only_what_the_settings_need_is_measured(client, tmp_path, matrix):
    source = _stored(tmp_path, matrix)
    settings = {**DEFAULTS, "alpha": 2.0, "unobserved_weight": 0.1, "regularization": 0.1}
    assert matrix_facts(client, source, settings, defaults=DEFAULTS) == MatrixFacts(
        matrix.shape, matrix.nnz
    )


def test_a_value_bm25_cannot_weigh_names_its_entry(client, tmp_path):
    m = sp.csr_matrix(np.array([[1.0, 0, 2], [0, 3, 0], [4, 0, 0], [0, -5.0, 1]]))
    source = _stored(tmp_path, m)
    settings = {**DEFAULTS, "confidence": "bm25", "alpha": "auto", "regularization": 0.1}
    with pytest.raises(InvalidParameterError, match=r"Got -5.0 at \(row 3, column 1\) instead"):
        matrix_facts(client, source, settings, defaults=DEFAULTS, partitions=2)
    with pytest.raises(InvalidParameterError, match=r"Got -5.0 at \(row 3, column 1\) instead"):
        wals_params(settings, m, defaults=DEFAULTS)


def test_facts_without_what_the_settings_need_are_refused(matrix):
    settings = {**DEFAULTS, "confidence": "log", "alpha": "auto", "regularization": 0.1}
    with pytest.raises(InvalidParameterError, match=r"MatrixFacts.unit_mean is None"):
        wals_params(settings, MatrixFacts(matrix.shape, matrix.nnz), defaults=DEFAULTS)
