"""Sizes inferred from TFRecord files are bounded, so one bad record cannot exhaust memory.

Issue 15, item 3: a 74-byte file whose only key is 10**9 made ``read_tfrecords`` without
``n_rows`` allocate 7.45 GiB, and ``walsrec train --train-rows/--train-cols`` without
``--num-rows/--num-cols`` was OOM-killed at 24 GB. The memory tests run the reader in a
child process whose address space is capped at 1 GiB above what it uses once warmed up,
so an allocation of that size fails there (MemoryError) instead of being attempted here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp

from tests.data.test_tfrecord import row_example, write_file
from walsrec.data.tfrecord import read_tfrecords, write_tfrecords
from walsrec.errors import DataFormatError
from walsrec.training import train

BASE, PER = 2**20, 16  # the documented rule: < 2**20 + 16 per record (or stored value)

capped = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="needs RLIMIT_AS and /proc (Linux)"
)


def run_capped(body: str, tmp_path) -> dict:
    """Run ``body`` (Python defining ``result``) in a child whose address space is capped at
    1 GiB above its size after warming up the reader; returns ``result`` as JSON."""
    script = textwrap.dedent(
        """
        import json, resource
        import numpy as np, scipy.sparse as sp
        from walsrec.data.tfrecord import read_tfrecords, write_tfrecords

        warm = write_tfrecords(sp.identity(3, np.float32, "csr"), {warm!r})
        read_tfrecords(warm, vocab_size=3)  # load the compiled kernels before the cap
        size = next(int(line.split()[1]) for line in open("/proc/self/status")
                    if line.startswith("VmSize:")) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size + 2**30, resource.RLIM_INFINITY))
        try:
        {body}
        except MemoryError:
            result = {{"error": "MemoryError"}}
        print(json.dumps(result))
        """
    ).format(warm=str(tmp_path / "warm"), body=textwrap.indent(textwrap.dedent(body), "    "))
    env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def huge_key_file(tmp_path, key=10**9):
    path = write_file(
        tmp_path / "items_for_user-00000-of-00001.tfrecord", row_example(key, [1], [1.0])
    )
    assert path.stat().st_size < 100
    return path


@capped
def test_huge_key_without_n_rows_is_a_clean_error_not_an_allocation(tmp_path):
    path = huge_key_file(tmp_path)
    result = run_capped(
        f"""
        from walsrec.errors import DataFormatError
        try:
            read_tfrecords({str(path)!r}, vocab_size=10)
            result = {{"error": None}}
        except DataFormatError as exc:
            result = {{"error": "DataFormatError", "message": str(exc)}}
        """,
        tmp_path,
    )
    assert result["error"] == "DataFormatError", result
    assert result["message"] == (
        f"{path}: record 0 (0-based): key 1000000000 is too large for n_rows to be taken "
        f"from the records: without n_rows, keys must be < {BASE + PER} (1048576 + 16 per "
        "record; 1 records read), so that one bad record cannot exhaust memory. If the data "
        "really has more than 1000000000 rows, pass n_rows=<the rows>."
    )


def train_capped(rows, cols, tmp_path) -> dict:
    """``walsrec train`` on TFRecords without sizes, in a capped child: exit code, stderr."""
    return run_capped(
        f"""
        import contextlib, io
        from walsrec.cli import main
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["train", "--train-rows", {str(rows)!r}, "--train-cols", {str(cols)!r},
                         "--model-dir", {str(tmp_path / "m")!r}, "--quiet"])
        result = {{"code": code, "stderr": err.getvalue()}}
        """,
        tmp_path,
    )


@capped
def test_train_on_records_with_a_huge_key_is_a_clean_error(tmp_path):
    # The reported case: walsrec train on the records without --num-rows/--num-cols and
    # without vocabularies beside them.
    rows = huge_key_file(tmp_path)
    cols = write_file(
        tmp_path / "users_for_item-00000-of-00001.tfrecord", row_example(1, [10**9], [1.0])
    )
    result = train_capped(rows, cols, tmp_path)
    assert result.get("code") == 2, result
    assert result["stderr"].startswith(
        f"walsrec train: error: {rows}: record 0 (0-based): key 1000000000 is too large for "
        f"n_rows to be taken from the records: without n_rows, keys must be < {BASE + PER}"
    )
    assert (
        result["stderr"]
        .rstrip()
        .endswith(
            "If the data really has that many users, give train 'num_rows' (--num-rows) = the "
            "number of users, or put the users vocabulary beside the records (DIR/user_ids.txt "
            "or DIR/../vocab/users.txt, one id per line)."
        )
    )


@capped
def test_train_names_num_cols_for_a_huge_item_index(tmp_path):
    rows = write_file(tmp_path / "items_for_user.tfrecord", row_example(0, [10**9], [1.0]))
    cols = write_file(tmp_path / "users_for_item.tfrecord", row_example(10**9, [0], [1.0]))
    result = train_capped(rows, cols, tmp_path)
    assert result.get("code") == 2, result
    assert re.fullmatch(
        r"walsrec train: error: .*items_for_user\.tfrecord: record 0 \(0-based\): column "
        r"index 1000000000 is too large.*If the data really has that many items, give train "
        r"'num_cols' \(--num-cols\) = the number of items, or put the items vocabulary "
        r"beside the records \(DIR/item_ids\.txt or DIR/\.\./vocab/items\.txt, one id per "
        r"line\)\.\n",
        result["stderr"],
    ), result


def test_huge_column_index_without_vocab_size(tmp_path):
    path = write_file(tmp_path / "r.tfrecord", row_example(0, [2, 10**9], [1.0, 2.0]))
    limit = BASE + PER * 2
    with pytest.raises(
        DataFormatError,
        match=rf"r\.tfrecord: record 0 \(0-based\): column index 1000000000 is too large for "
        rf"the number of columns to be taken from the records: without vocab_size, column "
        rf"indices must be < {limit} \({BASE} \+ 16 per stored value, at most 2147483647; "
        r"2 stored values read\).*pass vocab_size=<the columns>\.",
    ):
        read_tfrecords(path, vocab_size=None)


def test_column_index_beyond_int32_without_vocab_size(tmp_path):
    # Caught while parsing, before any check over all files: indices are then int32.
    path = write_file(tmp_path / "r.tfrecord", row_example(0, [2**40], [1.0]))
    with pytest.raises(
        DataFormatError,
        match=r"r\.tfrecord: record 0 \(0-based\): column index 1099511627776 is too large "
        r"for the number of columns.*must be < 2147483647 \(1048576 \+ 16 per stored value, "
        r"at most 2147483647\), so that",
    ):
        read_tfrecords(path, vocab_size=None)


def test_limits_on_inferred_sizes_are_exact(tmp_path):
    # One record, one value: keys and column indices up to 2**20 + 15 are inferred.
    ok = write_file(tmp_path / "ok.tfrecord", row_example(BASE + PER - 1, [BASE + PER - 1], [1.0]))
    m = read_tfrecords(ok, vocab_size=None)
    assert m.shape == (BASE + PER, BASE + PER)
    assert m.indices.dtype == np.int32
    assert m[BASE + PER - 1, BASE + PER - 1] == 1.0
    key = write_file(tmp_path / "key.tfrecord", row_example(BASE + PER, [0], [1.0]))
    with pytest.raises(DataFormatError, match=rf"key {BASE + PER} is too large.*< {BASE + PER} "):
        read_tfrecords(key, vocab_size=1)
    assert read_tfrecords(key, vocab_size=1, n_rows=BASE + PER + 1).shape == (BASE + PER + 1, 1)
    col = write_file(tmp_path / "col.tfrecord", row_example(0, [BASE + PER], [1.0]))
    with pytest.raises(DataFormatError, match=rf"column index {BASE + PER} is too large"):
        read_tfrecords(col, vocab_size=None)
    assert read_tfrecords(col, vocab_size=BASE + PER + 1).shape == (1, BASE + PER + 1)


def test_limit_grows_with_the_records_and_names_the_first_offender(tmp_path):
    # 3 records in two files: keys < 2**20 + 48; the first key past it is reported.
    write_file(
        tmp_path / "a.tfrecord", row_example(0, [1], [1.0]), row_example(BASE + 47, [2], [1.0])
    )
    write_file(tmp_path / "b.tfrecord", row_example(BASE + 48, [3], [1.0]))
    with pytest.raises(
        DataFormatError,
        match=r"b\.tfrecord: record 0 \(0-based\): key 1048624 is too large.*< 1048624 "
        r"\(1048576 \+ 16 per record; 3 records read\)",
    ):
        read_tfrecords(tmp_path / "*.tfrecord", vocab_size=5)
    # With a third record of a small key, key 2**20 + 47 is within the limit.
    write_file(tmp_path / "b.tfrecord", row_example(5, [3], [1.0]))
    assert read_tfrecords(tmp_path / "*.tfrecord", vocab_size=5).shape == (BASE + 48, 5)


def test_vocab_size_none_infers_the_width(tmp_path):
    m = sp.csr_matrix(np.array([[0, 1.5, 0, 0], [0, 0, 0, 0], [2.0, 0, 3.0, 0]], np.float32))
    write_tfrecords(m, tmp_path / "r")
    back = read_tfrecords(tmp_path / "r-*", vocab_size=None)
    assert back.shape == (3, 3)  # the empty last column is not seen
    np.testing.assert_array_equal(back.toarray(), m.toarray()[:, :3])
    write_tfrecords(sp.csr_matrix((2, 4), dtype=np.float32), tmp_path / "e", skip_empty=False)
    assert read_tfrecords(tmp_path / "e-*", vocab_size=None).shape == (2, 0)


def test_train_takes_sizes_from_the_vocabularies_beside_the_records(tmp_path):
    # users.txt holds 3 users: key 5 is out of range before anything of its size exists.
    data = tmp_path / "data"
    for folder in ("vocab", "train"):
        (data / folder).mkdir(parents=True)
    (data / "vocab" / "users.txt").write_text("a\nb\nc\n")
    (data / "vocab" / "items.txt").write_text("x\ny\n")
    rows = write_file(data / "train" / "items_for_user.tfrecord", row_example(5, [1], [1.0]))
    cols = write_file(data / "train" / "users_for_item.tfrecord", row_example(1, [5], [1.0]))
    with pytest.raises(
        DataFormatError,
        match=rf"{rows}: record 0 \(0-based\): key 5 is >= n_rows=3\. Were rows and columns "
        "swapped",
    ):
        train(model_dir=str(tmp_path / "m"), train_rows=str(rows), train_cols=str(cols), sweeps=1)
