"""The native matrix files: every corruption that could reach scipy or numba is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from walsrec.data import native
from walsrec.data.native import check_csr, load_csr, save_csr
from walsrec.errors import DataFormatError


def _matrix():
    # 4 users x 5 items, an empty row planted (row 2)
    dense = np.array(
        [[1, 0, 2, 0, 0], [0, 3, 0, 0, 4], [0, 0, 0, 0, 0], [5, 0, 0, 6, 7]], dtype=np.float32
    )
    return sp.csr_matrix(dense)


def _tamper(d, part, change):
    path = d / f"m.{part}.npy"
    arr = np.load(path)
    arr = change(arr)
    np.save(path, arr)


@pytest.fixture
def saved(tmp_path):
    save_csr(tmp_path, "m", _matrix())
    return tmp_path


def test_round_trip_is_checked_and_exact(saved):
    m = load_csr(saved, "m")
    np.testing.assert_array_equal(m.toarray(), _matrix().toarray())


@pytest.mark.parametrize(
    "part, change, match",
    [
        # the reproduction: indptr[1] far past the end of indices
        ("indptr", lambda a: np.r_[a[:1], a[-1] + 10**6, a[2:]], r"indptr decreases at row 1"),
        ("indptr", lambda a: np.r_[a[:-1], a[-1] - 1], r"indptr runs from 0 to 6, not from 0 "),
        ("indptr", lambda a: np.r_[1, a[1:]], r"indptr runs from 1 to 7"),
        ("indptr", lambda a: np.r_[a[:2], a[3] + 1, a[3:]], r"indptr decreases at row 2"),
        ("indices", lambda a: np.r_[a[:-1], 5], r"index 5 at position 6 is outside \[0, 5\)"),
        ("indices", lambda a: np.r_[-1, a[1:]], r"index -1 at position 0 is outside"),
        ("indices", lambda a: np.r_[a[:5], a[6], a[5]], r"not increasing within a row at pos"),
        ("indices", lambda a: np.r_[a[:1], a[0], a[2:]], r"not increasing within a row at pos"),
        ("data", lambda a: np.r_[a[:3], np.nan, a[4:]].astype(a.dtype), r"value nan at pos"),
        ("data", lambda a: np.r_[np.inf, a[1:]].astype(a.dtype), r"value inf at position 0"),
        ("data", lambda a: a.astype(np.int64), r"data must be a 1-d float32 or float64 array"),
        ("data", lambda a: a.astype(np.complex64), r"data must be a 1-d float32 or float64"),
        ("indices", lambda a: a.astype(np.float64), r"indices must be a 1-d int32 or int64"),
        ("indices", lambda a: a.astype(np.int8), r"indices must be a 1-d int32 or int64"),
        ("indptr", lambda a: a.reshape(1, -1), r"array lengths do not match"),
    ],
)
def test_corrupt_arrays_are_an_error_naming_the_file(saved, part, change, match):
    _tamper(saved, part, change)
    with pytest.raises(DataFormatError, match=match) as info:
        load_csr(saved, "m")
    assert str(info.value).startswith(str(saved))
    assert "corrupt" in str(info.value) or "do not match" in str(info.value)


def test_an_error_names_the_tampered_part(saved):
    _tamper(saved, "indices", lambda a: np.r_[a[:-1], 99])
    with pytest.raises(DataFormatError, match=r"m\.indices\.npy: index 99 at position 6"):
        load_csr(saved, "m")


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("shape", [4], r"'shape' must be two ints >= 0, got \[4\]"),
        ("shape", [4, -5], r"'shape' must be two ints >= 0, got \[4, -5\]"),
        ("shape", "4x5", r"'shape' must be two ints >= 0, got '4x5'"),
        ("shape", [4.0, 5], r"'shape' must be two ints"),
        ("nnz", True, r"'nnz' must be an int >= 0, got True"),
        ("nnz", None, r"'nnz' must be an int >= 0, got None"),
    ],
)
def test_a_bad_description_is_named(saved, key, value, match):
    path = saved / "m.json"
    meta = json.loads(path.read_text())
    meta[key] = value
    path.write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match=match):
        load_csr(saved, "m")


def test_a_narrower_matrix_claimed_than_stored_is_refused(saved):
    path = saved / "m.json"
    meta = json.loads(path.read_text())
    meta["shape"] = [4, 4]  # item 4 exists in the indices
    path.write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match=r"index 4 at position 3 is outside \[0, 4\)"):
        load_csr(saved, "m")


def test_the_check_reads_a_memory_map_in_chunks(tmp_path, monkeypatch):
    # many chunks: the seams between chunks are checked like any other position
    monkeypatch.setattr(native, "_CHUNK", 3)
    m = sp.random(50, 40, density=0.2, format="csr", random_state=0, dtype=np.float32)
    save_csr(tmp_path, "m", m)
    np.testing.assert_array_equal(load_csr(tmp_path, "m").toarray(), m.toarray())
    ind = np.load(tmp_path / "m.indices.npy")
    ptr = np.load(tmp_path / "m.indptr.npy")
    # swap two entries inside a row that spans a chunk seam
    row = next(r for r in range(50) if ptr[r + 1] - ptr[r] >= 2 and ptr[r] % 3 == 2)
    p = ptr[row]
    ind[p], ind[p + 1] = ind[p + 1], ind[p]
    np.save(tmp_path / "m.indices.npy", ind)
    with pytest.raises(DataFormatError, match=rf"not increasing within a row at position {p + 1}"):
        load_csr(tmp_path, "m")


def test_check_csr_accepts_empty_matrices():
    check_csr(
        np.zeros(4, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32), (3, 0), "empty"
    )
    check_csr(np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0), (0, 7), "empty")


def test_save_csr_writes_only_what_load_csr_accepts(tmp_path):
    # duplicates (summed), int data (as float64), unsorted indices; the caller's matrix kept
    m = sp.csr_matrix((np.array([1, 2, 3]), np.array([3, 1, 1]), np.array([0, 3])), shape=(1, 4))
    before = (m.data.copy(), m.indices.copy())
    save_csr(tmp_path, "m", m)
    back = load_csr(tmp_path, "m")
    assert back.dtype == np.float64
    np.testing.assert_array_equal(back.toarray(), [[0, 5, 0, 1]])
    np.testing.assert_array_equal(m.data, before[0])
    np.testing.assert_array_equal(m.indices, before[1])
    bad = sp.csr_matrix(np.array([[1.0, np.nan]], dtype=np.float32))
    with pytest.raises(ValueError, match=r"The 'matrix' argument of save_csr must hold finite"):
        save_csr(tmp_path, "bad", bad)
    assert not (tmp_path / "bad.json").exists()
