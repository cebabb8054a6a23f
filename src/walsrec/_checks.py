"""Argument checks shared by every module, worded one way (scikit-learn's):

    The 'k' parameter of recommend must be an int >= 1. Got 0 instead.

``owner`` completes the sentence after the name: "parameter of tune", "argument of
WALS.recommend". Every check raises :class:`~walsrec.errors.InvalidParameterError`.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from walsrec.errors import InvalidParameterError

__all__ = [
    "check_int",
    "check_k",
    "check_weight_vector",
    "is_int",
    "is_real",
    "param_error",
]


def is_int(value: Any) -> bool:
    """An integer (Python's or NumPy's), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A real number (Python's or NumPy's, integers included), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def param_error(name: str, rule: str, value: Any, owner: str, show: Callable = repr) -> str:
    """The message: "The 'name' <owner> must be <rule>. Got <value> instead." """
    return f"The {name!r} {owner} must be {rule}. Got {show(value)} instead."


def check_int(
    value: Any,
    name: str,
    owner: str,
    minimum: int,
    *,
    allow_none: bool = False,
    show: Callable = repr,
) -> int | None:
    """``value`` as an int >= ``minimum`` (None passes with ``allow_none``)."""
    if value is None and allow_none:
        return None
    if not (is_int(value) and value >= minimum):
        rule = f"an int >= {minimum}" + (" or None" if allow_none else "")
        raise InvalidParameterError(param_error(name, rule, value, owner, show))
    return int(value)


def check_k(k: Any, method: str) -> int:
    """The number of recommendations asked of ``method``: an int >= 1."""
    return check_int(k, "k", f"parameter of {method}", 1)


def check_weight_vector(
    value: Any, name: str, length: int, owner: str = "parameter of WALS"
) -> float | np.ndarray:
    """A scalar or a vector of ``length`` non-negative finite weights."""
    if is_real(value):
        if not (np.isfinite(value) and value >= 0):
            raise InvalidParameterError(
                param_error(name, "a non-negative finite float or 1-D array", value, owner)
            )
        return float(value)
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 1 or arr.shape[0] != length:
        raise InvalidParameterError(
            f"The {name!r} {owner} must be a scalar or a 1-D array of length {length}. "
            f"Got an array of shape {arr.shape} instead."
        )
    bad = ~(np.isfinite(arr) & (arr >= 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidParameterError(
            f"The {name!r} {owner} must contain non-negative finite weights. "
            f"Got {float(arr[i])!r} at index {i} instead."
        )
    return arr
