"""The shared argument checks: one wording for every module."""

from __future__ import annotations

import numpy as np
import pytest

from walsrec._checks import (
    IntRule,
    OptionRule,
    RealRule,
    check_int,
    check_k,
    check_option,
    check_real,
    check_weight_vector,
    is_int,
    is_real,
)
from walsrec.errors import InvalidParameterError


def test_numbers_but_not_bools():
    assert is_int(3) and is_int(np.int64(3)) and not is_int(True) and not is_int(3.0)
    assert is_real(3) and is_real(np.float32(0.5)) and not is_real(False) and not is_real("1")


@pytest.mark.parametrize(
    "value, kw, match",
    [
        (0, {}, r"The 'n' parameter of f must be an int >= 1\. Got 0 instead\."),
        (True, {}, r"Got True instead"),
        (2.0, {}, r"Got 2\.0 instead"),
        (None, {}, r"must be an int >= 1\. Got None"),
        ("3", {"allow_none": True}, r"must be an int >= 1 or None\. Got '3' instead"),
        (np.zeros(2), {"show": lambda v: "an array"}, r"Got an array instead"),
    ],
)
def test_check_int_names_the_rule_and_the_value(value, kw, match):
    with pytest.raises(InvalidParameterError, match=match):
        check_int(value, "n", "parameter of f", 1, **kw)


def test_check_int_passes_what_it_should():
    assert check_int(np.int32(5), "n", "parameter of f", 1) == 5
    assert check_int(None, "n", "parameter of f", 1, allow_none=True) is None
    assert check_k(3, "recommend") == 3
    with pytest.raises(InvalidParameterError, match=r"The 'k' parameter of recommend must be"):
        check_k(0, "recommend")


def test_weight_vectors():
    assert check_weight_vector(2, "w", 3) == 2.0
    np.testing.assert_array_equal(check_weight_vector([1, 0, 2], "w", 3), [1.0, 0.0, 2.0])
    with pytest.raises(InvalidParameterError, match=r"1-D array of length 3\. Got an array of"):
        check_weight_vector([1, 2], "w", 3)
    with pytest.raises(InvalidParameterError, match=r"Got -1\.0 at index 1 instead"):
        check_weight_vector([1, -1, 2], "w", 3)
    with pytest.raises(InvalidParameterError, match=r"non-negative finite float or 1-D array"):
        check_weight_vector(float("nan"), "w", 3)


@pytest.mark.parametrize(
    "value, kw, match",
    [
        (-1, {"low": 0}, r"The 'x' parameter of f must be a finite number >= 0\. Got -1 instead\."),
        (0, {"low": 0, "low_open": True}, r"must be a finite number > 0\. Got 0 instead"),
        (float("inf"), {"low": 0}, r"must be a finite number >= 0\. Got inf instead"),
        (float("nan"), {}, r"must be a finite number\. Got nan instead"),
        (
            1.5,
            {"low": 0, "high": 1, "finite": False, "kind": "float"},
            r"must be a float in \[0, 1\]\. Got 1\.5 instead",
        ),
        (1, {"low": 0, "high": 1, "high_open": True}, r"must be a finite number in \[0, 1\)\."),
        (2, {"high": 1}, r"must be a finite number <= 1\. Got 2"),
        ("big", {"low": 0, "options": ("auto",)}, r"must be 'auto' or a finite number >= 0\."),
        (True, {"low": 0}, r"Got True instead"),
        (10**400, {"low": 0}, r"must be a finite number >= 0\. Got 1000"),  # no float holds it
        (
            -1,
            {"low": 0, "low_open": True, "finite": False, "allow_none": True},
            r"must be a number > 0 or None\. Got -1 instead",
        ),
    ],
)
def test_check_real_names_the_rule_and_the_value(value, kw, match):
    with pytest.raises(InvalidParameterError, match=match):
        check_real(value, "x", "parameter of f", **kw)


def test_check_real_passes_what_it_should():
    assert check_real("auto", "x", "f", low=0, options=("auto",)) == "auto"
    assert check_real(None, "x", "f", allow_none=True) is None
    assert check_real(1, "x", "f", low=0) == 1 and type(check_real(1, "x", "f")) is int
    assert type(check_real(np.float32(0.5), "x", "f")) is float
    assert check_real(float("inf"), "x", "f", low=0, finite=False) == float("inf")
    assert check_real(1.0, "x", "f", low=0, high=1) == 1.0
    with pytest.raises(InvalidParameterError, match=r"Got array\(\[1, 2\]\) instead"):
        check_real(np.array([1, 2]), "x", "f", options=("auto",))


def test_check_option_lists_the_options():
    assert check_option("cg", "solver", "setting of train", ("cholesky", "cg")) == "cg"
    with pytest.raises(
        InvalidParameterError,
        match=r"The 'solver' setting of train must be 'cholesky' or 'cg'\. Got 'lu' instead\.",
    ):
        check_option("lu", "solver", "setting of train", ("cholesky", "cg"))
    with pytest.raises(InvalidParameterError, match=r"must be None, 'linear' or 'log'\. Got 1"):
        check_option(1, "c", "parameter of f", (None, "linear", "log"))
    with pytest.raises(InvalidParameterError, match=r"must be one of auc, rmse\. Got 'x'"):
        check_option("x", "m", "parameter of f", ("auc", "rmse"), one_of=True, show_option=str)
    with pytest.raises(InvalidParameterError, match=r"must be one of 'a', 'b'\. Got \['a'\]"):
        check_option(["a"], "m", "parameter of f", ("a", "b"), one_of=True)
    with pytest.raises(InvalidParameterError, match=r"must be one of \['a', 'b'\]\. Got 'c'"):
        check_option("c", "m", "parameter of f", ("a", "b"), rule="one of ['a', 'b']")


def test_check_int_without_a_minimum_is_any_int():
    assert check_int(-5, "seed", "parameter of f", None) == -5
    with pytest.raises(InvalidParameterError, match=r"must be an int\. Got 1\.5 instead"):
        check_int(1.5, "seed", "parameter of f", None)


def test_rules_as_data_check_as_the_functions_do():
    assert IntRule(1).check(np.int64(3), "n", "f") == 3
    with pytest.raises(InvalidParameterError, match=r"The 'n' f must be an int >= 1\. Got 0"):
        IntRule(1).check(0, "n", "f")
    rule = RealRule(low=0, low_open=True, options=("auto",))
    assert rule.check("auto", "a", "f") == "auto"
    with pytest.raises(InvalidParameterError, match=r"must be 'auto' or a finite number > 0\."):
        rule.check(0.0, "a", "f")
    with pytest.raises(InvalidParameterError, match=r"must be one of 'x', 'y'\. Got 'z'"):
        OptionRule(("x", "y"), one_of=True).check("z", "o", "f")
