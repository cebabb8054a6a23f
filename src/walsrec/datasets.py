"""Generated datasets: realistic implicit feedback at any size, reproducible from a seed.

Real data never ships in the package (MovieLens and friends forbid redistribution), so the
demo, the tests and the benchmarks use :func:`generate_visits`: visits of a news site like
the one in Google's recommendation course (visitor id, article id, session duration), with

* power-law user activity and item popularity, as in real logs;
* planted latent tastes: every article belongs to one topic, every visitor prefers a few
  topics (a sparse Dirichlet draw), and most visits follow those preferences, so a
  factorization model measurably beats recommending the most popular articles;
* session durations that are longer when the article matches the visitor's taste, so
  the course's scaled-median rating carries signal;
* repeated visits of the same (visitor, article) pair, which ``prepare`` aggregates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from walsrec._checks import check_int
from walsrec.errors import InvalidParameterError

__all__ = ["VISITS_PREPARE", "generate_visits"]

# How the demo prepares the generated visits, as walsrec.data.prepare.prepare's keywords:
# their columns, and the course's rating min(1, 0.3 · duration / median).
VISITS_PREPARE = {
    "user_col": "visitor_id",
    "item_col": "article_id",
    "rating_col": "session_duration",
    "time_col": "timestamp",
    "rating_transform": "scaled-median",
}
_EPOCH_START = 1_767_225_600  # 2026-01-01T00:00:00Z


_OWNER = "parameter of generate_visits"


def _power_law_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Weights proportional to rank**-exponent, ranks shuffled so ids carry no order."""
    w = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    rng.shuffle(w)
    return w / w.sum()


def generate_visits(
    n_interactions: int = 100_000,
    n_users: int | None = None,
    n_items: int | None = None,
    *,
    n_topics: int = 20,
    taste_concentration: float = 0.1,
    popularity_share: float = 0.2,
    seed: int = 0,
    chunk_size: int = 1_000_000,
    visits_seed: int | None = None,
):
    """Generate news-site visits with planted tastes.

    Parameters
    ----------
    n_interactions : int, default 100_000
        Number of visits (rows). Repeated (visitor, article) pairs are included.
    n_users, n_items : int, optional
        Number of distinct visitors and articles to draw from. Defaults:
        ``n_interactions // 20`` visitors (at least 10) and ``n_interactions // 50`` articles
        (at least 20). Some may receive no visit.
    n_topics : int, default 20
        Number of latent topics; each article belongs to one.
    taste_concentration : float, default 0.1
        Dirichlet concentration of each visitor's topic preferences; small values mean a
        visitor reads one or two topics.
    popularity_share : float, default 0.2
        Fraction of visits that ignore taste and follow global popularity.
    seed : int, default 0
        Seed of the generator; the same seed gives the same table.
    chunk_size : int, default 1_000_000
        Visits drawn per chunk, which bounds memory for very large tables.
    visits_seed : int, optional
        Draw the visits and their times from a stream of their own, seeded ``[seed,
        visits_seed]``: other visits to the same site (the same visitors, articles and
        tastes as ``seed`` plants), such as the next day's. By default they continue the
        stream that planted the site.

    Returns
    -------
    pyarrow.Table
        Columns ``visitor_id`` (string, e.g. ``"v000042"``), ``article_id`` (string),
        ``session_duration`` (float64 seconds, > 0) and ``timestamp`` (int64 Unix seconds,
        within 30 days from 2026-01-01).

    Examples
    --------
    >>> from walsrec.datasets import generate_visits
    >>> table = generate_visits(1_000, seed=1)
    >>> table.num_rows, table.column_names
    (1000, ['visitor_id', 'article_id', 'session_duration', 'timestamp'])
    """
    sizes = _checked_params(
        n_interactions,
        n_users,
        n_items,
        n_topics,
        chunk_size,
        taste_concentration,
        popularity_share,
    )
    n_interactions, n_users, n_items, n_topics, chunk_size = sizes
    rng = np.random.default_rng(seed)
    site = _plant_site(n_users, n_items, n_topics, taste_concentration, rng)
    if visits_seed is not None:
        visits_seed = check_int(visits_seed, "visits_seed", _OWNER, 0)
        rng = np.random.default_rng([seed, visits_seed])
    chunks = [
        _draw_visits(site, min(chunk_size, n_interactions - start), popularity_share, rng)
        for start in range(0, n_interactions, chunk_size)
    ]
    users = np.concatenate([u for u, _, _ in chunks])
    items = np.concatenate([item for _, item, _ in chunks])
    durations = np.concatenate([d for _, _, d in chunks])
    timestamps = _EPOCH_START + np.sort(rng.integers(0, 30 * 86_400, size=n_interactions))
    return _visits_table(users, items, durations, timestamps, n_users, n_items)


def _checked_params(
    n_interactions, n_users, n_items, n_topics, chunk_size, taste_concentration, popularity_share
) -> tuple[int, int, int, int, int]:
    """(n_interactions, n_users, n_items, n_topics, chunk_size) as :func:`generate_visits`
    takes them, defaults filled in, after checking every parameter's rule."""
    n_interactions = check_int(n_interactions, "n_interactions", _OWNER, 1)
    # not allow_none=True: that rule would read "an int >= 1 or None"
    n_users = check_int(n_users, "n_users", _OWNER, 1) if n_users is not None else None
    n_items = check_int(n_items, "n_items", _OWNER, 1) if n_items is not None else None
    n_topics = check_int(n_topics, "n_topics", _OWNER, 1)
    chunk_size = check_int(chunk_size, "chunk_size", _OWNER, 1)
    if not (np.isfinite(taste_concentration) and taste_concentration > 0):
        raise InvalidParameterError(
            "The 'taste_concentration' parameter of generate_visits must be a float > 0. "
            f"Got {taste_concentration!r} instead."
        )
    if not (0.0 <= popularity_share <= 1.0):
        raise InvalidParameterError(
            "The 'popularity_share' parameter of generate_visits must be a float in the "
            f"range [0, 1]. Got {popularity_share!r} instead."
        )
    n_users = n_users if n_users is not None else max(10, n_interactions // 20)
    n_items = n_items if n_items is not None else max(20, n_interactions // 50)
    n_topics = min(n_topics, n_items)
    return n_interactions, n_users, n_items, n_topics, chunk_size


@dataclass
class _Site:
    """The planted world visits are drawn from: cumulative visitor activity, the articles
    of each topic with their cumulative popularity, and each visitor's topic tastes."""

    user_cum: np.ndarray  # (n_users,) cumulative activity
    global_cum: np.ndarray  # (n_items,) cumulative popularity
    item_topic: np.ndarray  # (n_items,) the topic of each article
    topic_order: np.ndarray  # (n_items,) articles grouped by topic
    starts: np.ndarray  # (n_topics + 1,) topic t owns topic_order[starts[t]:starts[t + 1]]
    within: np.ndarray  # (n_items,) cumulative popularity in topic_order
    lo: np.ndarray  # (n_topics,) where each topic's span of ``within`` begins
    hi: np.ndarray  # (n_topics,) and ends
    tastes: np.ndarray  # (n_users, n_topics) each visitor's topic preferences
    taste_cum: np.ndarray  # (n_users, n_topics) their cumulative sums


def _plant_site(
    n_users: int, n_items: int, n_topics: int, taste_concentration: float, rng
) -> _Site:
    """Draw activity, popularity, the topic of each article and each visitor's tastes."""
    activity = _power_law_weights(n_users, 0.9, rng)
    popularity = _power_law_weights(n_items, 0.8, rng)
    # Articles grouped by topic: topic t owns items topic_order[starts[t]:starts[t+1]].
    item_topic = rng.integers(0, n_topics, size=n_items)
    item_topic[:n_topics] = np.arange(n_topics)  # every topic owns at least one article
    topic_order = np.argsort(item_topic, kind="stable")
    starts = np.searchsorted(item_topic[topic_order], np.arange(n_topics + 1))
    within = np.cumsum(popularity[topic_order])
    lo = np.concatenate(([0.0], within))[starts[:-1]]
    hi = within[starts[1:] - 1]
    tastes = rng.dirichlet(np.full(n_topics, taste_concentration), size=n_users)
    return _Site(
        user_cum=np.cumsum(activity),
        global_cum=np.cumsum(popularity),
        item_topic=item_topic,
        topic_order=topic_order,
        starts=starts,
        within=within,
        lo=lo,
        hi=hi,
        tastes=tastes,
        taste_cum=np.cumsum(tastes, axis=1),
    )


def _draw_visits(site: _Site, m: int, popularity_share: float, rng):
    """``m`` visits: (visitor, article, session duration) arrays."""
    n_users, n_topics = site.tastes.shape
    n_items = len(site.item_topic)
    u = np.minimum(np.searchsorted(site.user_cum, rng.random(m) * site.user_cum[-1]), n_users - 1)
    # Topic from the visitor's taste (inverse CDF per row), then an article of that topic
    # by popularity; a share of visits follows global popularity instead.
    r = rng.random(m)[:, None]
    topic = np.minimum((site.taste_cum[u] < r).sum(axis=1), n_topics - 1)
    pos = site.lo[topic] + rng.random(m) * (site.hi[topic] - site.lo[topic])
    idx = np.clip(
        np.searchsorted(site.within, pos, side="right"),
        site.starts[topic],
        site.starts[topic + 1] - 1,
    )
    item = site.topic_order[idx]
    popular = rng.random(m) < popularity_share
    n_pop = int(popular.sum())
    item[popular] = np.minimum(
        np.searchsorted(site.global_cum, rng.random(n_pop) * site.global_cum[-1]), n_items - 1
    )
    # Longer sessions on articles that match the visitor's taste.
    affinity = site.tastes[u, site.item_topic[item]]
    duration = np.exp(rng.normal(3.5 + 1.5 * affinity, 0.8, size=m))
    return u, item, np.round(duration, 1) + 1.0


def _visits_table(users, items, durations, timestamps, n_users: int, n_items: int):
    """The pyarrow table of the visits, ids as zero-padded names ("v042", "a007")."""
    import pyarrow as pa

    uwidth = len(str(n_users - 1))
    iwidth = len(str(n_items - 1))
    user_names = pa.array([f"v{i:0{uwidth}d}" for i in range(n_users)], pa.string())
    item_names = pa.array([f"a{i:0{iwidth}d}" for i in range(n_items)], pa.string())
    return pa.table(
        {
            "visitor_id": user_names.take(pa.array(users)),
            "article_id": item_names.take(pa.array(items)),
            "session_duration": pa.array(durations),
            "timestamp": pa.array(timestamps.astype(np.int64)),
        }
    )
