"""λ auto on the workers: the same splits, fits and scores as on one machine."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from walsrec.data.native import save_csr
from walsrec.distributed.sources import native_source
from walsrec.distributed.validation import validation_folds
from walsrec.training.regularization import choose_regularization, choose_regularization_dask
from walsrec.tuning.study import validation_split

from ..training.test_regularization import planted


def _stored(tmp_path, m):
    save_csr(tmp_path, "user_items", m)
    save_csr(tmp_path, "item_users", m.T.tocsr())
    return native_source(tmp_path)


def test_the_workers_cut_the_splits_of_one_machine(client, tmp_path):
    x = planted(n_users=230, n_items=90, per_user=12, seed=2)
    source = _stored(tmp_path, x)
    data = validation_folds(
        client, source, fraction=0.2, max_users=10**6, min_validated=10**6, seed=4, partitions=3
    )
    assert len(data.folds) == 3  # never enough users validated: every fold drawn
    for f, fold in enumerate(data.folds):
        fit, val = validation_split(x, 0.2, 4 + f)
        users = client.gather(fold.fit.parts["user"])
        items = client.gather(fold.fit.parts["item"])
        held = client.gather(fold.heldout)
        assert (sp.vstack(users) != fit).nnz == 0 and (sp.vstack(held) != val).nnz == 0
        assert (sp.vstack(items) != fit.T.tocsr()).nnz == 0
        assert fold.fit.nnz == fit.nnz
        assert fold.validated == np.count_nonzero(np.diff(val.indptr))


@pytest.mark.parametrize(
    "extra",
    [
        {},
        # the sampled users, BM25 with "auto" weights, count-based column weights and
        # another ν: everything the search reduces from the data
        {
            "max_users": 40,
            "settings": {
                "confidence": "bm25",
                "alpha": "auto",
                "unobserved_weight": "auto",
                "col_weights_from_counts": "log",
                "regularization_exponent": 0.5,
            },
        },
    ],
)
def test_lambda_auto_on_the_workers_equals_one_machine(client, tmp_path, extra):
    x = planted(seed=3)
    x.data = np.random.default_rng(0).integers(1, 5, x.nnz).astype(np.float64)
    source = _stored(tmp_path, x)
    settings = {"embedding_dim": 6, "dtype": "float64", **extra.get("settings", {})}
    common = dict(k=10, sweeps=4, seed=1, n_jobs=1, min_validated=200)
    if "max_users" in extra:
        common["max_users"] = extra["max_users"]
    one = choose_regularization(x, settings, **common)
    seen = []
    on_dask = choose_regularization_dask(
        client, source, settings, **common, partitions=3, progress=lambda lam, s: seen.append(lam)
    )
    assert on_dask.value == pytest.approx(one.value, rel=1e-12)
    assert (on_dask.folds, on_dask.validated_users, on_dask.fits) == (
        one.folds,
        one.validated_users,
        one.fits,
    )
    assert list(on_dask.scores) == pytest.approx(list(one.scores), rel=1e-12) == seen
    np.testing.assert_allclose(list(on_dask.scores.values()), list(one.scores.values()), rtol=1e-6)


def test_train_dask_chooses_lambda_without_the_matrix_in_the_client(
    client, data_dir, tmp_path, monkeypatch
):
    import walsrec.data.native as native
    import walsrec.data.prepare as prepare
    import walsrec.training.inputs as inputs
    from walsrec.training.config import TrainConfig
    from walsrec.training.loop import train

    # each λ is scored after train's default length: shorter here, on both sides
    monkeypatch.setattr(TrainConfig, "DEFAULT_SWEEPS", 3)
    common = dict(data=str(data_dir), embedding_dim=4, dtype="float64", threads=1, sweeps=1)
    one = train(**common, model_dir=str(tmp_path / "one"))

    def refuse(*args, **kwargs):
        raise AssertionError("the client read the training matrix")

    for module in (native, inputs):
        monkeypatch.setattr(module, "load_csr", refuse)
    monkeypatch.setattr(prepare, "load_prepared", refuse)
    on_dask = train(**common, model_dir=str(tmp_path / "d"), dask=client.scheduler.address)
    a, b = (json.loads((r.model_dir / "regularization.json").read_text()) for r in (one, on_dask))
    assert b["regularization"] == pytest.approx(a["regularization"], rel=1e-12)
    assert [lam for lam, _ in b["scores"]] == pytest.approx([lam for lam, _ in a["scores"]])
    np.testing.assert_allclose([s for _, s in b["scores"]], [s for _, s in a["scores"]], rtol=1e-6)
