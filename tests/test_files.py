from __future__ import annotations

import os

import pytest

from walsrec._files import atomic_write_text, read_versioned_json, write_dir_atomically
from walsrec.errors import DataFormatError


def test_read_versioned_json_names_the_file_and_the_problem(tmp_path):
    p = tmp_path / "meta.json"
    with pytest.raises(DataFormatError, match=r"meta\.json: missing; not a DATA_DIR\."):
        read_versioned_json(p, 1, "not a DATA_DIR.")
    p.write_text("{oops")
    with pytest.raises(DataFormatError, match=r"meta\.json: not valid JSON"):
        read_versioned_json(p, 1, "")
    atomic_write_text(p, '{"format_version": 2}')
    with pytest.raises(
        DataFormatError,
        match=r"format_version 2 is not supported \(this "
        r"walsrec reads 1\)",
    ):
        read_versioned_json(p, 1, "")
    atomic_write_text(p, '{"format_version": 1, "n": 3}')
    assert read_versioned_json(p, 1, "") == {"format_version": 1, "n": 3}
    assert os.listdir(tmp_path) == ["meta.json"]  # no temporary file left


def test_write_dir_atomically_replaces_whole_or_not_at_all(tmp_path):
    final = tmp_path / "out"
    write_dir_atomically(final, lambda d: (d / "a.txt").write_text("one"))
    assert (final / "a.txt").read_text() == "one"

    def fail(d):
        (d / "a.txt").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_dir_atomically(final, fail)
    assert (final / "a.txt").read_text() == "one"
    write_dir_atomically(final, lambda d: (d / "b.txt").write_text("two"))
    assert sorted(os.listdir(final)) == ["b.txt"]
    assert sorted(os.listdir(tmp_path)) == ["out"]
