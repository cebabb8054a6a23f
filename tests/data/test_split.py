"""The validation split is defined entry by entry: any range of rows splits alone."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from walsrec.data.split import (
    holdout_mask,
    sample_positions,
    validation_draws,
    validation_mask,
    validation_split,
)


@given(
    n_users=st.integers(0, 60),
    nnz=st.integers(0, 90),
    seed=st.integers(0, 2**32),
    data=st.data(),
)
@settings(max_examples=60, deadline=None)
def test_the_draws_are_the_generators_and_any_range_draws_its_share(n_users, nnz, seed, data):
    # the stream as documented: Generator.random for the users, then
    # Generator.integers(0, 2**31) for the entries
    rng = np.random.default_rng(seed)
    u, r = rng.random(n_users), rng.integers(0, 2**31, size=nnz, dtype=np.int64)
    got_u, got_r = validation_draws(seed, n_users, 0, n_users, 0, nnz)
    np.testing.assert_array_equal(got_u, u)
    np.testing.assert_array_equal(got_r, r)
    lo = data.draw(st.integers(0, n_users))
    hi = data.draw(st.integers(lo, n_users))
    a = data.draw(st.integers(0, nnz))
    b = data.draw(st.integers(a, nnz))
    part_u, part_r = validation_draws(seed, n_users, lo, hi, a, b)
    np.testing.assert_array_equal(part_u, u[lo:hi])
    np.testing.assert_array_equal(part_r, r[a:b])


@given(seed=st.integers(0, 1000), cuts=st.lists(st.integers(0, 80), max_size=5))
@settings(max_examples=40, deadline=None)
def test_partitions_split_as_the_whole_matrix(seed, cuts):
    m = sp.random(80, 30, density=0.15, format="csr", random_state=seed)
    whole = validation_mask(m.indptr, 0, 0, 80, 0.3, seed)
    edges = sorted({0, 80, *cuts})
    parts = [
        validation_mask(m.indptr[lo : hi + 1], lo, int(m.indptr[lo]), 80, 0.3, seed)
        for lo, hi in itertools.pairwise(edges)
    ]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    fit, val = validation_split(m, 0.3, seed)
    assert fit.nnz + val.nnz == m.nnz == whole.size and val.nnz == whole.sum()
    # never all of a user's entries; about the fraction of each
    counts, held = np.diff(m.indptr), np.diff(val.indptr)
    assert np.all((held < counts) | (counts == 0))
    assert np.all(np.abs(held - 0.3 * counts) < 1 + 1e-9)


@given(
    seed=st.integers(0, 1000),
    cuts=st.lists(st.integers(0, 60), max_size=5),
    how=st.sampled_from(["random", "user", "time"]),
)
@settings(max_examples=40, deadline=None)
def test_prepare_holdouts_split_by_ranges_as_the_whole_matrix(seed, cuts, how):
    m = sp.random(60, 25, density=0.2, format="csr", random_state=seed)
    times = np.random.default_rng(seed).integers(0, 4, m.nnz)  # ties in time too
    whole = holdout_mask(m.indptr, 0, 0, 60, 0.3, seed, how, times)
    edges = sorted({0, 60, *cuts})
    parts = [
        holdout_mask(
            m.indptr[lo : hi + 1],
            lo,
            int(m.indptr[lo]),
            60,
            0.3,
            seed,
            how,
            times[m.indptr[lo] : m.indptr[hi]],
        )
        for lo, hi in itertools.pairwise(edges)
    ]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    if how == "random":  # each entry by its own draw, the generator's
        np.testing.assert_array_equal(whole, np.random.default_rng(seed).random(m.nnz) < 0.3)
        return
    counts = np.diff(m.indptr)
    held = np.add.reduceat(whole.astype(int), m.indptr[:-1])[counts > 0]
    assert np.all(held < counts[counts > 0])  # never all of a user's entries
    if how == "time":  # each user's held entries are its latest
        for row in np.flatnonzero(counts):
            a, b = m.indptr[row], m.indptr[row + 1]
            t, h = times[a:b], whole[a:b]
            if h.any() and (~h).any():
                assert t[h].min() >= t[~h].max()


def test_the_sample_is_positions_among_the_validated_users():
    users = np.sort(np.random.default_rng(9).choice(10_000, 3_000, replace=False))
    chosen = np.random.default_rng([3, 1]).choice(users, 500, replace=False)
    np.testing.assert_array_equal(users[sample_positions(users.size, 500, 3)], np.sort(chosen))
    assert sample_positions(500, 500, 3) is None


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_the_fraction_is_checked(fraction):
    from walsrec.errors import InvalidParameterError

    m = sp.random(5, 5, density=0.5, format="csr", random_state=0)
    with pytest.raises(InvalidParameterError, match=r"'validation_fraction' parameter"):
        validation_split(m, fraction)
