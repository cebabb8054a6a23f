"""Checks of WALS's parameters and arguments, shared by every back end.

Every message names the parameter or argument, the rule and the value received;
:class:`~walsrec.errors.InvalidParameterError` (a ``ValueError``) for a value that breaks
its rule, ``TypeError`` for an argument of the wrong kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from walsrec._checks import check_int, check_option, check_real, param_error
from walsrec._checks import is_int as _is_int
from walsrec._checks import is_real as _is_real
from walsrec.errors import InvalidParameterError
from walsrec.model import weighting

__all__ = ["SOLVERS", "check_indices", "check_params", "check_sparse", "slice_matrix"]

SOLVERS = ("cholesky", "cg")


_OWNER = "parameter of WALS"


def check_params(params: Mapping[str, Any]) -> None:
    """Raise :class:`~walsrec.errors.InvalidParameterError` naming the first of WALS's
    parameters in ``params`` (all of them, as ``WALS.get_params()``) that breaks its rule;
    what ``fit`` and the other methods check first. Shared by every back end."""

    def need(ok: bool, name: str, rule: str) -> None:
        if not ok:
            raise InvalidParameterError(param_error(name, rule, params[name], _OWNER))

    def nonneg_real(name: str) -> None:
        check_real(params[name], name, _OWNER, low=0, kind="float")

    check_int(params["embedding_dim"], "embedding_dim", _OWNER, 1)
    nonneg_real("unobserved_weight")
    nonneg_real("regularization")
    nonneg_real("regularization_exponent")
    check_option(params["solver"], "solver", _OWNER, SOLVERS, rule=f"one of {list(SOLVERS)}")
    check_int(params["cg_steps"], "cg_steps", _OWNER, 1)
    check_int(params["sweeps"], "sweeps", _OWNER, 1)
    nonneg_real("tol")
    check_real(params["init_std"], "init_std", _OWNER, low=0, low_open=True, kind="float")
    try:
        dtype = np.dtype(params["dtype"])
    except TypeError:
        dtype = None
    check_option(
        dtype,
        "dtype",
        _OWNER,
        (np.float32, np.float64),
        rule="one of ['float32', 'float64']",
        show=lambda _: repr(params["dtype"]),  # what was given, not the dtype it names
    )
    need(
        params["n_jobs"] is None or (_is_int(params["n_jobs"]) and params["n_jobs"] != 0),
        "n_jobs",
        "None or a non-zero int (-1: all cores)",
    )
    rs = params["random_state"]
    need(
        rs is None or _is_int(rs) or isinstance(rs, np.random.Generator | np.random.RandomState),
        "random_state",
        "None, an int, a numpy Generator or a RandomState",
    )
    need(
        params["callback"] is None or callable(params["callback"]), "callback", "None or a callable"
    )
    need(isinstance(params["show_progress"], bool | np.bool_), "show_progress", "a bool")
    for name in ("row_weights", "col_weights"):
        v = params[name]
        if _is_real(v):
            need(np.isfinite(v) and v >= 0, name, "a finite float >= 0 or a 1-D array")
    weighting.check_params(params)


def check_sparse(x: Any, name: str, method: str, fmt: str, dtype: type = np.float64) -> sp.spmatrix:
    """``x`` as a canonical (sorted, no duplicates) matrix in format ``fmt``, with values that
    are finite in ``dtype`` (the model's: a float64 1e39 would become inf in float32)."""
    if not sp.issparse(x):
        raise TypeError(
            f"The {name!r} argument of WALS.{method} must be a scipy.sparse matrix "
            f"(CSR preferred). Got {type(x).__name__} instead."
        )
    if x.ndim != 2:
        raise InvalidParameterError(
            f"The {name!r} argument of WALS.{method} must be 2-D. Got shape {x.shape} instead."
        )
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or np.issubdtype(
        x.dtype, np.complexfloating
    ):
        raise InvalidParameterError(
            f"The {name!r} argument of WALS.{method} must have a real numeric dtype. "
            f"Got {x.dtype} instead."
        )
    m = x.tocsr() if fmt == "csr" else x.tocsc()
    if not m.has_canonical_format:
        if m is x:  # never reorder the caller's matrix in place
            m = m.copy()
        m.sum_duplicates()
    limit = np.finfo(dtype).max
    if m.data.size and not (np.isfinite(m.data) & (np.abs(m.data) <= limit)).all():
        p = int(np.flatnonzero(~(np.isfinite(m.data) & (np.abs(m.data) <= limit)))[0])
        outer = int(np.searchsorted(m.indptr, p, side="right") - 1)
        inner = int(m.indices[p])
        row, col = (outer, inner) if fmt == "csr" else (inner, outer)
        raise InvalidParameterError(
            f"The {name!r} argument of WALS.{method} must contain only values that are finite "
            f"in {np.dtype(dtype).name}. Got {float(m.data[p])!r} at (row {row}, column {col}) "
            "instead."
        )
    return m


def check_indices(rows, n: int, name: str, method: str) -> np.ndarray:
    """``rows`` (None: all of 0..n-1) as int64 indices in [0, n), checked."""
    if rows is None:
        return np.arange(n, dtype=np.int64)
    arr = np.asarray(rows)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
        raise InvalidParameterError(
            f"The {name!r} argument of WALS.{method} must be None or a 1-D array of int "
            f"indices. Got {rows!r} instead."
        )
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise InvalidParameterError(
            f"The {name!r} argument of WALS.{method} must hold indices in [0, {n}). "
            f"Got {int(arr.min() if arr.min() < 0 else arr.max())} instead."
        )
    return arr.astype(np.int64)


def slice_matrix(x, subset: np.ndarray, fmt: str):
    """Rows (fmt "csr") or columns (fmt "csc") ``subset`` of a sparse matrix, in ``fmt``."""
    if fmt == "csr":
        return x.tocsr()[subset]
    return x.tocsc()[:, subset]


def check_entry_weights(
    w, m, owner: str, by_rows: bool = True, rows=0, name: str = "'user_items'"
) -> None:
    """Per-entry weights ``w`` must have the stored entries of ``m`` (CSR of rows, or CSC
    of columns with ``by_rows`` False) and be >= 0; the first row (column) whose entries
    differ is named: ``rows`` is the index of ``m``'s first row (a partition's), or the
    index of each of its rows (a batch)."""
    axis = "row" if by_rows else "column"
    same_ptr = np.array_equal(w.indptr, m.indptr)
    if not (same_ptr and np.array_equal(w.indices, m.indices)):
        if same_ptr:
            p = int(np.flatnonzero(w.indices != m.indices)[0])
            at = int(np.searchsorted(m.indptr, p, side="right") - 1)
        else:
            n = min(w.indptr.shape[0], m.indptr.shape[0]) - 1
            diff = np.flatnonzero(np.diff(w.indptr[: n + 1]) != np.diff(m.indptr[: n + 1]))
            at = int(diff[0]) if diff.size else n
        raise InvalidParameterError(
            f"The 'weights' argument of {owner} must have the same sparsity pattern (stored "
            f"entries) as {name}. Got {w.nnz} stored entries against {m.nnz}, in different "
            f"places (first in {axis} {_label(rows, at)})."
        )
    if w.data.size and w.data.min() < 0:
        p = int(np.argmin(w.data))
        raise InvalidParameterError(
            f"The 'weights' argument of {owner} must contain non-negative weights. Got "
            f"{float(w.data[p])!r} instead."
        )


def _label(rows, at: int) -> int:
    return rows + at if isinstance(rows, int) else int(np.asarray(rows)[at])
