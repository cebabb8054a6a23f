"""Reading exports back: model.json against its schema, every array checked before use."""

from __future__ import annotations

import json
import os
import shutil
import stat
import time

import numpy as np
import pytest

from tests.serving.conftest import make_export
from walsrec.errors import DataFormatError
from walsrec.serving.export import read_export
from walsrec.serving.model import load_model


@pytest.fixture
def export(tmp_path):
    return make_export(tmp_path / "m")


def _edit_meta(export, change):
    path = export / "model.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda m: m.update(version="abc"), r"version: Input should be a valid integer \(got 'ab"),
        (lambda m: m.update(version=None), r"version: Input should be a valid integer \(got None"),
        (lambda m: m.update(version=-3), r"version: Input should be greater than or equal to 0"),
        (lambda m: m.update(version=1.5), r"version: Input should be a valid integer"),
        (lambda m: m.update(version=10**30), r"version: Input should be less than or equal"),
        (lambda m: m.update(counts=[40, 30]), r"counts: Input should be a valid dictionary"),
        (lambda m: m["counts"].pop("n_items"), r"counts\.n_items: Field required"),
        (lambda m: m["counts"].update(n_users=True), r"counts\.n_users: Input should be a valid"),
        (lambda m: m["counts"].update(embedding_dim=0), r"counts\.embedding_dim: Input should be"),
        (lambda m: m.update(hyperparameters=[1]), r"hyperparameters: Input should be a valid dict"),
        (lambda m: m.pop("created"), r"created: Field required"),
        (lambda m: m.update(metrics="good"), r"metrics: Input should be a valid dictionary"),
    ],
)
def test_model_json_is_checked_against_its_schema(export, change, match):
    _edit_meta(export, change)
    with pytest.raises(DataFormatError, match=rf"model\.json: .*{match}"):
        read_export(export)
    with pytest.raises(DataFormatError, match=match):
        load_model(export)


def test_model_json_that_is_not_an_object_or_not_text_is_named(export):
    (export / "model.json").write_text("[1, 2]")
    with pytest.raises(DataFormatError, match=r"model\.json: format_version None is not suppor"):
        read_export(export)
    (export / "model.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(DataFormatError, match=r"model\.json: not valid JSON"):
        read_export(export)
    (export / "model.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataFormatError, match=r"model\.json: not valid JSON"):
        read_export(export)


def test_a_corrupt_training_matrix_in_an_export_is_refused(export):
    # the reproduction: indptr[1] past the end; this crashed `walsrec serve`
    path = export / "train" / "user_items.indptr.npy"
    a = np.load(path)
    a[1] = a[-1] + 10**6
    np.save(path, a)
    with pytest.raises(DataFormatError, match=r"user_items\.indptr\.npy: indptr decreases at"):
        load_model(export)


@pytest.mark.parametrize(
    "name, arr, match",
    [
        ("user_factors.npy", np.ones((40, 4), dtype=np.int32), r"dtype int32 is not float32"),
        ("item_factors.npy", np.full((30, 4), np.inf, np.float32), r"NaN or infinity"),
        ("item_factors.npy", np.ones(120, np.float32), r"shape \(120,\) does not match"),
    ],
)
def test_bad_factor_files_are_refused(export, name, arr, match):
    np.save(export / name, arr)
    with pytest.raises(DataFormatError, match=match):
        load_model(export)


def test_exports_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        export = make_export(tmp_path / "m")
    finally:
        os.umask(old)
    # a serving account (another user) can read what a training account wrote
    assert stat.S_IMODE(export.stat().st_mode) == 0o755
    for p in export.rglob("*"):
        assert stat.S_IMODE(p.stat().st_mode) in (0o755, 0o644), p


def test_a_killed_exports_temporary_directory_is_removed_by_the_next(tmp_path):
    first = make_export(tmp_path / "m")
    leftover = first.parent / f".{first.name}.tmp-999999999-00ff00ff"
    shutil.copytree(first, leftover)
    t = time.time() - 60  # older than the grace period a new temporary gets
    os.utime(leftover, (t, t))
    make_export(tmp_path / "m", seed=1)
    assert not leftover.exists()


@pytest.mark.parametrize("scale", [1e20, 1e39])
def test_factors_whose_scores_overflow_float32_are_refused(export, scale):
    # 1e20: finite in float32 but u·v overflows; 1e39: finite in float64, inf in float32
    v = np.load(export / "item_factors.npy").astype(np.float64)
    v[3] *= scale
    np.save(export / "item_factors.npy", v)
    with pytest.raises(DataFormatError, match=r"the factors are too large to score in float32"):
        load_model(export)


@pytest.mark.parametrize(
    "name, match",
    [
        ("user_factors.npy", r"user_factors\.npy: not a regular file"),
        ("vocab/items.txt", r"items\.txt: not a regular file"),
        ("model.json", r"is neither an export \(no model\.json\)"),
    ],
)
def test_a_fifo_among_an_exports_files_is_refused_not_waited_on(export, name, match):
    """A FIFO planted in a new export blocked the service's reload thread for good."""
    import signal

    (export / name).unlink()
    os.mkfifo(export / name)

    def hung(signum, frame):
        raise AssertionError(f"load_model blocked on the FIFO {name}")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        with pytest.raises(DataFormatError, match=match):
            load_model(export)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
