"""The WALS + EASE hybrid served everywhere the model is: answers held to a dense oracle
z(u·Vᵀ) + β·z(x_u·B) ranked by the rules of walsrec.model.topk."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from fastapi.testclient import TestClient

from tests._exports import with_item_item
from tests._ranking import lexsort_top
from walsrec.errors import DataFormatError, InvalidParameterError
from walsrec.model import _reference as ref
from walsrec.serving.app import ServiceSettings, create_app
from walsrec.serving.export import read_export
from walsrec.serving.model import load_model
from walsrec.training.hybrid import BLEND_GRID

from .conftest import make_export


@pytest.fixture(scope="module")
def hybrid_model_dir(data_dir, tmp_path_factory):
    """A model trained with the item-item part on, λ_B given, β chosen on validation."""
    from walsrec.training import train

    model_dir = tmp_path_factory.mktemp("hybrid") / "model"
    train(
        data=str(data_dir),
        model_dir=str(model_dir),
        sweeps=3,
        embedding_dim=8,
        threads=1,
        regularization=0.05,
        item_item="on",
        item_regularization=20.0,
    )
    return model_dir


@pytest.fixture(scope="module")
def hybrid(hybrid_model_dir):
    return load_model(hybrid_model_dir)


def _z(s):
    s = np.asarray(s, dtype=np.float64)
    sd = s.std()
    return (s - s.mean()) / (sd if sd > 0 else 1.0)


def _oracle(model, factor, history):
    """The hybrid's scores of one user, in float64, from the export's arrays."""
    weights = model.item_weights
    b = weights.toarray() if sp.issparse(weights) else np.asarray(weights, dtype=np.float64)
    x = np.zeros(model.n_items)
    x[history] = 1.0
    wals = model.item_factors.astype(np.float64) @ np.asarray(factor, dtype=np.float64)
    return _z(wals) + model.blend_weight * _z(x @ b)


def _check_list(result, model, scores, k, **rules):
    want = lexsort_top(scores, k, **rules)
    assert result.indices.tolist()[: len(want)] == want.tolist() or np.allclose(
        scores[result.indices], scores[want], rtol=0, atol=1e-5
    )  # ties within float32 rounding may swap
    np.testing.assert_allclose(result.scores, scores[result.indices], rtol=0, atol=2e-5)


def test_the_export_keeps_b_and_the_choice(hybrid_model_dir, hybrid):
    record = json.loads((hybrid_model_dir / "item_item.json").read_text())
    assert record["item_item"] is True and record["item_regularization"] == 20.0
    assert [b for b, _ in record["blend_scores"]] == [b for b in BLEND_GRID if b > 0]
    best = max(record["blend_scores"], key=lambda p: (p[1], -p[0]))
    assert record["blend_weight"] == best[0] and record["seconds"] > 0
    settings = hybrid.meta["item_item"]
    assert settings["blend_weight"] == hybrid.blend_weight == best[0]
    assert settings["form"] == "dense" and settings["choice"] == record
    assert (hybrid.path / "item_item" / "weights.npy").is_file()
    assert hybrid.hybrid and hybrid.item_weights.dtype == np.float32
    # B is EASE's of the training matrix at λ_B
    want = ref.ease_weights(hybrid.user_items, 20.0)
    np.testing.assert_allclose(hybrid.item_weights, want, atol=1e-5 * np.abs(want).max())


def test_recommend_equals_the_oracle_with_seen_items_and_filters(hybrid):
    for user in (0, 7, hybrid.n_users - 1):
        uid = hybrid.users.id(user)
        seen = hybrid.user_items[user].indices
        scores = _oracle(hybrid, hybrid.user_factors[user], seen)
        _check_list(hybrid.recommend(uid, k=7), hybrid, scores, 7, excluded=seen)
        _check_list(hybrid.recommend(uid, k=5, exclude_seen=False), hybrid, scores, 5, excluded=[])
        banned = [hybrid.items.id(j) for j in range(0, hybrid.n_items, 3)]
        allow = [hybrid.items.id(j) for j in range(0, hybrid.n_items, 2)]
        got = hybrid.recommend(uid, k=6, filter_items=banned, items=allow)
        _check_list(
            got,
            hybrid,
            scores,
            6,
            excluded=seen,
            filter_items=range(0, hybrid.n_items, 3),
            items=range(0, hybrid.n_items, 2),
        )


def test_batch_recommendations_equal_one_by_one(hybrid):
    users = np.arange(hybrid.n_users)
    items, scores = hybrid.recommend_indices(users, k=5, n_jobs=2, chunk_size=7)
    for user in (0, 11, hybrid.n_users - 1):
        one = hybrid.recommend(hybrid.users.id(user), k=5)
        assert items[user].tolist() == one.indices.tolist()
        np.testing.assert_allclose(scores[user], one.scores, rtol=1e-6, atol=1e-6)


def test_a_new_user_is_folded_in_and_blended(hybrid):
    history = [1, 4, 9]
    pairs = [(hybrid.items.id(j), 1.0) for j in history] + [("not-an-item", 1.0)]
    got = hybrid.recommend_for_interactions(pairs, k=8)
    factor, _ = hybrid.fold_in(pairs)
    scores = _oracle(hybrid, factor, history)
    _check_list(got, hybrid, scores, 8, excluded=history)
    assert got.ignored == ["not-an-item"]


def test_predict_writes_the_hybrids_lists(hybrid, tmp_path):
    from walsrec.serving.predict import predict

    predict(hybrid, tmp_path / "top.csv", k=3, n_jobs=1)
    rows = [line.split(",") for line in (tmp_path / "top.csv").read_text().splitlines()[1:]]
    assert len(rows) == 3 * hybrid.n_users
    for user in (0, 17, hybrid.n_users - 1):
        want = hybrid.recommend(hybrid.users.id(user), k=3)
        got = rows[3 * user : 3 * user + 3]
        assert [r[0].strip('"') for r in got] == [hybrid.users.id(user)] * 3
        assert [r[2].strip('"') for r in got] == want.items


def test_the_service_answers_with_the_hybrid(hybrid_model_dir, hybrid):
    app = create_app(ServiceSettings(str(hybrid_model_dir), poll_interval=0))
    with TestClient(app) as c:
        uid = hybrid.users.id(3)
        r = c.get(f"/recommendations/{uid}", params={"k": 4})
        assert r.status_code == 200
        assert [x["item"] for x in r.json()["items"]] == hybrid.recommend(uid, k=4).items
        info = c.get("/model").json()
        assert info["item_item"]["blend_weight"] == hybrid.blend_weight
        item = hybrid.items.id(2)
        r = c.get(f"/similar/{item}", params={"k": 3, "method": "item-item"})
        assert r.status_code == 200
        want = hybrid.similar_items(item, k=3, method="item-item").items
        assert [x["item"] for x in r.json()["items"]] == want


def test_similar_items_by_b(hybrid):
    item = 5
    got = hybrid.similar_items(hybrid.items.id(item), k=6, method="item-item")
    row = np.asarray(hybrid.item_weights[item], dtype=np.float64)
    want = lexsort_top(row, 6, excluded=[item])
    assert got.indices.tolist() == want.tolist()


def test_similar_items_by_b_needs_b(tmp_path):
    model = load_model(make_export(tmp_path))
    with pytest.raises(InvalidParameterError, match=r"has no item-item weights"):
        model.similar_items("i1", method="item-item")
    with pytest.raises(InvalidParameterError, match=r"'method' parameter of similar_items"):
        model.similar_items("i1", method="ease")


def _hybrid_export(tmp_path, weights, beta=0.5):
    return with_item_item(make_export(tmp_path), tmp_path, weights, beta=beta, regularization=3.0)


def test_a_sparse_b_is_served_exactly(tmp_path):
    from walsrec.model.ease import EASE

    ex = read_export(make_export(tmp_path / "base"))
    b = EASE(3.0, form="sparse", density=5).fit(ex.user_items).weights_
    model = load_model(_hybrid_export(tmp_path, b))
    assert sp.issparse(model.item_weights) and model.item_weights.nnz == b.nnz
    for user in (0, 5, 39):
        seen = model.user_items[user].indices
        scores = _oracle(model, model.user_factors[user], seen)
        _check_list(model.recommend(model.users.id(user), k=5), model, scores, 5, excluded=seen)


def test_a_corrupt_b_is_an_error_naming_the_file(tmp_path):
    b = np.zeros((30, 30), dtype=np.float32)
    path = _hybrid_export(tmp_path, b)
    np.save(path / "item_item" / "weights.npy", np.zeros((30, 29), dtype=np.float32))
    with pytest.raises(DataFormatError, match=r"weights\.npy: shape \(30, 29\) does not match"):
        load_model(path)
    bad = b.copy()
    bad[17, 3] = np.nan
    np.save(path / "item_item" / "weights.npy", bad)
    with pytest.raises(DataFormatError, match=r"weights\.npy: NaN or infinity in rows 0"):
        load_model(path)
    meta = json.loads((path / "model.json").read_text())
    meta["item_item"]["blend_weight"] = -1
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match=r"model\.json: 'item_item' must hold a finite"):
        load_model(path)


def test_write_export_refuses_a_b_of_the_wrong_shape(tmp_path):
    with pytest.raises(InvalidParameterError, match=r"must have shape \(30, 30\)"):
        _hybrid_export(tmp_path, np.zeros((30, 3), dtype=np.float32))
