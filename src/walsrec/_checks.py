"""Argument checks shared by every module, worded one way (scikit-learn's):

    The 'k' parameter of recommend must be an int >= 1. Got 0 instead.

``owner`` completes the sentence after the name: "parameter of tune", "argument of
WALS.recommend", "setting of train". Every check raises
:class:`~walsrec.errors.InvalidParameterError`.

A rule can also be declared once, as data, and checked where it applies: :class:`IntRule`,
:class:`RealRule` and :class:`OptionRule` hold a check's arguments (``TrainConfig``
declares each setting's rule so, in its field metadata, and ``walsrec train`` derives its
flags' types and choices from them).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from walsrec.errors import InvalidParameterError

if TYPE_CHECKING:  # numpy is imported where an array is checked: the CLI's parser reads
    # the settings' rules without it
    import numpy as np

__all__ = [
    "IntRule",
    "OptionRule",
    "RealRule",
    "check_int",
    "check_k",
    "check_option",
    "check_real",
    "check_weight_vector",
    "is_int",
    "is_real",
    "options_rule",
    "param_error",
    "real_rule",
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


def _or_list(words: Sequence[str]) -> str:
    """'a', 'a or b', 'a, b or c'."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def options_rule(options: Sequence[Any], *, one_of: bool = False, show: Callable = repr) -> str:
    """The rule "'a', 'b' or 'c'", or with ``one_of`` "one of a, b, c" (each as ``show``)."""
    shown = [show(option) for option in options]
    return f"one of {', '.join(shown)}" if one_of else _or_list(shown)


def real_rule(
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
    kind: str = "number",
) -> str:
    """The rule "a finite number >= 0", "a float in [0, 1]", "a number > 0"..."""
    words = f"a {'finite ' if finite else ''}{kind}"
    if low is not None and high is not None:
        return f"{words} in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{words} {'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{words} {'<' if high_open else '<='} {high}"
    return words


def _among(value: Any, options: Sequence[Any]) -> bool:
    try:
        return value in options
    except (TypeError, ValueError):  # an array compared with a word
        return False


def check_int(
    value: Any,
    name: str,
    owner: str,
    minimum: int | None,
    *,
    allow_none: bool = False,
    show: Callable = repr,
) -> int | None:
    """``value`` as an int >= ``minimum`` (any int when None; None passes with ``allow_none``)."""
    if value is None and allow_none:
        return None
    if not (is_int(value) and (minimum is None or value >= minimum)):
        rule = "an int" if minimum is None else f"an int >= {minimum}"
        rule += " or None" if allow_none else ""
        raise InvalidParameterError(param_error(name, rule, value, owner, show))
    return int(value)


def check_real(
    value: Any,
    name: str,
    owner: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
    kind: str = "number",
    options: Sequence[Any] = (),
    allow_none: bool = False,
    show: Callable = repr,
) -> Any:
    """``value``, a real number in the range (or one of ``options``, or None with
    ``allow_none``); the rule reads "'auto' or a finite number >= 0", "a float in [0, 1]"...

    ``low``/``high`` bound the range (None: unbounded), ``low_open``/``high_open`` exclude
    the bound, ``finite`` also rejects inf and NaN, and ``kind`` names the number ("number",
    "float"). A Python int or float comes back unchanged, another real number (NumPy's) as
    a float; an option comes back as it is.
    """
    if value is None and allow_none:
        return None
    if _among(value, options):
        return value
    ok = is_real(value) and (not finite or _finite(value))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        number = real_rule(
            low=low, high=high, low_open=low_open, high_open=high_open, finite=finite, kind=kind
        )
        rule = _or_list([*map(repr, options), number]) + (" or None" if allow_none else "")
        raise InvalidParameterError(param_error(name, rule, value, owner, show))
    return value if isinstance(value, int | float) else float(value)


def _finite(value) -> bool:
    """math.isfinite, for ints beyond float's range too (10**400 is a finite int but no
    float: refused, rather than raising OverflowError)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def check_option(
    value: Any,
    name: str,
    owner: str,
    options: Sequence[Any],
    *,
    one_of: bool = False,
    show_option: Callable = repr,
    rule: str | None = None,
    show: Callable = repr,
) -> Any:
    """``value``, one of ``options``; the rule reads "'cholesky' or 'cg'", or with
    ``one_of`` "one of ..." (each option as ``show_option``), or ``rule`` where given."""
    if not _among(value, options):
        rule = rule or options_rule(options, one_of=one_of, show=show_option)
        raise InvalidParameterError(param_error(name, rule, value, owner, show))
    return value


def check_k(k: Any, method: str) -> int:
    """The number of recommendations asked of ``method``: an int >= 1."""
    return check_int(k, "k", f"parameter of {method}", 1)


def check_weight_vector(
    value: Any, name: str, length: int, owner: str = "parameter of WALS"
) -> float | np.ndarray:
    """A scalar or a vector of ``length`` non-negative finite weights."""
    import numpy as np

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


# ---------------------------------------------------------------------------- rules as data
@dataclasses.dataclass(frozen=True)
class IntRule:
    """An int >= ``minimum`` (any int when None): :func:`check_int`'s rule."""

    minimum: int | None = None

    def check(self, value: Any, name: str, owner: str) -> int:
        return check_int(value, name, owner, self.minimum)


@dataclasses.dataclass(frozen=True)
class RealRule:
    """A real number in a range, or one of ``options``: :func:`check_real`'s rule."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    finite: bool = True
    kind: str = "number"
    options: tuple = ()

    def check(self, value: Any, name: str, owner: str) -> Any:
        return check_real(value, name, owner, **dataclasses.asdict(self))


@dataclasses.dataclass(frozen=True)
class OptionRule:
    """One of ``options``: :func:`check_option`'s rule."""

    options: tuple
    one_of: bool = False

    def check(self, value: Any, name: str, owner: str) -> Any:
        return check_option(value, name, owner, self.options, one_of=self.one_of)
