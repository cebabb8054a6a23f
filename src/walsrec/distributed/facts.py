"""What resolving train's settings reads of the training matrix, measured on the workers.

``alpha``/``unobserved_weight`` "auto" read the mean confidence at α = 1 and the density,
``col_weights_from_counts`` each item's count. On one machine
:func:`walsrec.model.params.wals_params` computes them from the matrix in memory; on a
Dask cluster :func:`matrix_facts` has each partition's worker reduce its rows (one pass
over the stored matrix) and sends the client a few floats per partition, and the item
counts only when the settings weigh columns by them. :func:`parts_facts` does the same
for a matrix already partitioned on the workers (a validation split's fit part).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from walsrec.distributed import _tasks, layout
from walsrec.distributed.layout import Cluster
from walsrec.distributed.sources import NativeSource
from walsrec.model.params import MatrixFacts

__all__ = ["matrix_facts", "parts_facts"]


def _needs(settings: Mapping[str, Any], defaults: Mapping[str, Any], nnz: int):
    """(scheme, mean confidence needed, item counts needed) for ``settings``."""

    def get(name):
        return settings.get(name, defaults.get(name))

    scheme = {name: get(name) for name in ("confidence", "epsilon", "bm25_k1", "bm25_b")}
    autos = any(get(name) == "auto" for name in ("alpha", "unobserved_weight"))
    need_mean = autos and scheme["confidence"] != "constant" and nnz > 0
    need_counts = get("col_weights_from_counts") is not None or (
        need_mean and scheme["confidence"] in ("bm25", "tfidf")
    )
    return scheme, need_mean, need_counts, get("col_weights_from_counts") is not None


def matrix_facts(
    client,
    source: NativeSource,
    settings: Mapping[str, Any],
    *,
    defaults: Mapping[str, Any],
    partitions: int | None = None,
) -> MatrixFacts:
    """:class:`~walsrec.model.params.MatrixFacts` of the native matrix ``source`` for
    ``settings`` (``defaults`` filling what they lack), reduced on ``client``'s workers.

    Only what the settings need is measured: the mean confidence at α = 1 of their scheme
    when ``alpha`` or ``unobserved_weight`` is "auto" and the confidence is not constant;
    the item counts with ``col_weights_from_counts``. Values a scheme cannot weigh
    (negative for BM25, say) raise the single machine's error, naming the entry.
    """
    n_users, n_items = source.shape
    scheme, need_mean, need_counts, keep_counts = _needs(settings, defaults, source.nnz)
    if not (need_mean or need_counts):
        return MatrixFacts((n_users, n_items), source.nnz, 1.0 if source.nnz == 0 else None)
    cl = Cluster(client)
    parts = partitions or 2 * max(1, len(cl.workers()))
    counts = None
    if need_counts:
        # each item's count is a difference of the transposed matrix's indptr: no entry read
        pieces = [
            cl.submit(_tasks.indptr_counts, source.cols_dir, source.cols_name, lo, hi, n_items)
            for lo, hi in layout.bounds(n_items, parts)
        ]
        counts = cl.submit(_tasks.concat, *pieces)
    user_parts, user_bounds = [], layout.bounds(n_users, parts)
    if need_mean:
        user_parts = [
            cl.submit(
                _tasks.load_part,
                source.rows_dir,
                source.rows_name,
                lo,
                hi,
                True,
                (n_users, n_items),
                source.nnz,
                retries=2,
            )
            for lo, hi in user_bounds
        ]
    return _reduce(
        cl, (n_users, n_items), source.nnz, scheme, need_mean, keep_counts, user_parts,
        user_bounds, counts,
    )  # fmt: skip


def parts_facts(
    cl: Cluster,
    user_parts: list,
    user_bounds: list[tuple[int, int]],
    item_parts: list,
    shape: tuple[int, int],
    nnz: int,
    settings: Mapping[str, Any],
    *,
    defaults: Mapping[str, Any],
) -> MatrixFacts:
    """:func:`matrix_facts` of a matrix whose user and item partitions (CSR rows, global
    column indices; the item partitions in item order) are task results on the workers."""
    scheme, need_mean, need_counts, keep_counts = _needs(settings, defaults, nnz)
    counts = None
    if need_counts:
        counts = cl.submit(_tasks.concat, *[cl.submit(_tasks.row_counts, p) for p in item_parts])
    return _reduce(
        cl, shape, nnz, scheme, need_mean, keep_counts, user_parts if need_mean else [],
        user_bounds, counts,
    )  # fmt: skip


def _reduce(
    cl, shape, nnz, scheme, need_mean, keep_counts, user_parts, user_bounds, counts
) -> MatrixFacts:
    n_users, _ = shape
    # an empty matrix's mean confidence is 1, as weighting.mean_confidence says
    unit_mean = 1.0 if nnz == 0 else None
    if need_mean:
        mean_user_sum = 1.0
        if scheme["confidence"] == "bm25":
            sums = cl.gather(
                [cl.submit(_tasks.total, cl.submit(_tasks.row_sums, p)) for p in user_parts]
            )
            total = float(sum(sums))
            mean_user_sum = total / n_users if n_users and total > 0 else 1.0
        reduced = cl.gather(
            [
                cl.submit(_tasks.confidence_sum, p, lo, n_users, scheme, counts, mean_user_sum)
                for p, (lo, _) in zip(user_parts, user_bounds, strict=True)
            ]
        )
        unit_mean = sum(r[0] for r in reduced) / nnz
    item_counts = None
    if keep_counts:
        item_counts = np.asarray(cl.gather([counts])[0], dtype=np.float64)
    return MatrixFacts(tuple(shape), int(nnz), unit_mean, item_counts)
