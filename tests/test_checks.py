"""The shared argument checks: one wording for every module."""

from __future__ import annotations

import numpy as np
import pytest

from walsrec._checks import check_int, check_k, check_weight_vector, is_int, is_real
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
