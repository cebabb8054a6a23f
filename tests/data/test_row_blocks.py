"""Row blocks: a matrix as block files plus a manifest written last, checked on read."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from walsrec.data.row_blocks import (
    MANIFEST,
    open_row_blocks,
    write_csr_block,
    write_dense_block,
    write_manifest,
    write_text_block,
)
from walsrec.errors import DataFormatError, InvalidParameterError

BOUNDS = [(0, 3), (3, 3), (3, 8), (8, 10)]  # an empty block included


def _dense(tmp_path, arr):
    entries = [write_dense_block(tmp_path, i, lo, arr[lo:hi]) for i, (lo, hi) in enumerate(BOUNDS)]
    write_manifest(tmp_path, "dense", arr.shape, str(arr.dtype), entries)
    return open_row_blocks(tmp_path, "dense")


def test_dense_rows_across_blocks_and_whole(tmp_path):
    arr = np.arange(40, dtype=np.float32).reshape(10, 4)
    blocks = _dense(tmp_path, arr)
    assert blocks.shape == (10, 4) and blocks.dtype == np.float32 and blocks.bounds == BOUNDS
    np.testing.assert_array_equal(blocks.to_array(), arr)
    for lo, hi in [(0, 10), (2, 9), (3, 3), (4, 5), (9, 10)]:
        np.testing.assert_array_equal(blocks.rows(lo, hi), arr[lo:hi])
    with pytest.raises(InvalidParameterError, match="Rows 5:11 are outside the 10 rows"):
        blocks.rows(5, 11)


def test_csr_and_text_blocks_round_trip(tmp_path):
    m = sp.random(10, 7, density=0.4, format="csr", random_state=0, dtype=np.float64)
    entries = [
        write_csr_block(tmp_path / "m", i, lo, m[lo:hi]) for i, (lo, hi) in enumerate(BOUNDS)
    ]
    write_manifest(tmp_path / "m", "csr", m.shape, "float64", entries)
    blocks = open_row_blocks(tmp_path / "m", "csr")
    assert (blocks.to_csr() != m).nnz == 0
    assert (blocks.csr_rows(2, 9) != m[2:9]).nnz == 0
    ids = [f"u{i}" for i in range(10)]
    entries = [
        write_text_block(tmp_path / "t", i, lo, ids[lo:hi]) for i, (lo, hi) in enumerate(BOUNDS)
    ]
    write_manifest(tmp_path / "t", "text", (10,), "str", entries)
    assert open_row_blocks(tmp_path / "t", "text").text_rows(2, 9) == ids[2:9]


def test_blocks_that_do_not_tile_the_rows_are_refused(tmp_path):
    a = write_dense_block(tmp_path, 0, 0, np.zeros((3, 2)))
    c = write_dense_block(tmp_path, 2, 4, np.zeros((2, 2)))
    with pytest.raises(InvalidParameterError, match=r"block 1 holds rows 4:6 where rows 3: come"):
        write_manifest(tmp_path, "dense", (6, 2), "float64", [a, c])
    with pytest.raises(InvalidParameterError, match=r"the blocks hold rows 0:3 of a matrix of 6"):
        write_manifest(tmp_path, "dense", (6, 2), "float64", [a])


def test_a_folder_without_its_manifest_is_incomplete(tmp_path):
    write_dense_block(tmp_path, 0, 0, np.zeros((3, 2)))
    with pytest.raises(DataFormatError, match=r"manifest.json: missing; not a complete row-block"):
        open_row_blocks(tmp_path)


def test_an_altered_block_is_caught_by_its_checksum(tmp_path):
    arr = np.arange(40, dtype=np.float64).reshape(10, 4)
    blocks = _dense(tmp_path, arr)
    path = tmp_path / "block-00002.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1  # one bit of the last value: same size, other data
    path.write_bytes(bytes(raw))
    np.testing.assert_array_equal(blocks.rows(0, 3), arr[:3])  # other blocks still read
    with pytest.raises(DataFormatError, match=r"block-00002.npy: its SHA-256 differs"):
        blocks.rows(0, 10)
    path.write_bytes(bytes(raw[:-8]))
    with pytest.raises(DataFormatError, match=r"block-00002.npy: 2\d\d bytes where the manifest"):
        blocks.to_array()
    path.unlink()
    with pytest.raises(DataFormatError, match=r"block-00002.npy: missing \(block 2 of"):
        blocks.to_array()


def test_a_block_of_another_shape_or_with_nan_is_refused(tmp_path):
    arr = np.ones((10, 4))
    _dense(tmp_path, arr)
    # a manifest rewritten to claim another width: the blocks contradict it
    meta = json.loads((tmp_path / MANIFEST).read_text())
    meta["shape"] = [10, 5]
    (tmp_path / MANIFEST).write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match=r"float64 of shape \(3, 4\) where the manifest"):
        open_row_blocks(tmp_path).rows(0, 3)
    bad = np.ones((3, 4))
    bad[1, 1] = np.nan
    entries = [write_dense_block(tmp_path / "n", 0, 0, bad)]
    write_manifest(tmp_path / "n", "dense", (3, 4), "float64", entries)
    with pytest.raises(DataFormatError, match=r"block-00000.npy: contains NaN or infinity"):
        open_row_blocks(tmp_path / "n").to_array()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(kind="sparse"), r"'kind' must be one of \['dense', 'csr', 'text'\]"),
        (lambda m: m.update(shape=[10, -1]), r"'shape' must be a list of \(1, 2\) counts >= 0"),
        (lambda m: m.update(dtype="object"), r"'dtype' 'object' is not a numeric dtype"),
        (lambda m: m["blocks"][1].update(rows=[4, 3]), r"block 1's rows \[4, 3\] do not follow"),
        (lambda m: m["blocks"].pop(), r"the blocks hold rows 0:8 of the 10 of 'shape'"),
        (
            lambda m: m["blocks"][0]["files"]["data"].update(name="../x.npy"),
            r"block 0's data file entry .* is malformed",
        ),
        (lambda m: m.update(format_version=7), r"format_version 7 is not supported"),
    ],
)
def test_a_malformed_manifest_names_the_problem(tmp_path, edit, message):
    _dense(tmp_path, np.zeros((10, 2)))
    meta = json.loads((tmp_path / MANIFEST).read_text())
    edit(meta)
    (tmp_path / MANIFEST).write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match=message):
        open_row_blocks(tmp_path)


def test_the_expected_kind_is_checked(tmp_path):
    _dense(tmp_path, np.zeros((10, 2)))
    with pytest.raises(DataFormatError, match=r"kind 'dense' where 'csr' is expected"):
        open_row_blocks(tmp_path, "csr")


def test_a_manifest_claiming_more_rows_than_its_files_hold_allocates_nothing(tmp_path):
    _dense(tmp_path, np.zeros((10, 4)))
    meta = json.loads((tmp_path / MANIFEST).read_text())
    meta["shape"] = [10, 10**9]  # 80 GB a row: refused before any allocation
    (tmp_path / MANIFEST).write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match=r"block 0 records \d+ bytes for 3 rows of 8"):
        open_row_blocks(tmp_path)


def test_a_block_file_must_have_its_own_name(tmp_path):
    _dense(tmp_path, np.zeros((10, 2)))
    meta = json.loads((tmp_path / MANIFEST).read_text())
    meta["blocks"][0]["files"]["data"]["name"] = "block-00002.npy"  # another block's file
    (tmp_path / MANIFEST).write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match=r"block 0's data file entry .* is malformed"):
        open_row_blocks(tmp_path)


def test_the_manifest_is_written_after_a_killed_writers_leftovers_are_removed(tmp_path):
    entries = [write_dense_block(tmp_path, 0, 0, np.ones((2, 2)))]
    left = tmp_path / ".block-00001.npy.tmp-999-abcd.npy"  # a writer killed mid-file
    left.write_bytes(b"half")
    write_manifest(tmp_path, "dense", (2, 2), "float64", entries)
    assert not left.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["block-00000.npy", MANIFEST]
