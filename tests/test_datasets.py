from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest

from walsrec.data.interactions import Interactions
from walsrec.datasets import generate_visits
from walsrec.errors import InvalidParameterError


def test_same_seed_same_table_other_seed_differs():
    a, b, c = (
        generate_visits(3_000, seed=5),
        generate_visits(3_000, seed=5),
        generate_visits(3_000, seed=6),
    )
    assert a.equals(b)
    assert not a.equals(c)
    assert a.column_names == ["visitor_id", "article_id", "session_duration", "timestamp"]
    assert pc.min(a["session_duration"]).as_py() > 0


def test_chunking_does_not_change_the_distribution_shape():
    t = generate_visits(10_000, n_users=500, n_items=200, seed=1, chunk_size=777)
    assert t.num_rows == 10_000
    assert pc.count_distinct(t["visitor_id"]).as_py() <= 500
    assert pc.count_distinct(t["article_id"]).as_py() <= 200


def test_power_law_activity_and_popularity():
    t = generate_visits(50_000, n_users=2_000, n_items=1_000, seed=2)
    inter = Interactions.from_table(t, "visitor_id", "article_id")
    item_counts = np.sort(np.asarray(inter.user_items.sum(axis=0)).ravel())[::-1]
    user_counts = np.sort(np.diff(inter.user_items.indptr))[::-1]
    # heavy heads: the top 10% hold far more than 10% of the activity
    assert item_counts[:100].sum() / item_counts.sum() > 0.3
    assert user_counts[:200].sum() / user_counts.sum() > 0.25


def test_planted_tastes_beat_most_popular():
    """Item-item co-occurrence (a taste signal) predicts held-out visits better than
    global popularity: the structure a factorization model is meant to find exists."""
    t = generate_visits(60_000, n_users=2_000, n_items=400, seed=3)
    inter = Interactions.from_table(t, "visitor_id", "article_id")
    m = (inter.user_items > 0).astype(np.float64).tocsr()
    rng = np.random.default_rng(0)
    popularity = np.asarray(m.sum(axis=0)).ravel()
    hits_pop = hits_cooc = n = 0
    for u in rng.choice(m.shape[0], 300, replace=False):
        items = m[u].indices
        if len(items) < 4:
            continue
        held = rng.choice(items, 1)[0]
        train_items = items[items != held]
        cooc = np.asarray(m[:, train_items].sum(axis=1)).ravel() @ m
        cooc = np.asarray(cooc).ravel() / (popularity + 1) ** 0.5
        pop = popularity.copy()
        for scores in (pop, cooc):
            scores[train_items] = -np.inf  # seen items are never recommended
        hits_pop += held in np.argsort(-pop)[:10]
        hits_cooc += held in np.argsort(-cooc)[:10]
        n += 1
    assert n > 100
    assert hits_cooc > 1.3 * hits_pop, (hits_cooc, hits_pop)


def test_invalid_parameters():
    with pytest.raises(
        InvalidParameterError,
        match=r"'n_interactions' parameter of "
        r"generate_visits must be an int >= 1. Got 0 instead",
    ):
        generate_visits(0)
    with pytest.raises(
        InvalidParameterError,
        match=r"'popularity_share' parameter of "
        r"generate_visits must be a float in the range \[0, 1\]. Got 2 instead",
    ):
        generate_visits(10, popularity_share=2)


def test_visits_of_another_day_come_from_the_same_site():
    from walsrec.datasets import generate_visits
    from walsrec.errors import InvalidParameterError

    base = generate_visits(3000, seed=5)
    assert generate_visits(3000, seed=5, visits_seed=None).equals(base)  # the default
    other = generate_visits(3000, seed=5, visits_seed=1)
    assert not other.equals(base)
    assert other.equals(generate_visits(3000, seed=5, visits_seed=1))

    # the same visitors and articles, with the same tastes: the articles each visitor
    # reads most are drawn from the same topics, so the pairs overlap far more than those
    # of another site's
    def pairs(t):
        return set(
            zip(t.column("visitor_id").to_pylist(), t.column("article_id").to_pylist(), strict=True)
        )

    same_site = len(pairs(base) & pairs(other))
    other_site = len(pairs(base) & pairs(generate_visits(3000, seed=6)))
    assert same_site > 3 * other_site
    with pytest.raises(InvalidParameterError, match="'visits_seed' parameter of generate_visits"):
        generate_visits(10, visits_seed=-1)
