"""Validation splits of a training matrix, cut and kept on the Dask workers.

``regularization = "auto"`` scores each λ on splits of the training matrix
(:func:`walsrec.data.split.validation_split`). On a cluster the client never holds them:
each user partition's worker cuts its rows exactly as one machine cuts the whole matrix
(the split is defined entry by entry, see :mod:`walsrec.data.split`), the client learns
only how many users each partition validates (and draws the positions of the sampled
ones), and the item partitions of the fit part are assembled on their workers from the
user partitions' columns, worker to worker. A :class:`DaskFold` is a fit part
(:class:`~walsrec.distributed.sources.PartsSource`, for :class:`DaskWALS` to fit any
number of times) and its held-out part, both on the workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from walsrec.data.split import check_fraction, sample_positions
from walsrec.distributed import _tasks, layout
from walsrec.distributed.layout import Cluster
from walsrec.distributed.sources import NativeSource, PartsSource

__all__ = ["DaskFold", "ValidationData", "mean_log_mass", "validation_folds"]


@dataclass(frozen=True, eq=False)
class DaskFold:
    """One validation split on the workers: ``fit`` (both orientations), ``heldout`` (one
    task result per user partition) and the number of users it scores."""

    fit: PartsSource
    heldout: list
    validated: int


@dataclass(frozen=True, eq=False)
class ValidationData:
    """The folds drawn and the users they score in all. (The whole matrix's partitions
    they were cut from are not kept: the workers hold only the folds.)"""

    folds: list[DaskFold]
    validated: int


def validation_folds(
    client,
    source: NativeSource,
    *,
    fraction: float = 0.1,
    max_users: int = 10_000,
    min_validated: int = 5_000,
    seed: int = 0,
    max_folds: int = 3,
    partitions: int | None = None,
) -> ValidationData:
    """Validation splits of the native matrix ``source``, as
    :func:`walsrec.training.regularization.choose_regularization` draws them on one machine
    (seeded ``seed``, ``seed + 1``, ..., up to ``max_folds``, until ``min_validated``
    users are scored; at most ``max_users`` per split), cut and kept on the workers."""
    fraction = check_fraction(fraction, "parameter of validation_folds")
    cl = Cluster(client)
    lay = layout.plan(source, cl.workers(), partitions)
    n_users, n_items = source.shape
    users = layout.load_native_parts(cl, lay, source.rows_dir, source.rows_name, "user", source.nnz)
    ub, up = lay.bounds["user"], lay.placement["user"]
    nnz = layout.part_nnz(cl, users, up)
    entry_lo = np.concatenate([[0], np.cumsum(nnz)[:-1]]).astype(np.int64)
    folds, validated = [], 0
    for fold in range(max_folds):
        s = seed + fold
        splits = [
            cl.submit(_tasks.split_part, p, lo, int(e), n_users, fraction, s, worker=w)
            for p, (lo, _), e, w in zip(users, ub, entry_lo, up, strict=True)
        ]
        placed = list(zip(splits, up, strict=True))
        counts = cl.gather([cl.submit(_tasks.pick, x, "validated", worker=w) for x, w in placed])
        total = int(sum(counts))
        if total == 0:
            continue  # another draw may hold entries out
        positions = sample_positions(total, max_users, s)
        heldout, offset = [], 0
        for x, c, w in zip(splits, counts, up, strict=True):
            v = cl.submit(_tasks.pick, x, "val", worker=w)
            if positions is not None:
                mine = positions[(positions >= offset) & (positions < offset + c)] - offset
                v = cl.submit(_tasks.keep_users, v, mine, worker=w)
            heldout.append(v)
            offset += c
        fit_users = [cl.submit(_tasks.pick, x, "fit", worker=w) for x, w in placed]
        fit_nnz = int(sum(layout.part_nnz(cl, fit_users, up)))
        fit_items = []
        for (ilo, ihi), w_i in zip(lay.bounds["item"], lay.placement["item"], strict=True):
            pieces = [
                cl.submit(_tasks.column_piece, f, ilo, ihi, worker=w_u)
                for f, w_u in zip(fit_users, up, strict=True)
            ]
            fit_items.append(
                cl.submit(_tasks.stack_columns, ihi - ilo, n_users, *pieces, worker=w_i)
            )
        fit = PartsSource(
            (n_users, n_items),
            fit_nnz,
            {"user": fit_users, "item": fit_items},
            lay.bounds,
            lay.placement,
        )
        scored = total if positions is None else int(positions.size)
        folds.append(DaskFold(fit, heldout, scored))
        validated += scored
        if validated >= min_validated:
            break
    return ValidationData(folds, validated)


def mean_log_mass(
    client, source: NativeSource, w0: float, partitions: int | None = None
) -> float | None:
    """The mean over users of log(count + w0·n_items), those with a positive mass, reduced
    on the workers (each user partition's counts read from the indptr alone); None when no
    user has one."""
    cl = Cluster(client)
    n_users, n_items = source.shape
    parts = partitions or 2 * max(1, len(cl.workers()))
    sums = cl.gather(
        [
            cl.submit(
                _tasks.log_mass_sum,
                cl.submit(_tasks.indptr_counts, source.rows_dir, source.rows_name, lo, hi, n_users),
                w0,
                n_items,
            )
            for lo, hi in layout.bounds(n_users, parts)
        ]
    )
    n = sum(c for _, c in sums)
    return None if n == 0 else sum(t for t, _ in sums) / n
