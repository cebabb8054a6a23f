from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scipy.sparse as sp

from walsrec.data.interactions import Interactions, aggregate_duplicates
from walsrec.data.vocabulary import Vocabulary, sorted_id_order
from walsrec.errors import DataFormatError, InvalidParameterError, UnknownIdError


def test_from_pandas_and_both_orientations():
    df = pd.DataFrame({"u": [3, 1, 3], "i": ["b", "a", "a"], "r": [1.0, 2.0, 3.0]})
    inter = Interactions.from_table(df, "u", "i", "r")
    assert inter.users.to_list() == ["1", "3"]
    assert inter.items.to_list() == ["a", "b"]
    np.testing.assert_array_equal(inter.user_items.toarray(), [[2, 0], [3, 1]])
    np.testing.assert_array_equal(inter.item_users.toarray(), [[2, 3], [0, 1]])
    assert inter.user_items.dtype == np.float32 and inter.item_users.dtype == np.float32
    assert isinstance(inter.item_users, sp.csr_matrix)
    assert (inter.n_users, inter.n_items, inter.nnz) == (2, 2, 3)


def test_without_rating_every_interaction_is_one_and_duplicates_sum():
    inter = Interactions.from_table({"user": ["a", "a", "b"], "item": ["x", "x", "x"]})
    np.testing.assert_array_equal(inter.user_items.toarray(), [[2], [1]])


def test_fixed_vocabularies_and_unknown_ids():
    users, items = Vocabulary(["a", "b", "c"], "users"), Vocabulary(["x", "y"], "items")
    inter = Interactions.from_table({"user": ["c"], "item": ["y"]}, users=users, items=items)
    assert inter.user_items.shape == (3, 2) and inter.user_items[2, 1] == 1
    with pytest.raises(
        UnknownIdError,
        match=r"Row 0, column 'item': the id 'z' is not in the "
        "items vocabulary",
    ):
        Interactions.from_table({"user": ["a"], "item": ["z"]}, users=users, items=items)


def test_save_and_load_round_trip_memory_mapped(tmp_path):
    rng = np.random.default_rng(0)
    m = sp.random(30, 20, density=0.2, random_state=rng, format="csr", dtype=np.float32)
    inter = Interactions(
        m,
        Vocabulary([f"u{i}" for i in range(30)], "users"),
        Vocabulary([f"i{i}" for i in range(20)], "items"),
    )
    inter.save(tmp_path / "d")
    back = Interactions.load(tmp_path / "d")
    assert (back.user_items != inter.user_items).nnz == 0
    assert (back.item_users != inter.item_users).nnz == 0
    assert back.users == inter.users and back.items == inter.items
    assert not back.user_items.data.flags.owndata


def test_load_detects_truncated_native_arrays(tmp_path):
    inter = Interactions.from_table({"user": ["a", "b"], "item": ["x", "y"]})
    inter.save(tmp_path / "d")
    np.save(tmp_path / "d" / "native" / "user_items.data.npy", np.ones(1, np.float32))
    with pytest.raises(
        DataFormatError,
        match=r"user_items\.\*\.npy: array lengths do not match "
        r".*user_items\.json \(shape \[2, 2\], nnz 2\)",
    ):
        Interactions.load(tmp_path / "d")


def test_constructor_checks_shape_and_type():
    v2 = Vocabulary(["a", "b"])
    with pytest.raises(
        InvalidParameterError,
        match=r"must have shape \(len\(users\), "
        r"len\(items\)\) = \(2, 2\). Got \(2, 3\) instead",
    ):
        Interactions(sp.csr_matrix((2, 3)), v2, v2)
    with pytest.raises(
        InvalidParameterError,
        match=r"must be a scipy.sparse matrix. Got "
        "ndarray instead",
    ):
        Interactions(np.zeros((2, 2)), v2, v2)


def test_from_table_errors():
    with pytest.raises(
        InvalidParameterError,
        match=r"Column 'rating' not found; the table has "
        "columns user, item",
    ):
        Interactions.from_table({"user": ["a"], "item": ["x"]}, rating_col="rating")
    with pytest.raises(
        DataFormatError,
        match=r"Row 1, column 'r': the rating nan is not a "
        "finite number",
    ):
        Interactions.from_table(
            {"user": ["a", "b"], "item": ["x", "x"], "r": [1.0, np.nan]}, rating_col="r"
        )
    with pytest.raises(DataFormatError, match=r"Row 1, column 'user': the id is missing"):
        Interactions.from_table({"user": ["a", None], "item": ["x", "x"]})
    with pytest.raises(
        InvalidParameterError,
        match=r"'table' argument must be a pyarrow.Table, "
        "a pandas.DataFrame or a dict of columns. Got list instead",
    ):
        Interactions.from_table([1, 2])


def test_from_files(tmp_path):
    (tmp_path / "r.csv").write_text("u,i,v\na,x,1\na,x,2\n")
    inter = Interactions.from_files(str(tmp_path / "r.csv"), "u", "i", "v", duplicates="max")
    assert inter.user_items.toarray().tolist() == [[2.0]]


@pytest.mark.parametrize("how", ["sum", "max", "mean", "first", "last"])
def test_aggregate_duplicates_against_a_dict_oracle(how):
    rng = np.random.default_rng(7)
    rows, cols = rng.integers(0, 5, 200), rng.integers(0, 4, 200)
    vals, times = rng.normal(size=200), rng.integers(0, 1000, 200)
    r, c, v, n, t = aggregate_duplicates(rows, cols, vals, 4, how, times)
    groups: dict = {}
    for k, (a, b) in enumerate(zip(rows, cols, strict=True)):
        groups.setdefault((a, b), []).append(k)
    assert list(zip(r, c, strict=True)) == sorted(groups)
    fn = {
        "sum": np.sum,
        "max": np.max,
        "mean": np.mean,
        "first": lambda x: x[0],
        "last": lambda x: x[-1],
    }[how]
    for a, b, value, count, latest in zip(r, c, v, n, t, strict=True):
        idx = groups[(a, b)]
        assert value == pytest.approx(fn(vals[idx]))
        assert count == len(idx) and latest == times[idx].max()


def test_vocabulary_order_numeric_then_text():
    ids = pa.array(["10", "9", "-1", "100"])
    assert ids.take(pa.array(sorted_id_order(ids))).to_pylist() == ["-1", "9", "10", "100"]
    mixed = pa.array(["b10", "b9", "a"])
    assert mixed.take(pa.array(sorted_id_order(mixed))).to_pylist() == ["a", "b10", "b9"]


def test_vocabulary_lookup_save_load(tmp_path):
    v = Vocabulary.from_values(pa.array(["z", "é", "a", "z"]), "items")
    assert v.to_list() == ["a", "z", "é"]
    assert v.index("é") == 2 and v.id(1) == "z"
    np.testing.assert_array_equal(v.indices(["z", "nope", "a"]), [1, -1, 0])
    with pytest.raises(UnknownIdError, match=r"Unknown item id 'nope'"):
        v.index("nope")
    v.save(tmp_path / "items.txt")
    assert (tmp_path / "items.txt").read_bytes() == "a\nz\né\n".encode()
    assert Vocabulary.load(tmp_path / "items.txt") == v


def test_vocabulary_refuses_bad_ids(tmp_path):
    with pytest.raises(
        DataFormatError,
        match=r"items vocabulary, position 1: the id 'a\\nb' "
        "contains a newline or NUL",
    ):
        Vocabulary(["x", "a\nb"], "items").save(tmp_path / "v.txt")
    (tmp_path / "dup.txt").write_text("a\nb\na\n")
    with pytest.raises(DataFormatError, match=r"dup\.txt: id 'a' appears more than once"):
        Vocabulary.load(tmp_path / "dup.txt")
