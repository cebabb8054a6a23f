"""Mutated native arrays, DATA_DIRs, exports, checkpoints and TFRecord shards: every
outcome is a clean walsrec error naming the file, or data that loads and works."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz import _mutations as mut
from tests.fuzz.conftest import FUZZ
from tests.serving.conftest import make_export
from walsrec.data.native import save_csr
from walsrec.data.tfrecord import write_tfrecords
from walsrec.training.checkpoints import write_checkpoint


def _matrix(seed: int = 0, shape=(7, 6)) -> sp.csr_matrix:
    m = sp.random(*shape, density=0.35, format="csr", random_state=seed, dtype=np.float32)
    m = m.tolil()
    m[2, :] = 0  # an empty row
    return m.tocsr()


def _fresh(tmp_path: Path, template: Path) -> Path:
    """A copy of ``template`` to mutate, in a directory of its own."""
    target = Path(tempfile.mkdtemp(dir=tmp_path)) / template.name
    shutil.copytree(template, target)
    return target


def _assert_clean(answer: dict, where: Path) -> None:
    # (a file that loads may still hold numbers no model can be solved with: a fit or a
    # fold-in then raises SingularSystemError, a clean error about the model, not the file)
    if answer["outcome"] == "error" and answer["type"] == "DataFormatError":
        # the message names the file or directory at fault
        assert str(where) in answer["message"] or where.name in answer["message"], answer


def _mutate_native(draw, directory: Path, name: str) -> None:
    part = draw(st.sampled_from(["indptr", "indices", "data", "json"]))
    if part == "json":
        mut.mutate_json(draw, directory / f"{name}.json")
    else:
        mut.mutate_npy(draw, directory / f"{name}.{part}.npy")


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    root = tmp_path_factory.mktemp("templates")
    native = root / "native"
    save_csr(native, "m", _matrix())
    from walsrec.data.prepare import prepare

    csv = root / "events.csv"
    rng = np.random.default_rng(0)
    rows = [f"u{rng.integers(12)},i{rng.integers(9)},{rng.integers(1, 6)}" for _ in range(80)]
    csv.write_text("user,item,rating\n" + "\n".join(rows) + "\n")
    prepare(str(csv), root / "data", rating_col="rating", eval_fraction=0.2, split="user")
    export = make_export(root / "model", n_users=9, n_items=7, k=3)
    ckpt = write_checkpoint(
        root / "ckpt",
        4,
        np.ones((9, 3), np.float32),
        np.ones((7, 3), np.float32),
        {
            "step": 4,
            "loss_history": [2.0, 1.0],
            "best": None,
            "best_step": None,
            "bad_evals": 0,
            "stopped_early": False,
        },
        keep=1,
    )
    shards = root / "shards"
    shards.mkdir()
    write_tfrecords(_matrix(1, (8, 50)), shards / "rows.tfrecord")
    return {
        "native": native,
        "data": root / "data",
        "export": export,
        "ckpt": ckpt,
        "shards": shards,
    }


@FUZZ
@given(st.data())
def test_mutated_native_matrix(reader, templates, tmp_path, data):
    d = _fresh(tmp_path, templates["native"])
    for _ in range(data.draw(st.integers(1, 3))):
        _mutate_native(data.draw, d, "m")
    _assert_clean(reader.read("native", d), d)


@FUZZ
@given(st.data())
def test_mutated_data_dir(reader, templates, tmp_path, data):
    d = _fresh(tmp_path, templates["data"])
    target = data.draw(st.sampled_from(["user_items", "item_users", "meta", "vocab"]))
    if target == "meta":
        mut.mutate_json(data.draw, d / "meta.json")
    elif target == "vocab":
        vocab = d / "vocab" / data.draw(st.sampled_from(["users.txt", "items.txt"]))
        vocab.write_bytes(data.draw(mut.byte_mutation(vocab.read_bytes())))
    else:
        _mutate_native(data.draw, d / "train" / "native", target)
    _assert_clean(reader.read("prepared", d), d)


@FUZZ
@given(st.data())
def test_mutated_export(reader, templates, tmp_path, data):
    d = _fresh(tmp_path, templates["export"])
    target = data.draw(st.sampled_from(["model.json", "model.json", "factors", "train", "vocab"]))
    if target == "model.json":
        mut.mutate_json(data.draw, d / "model.json")
    elif target == "factors":
        name = data.draw(st.sampled_from(["user_factors.npy", "item_factors.npy"]))
        mut.mutate_npy(data.draw, d / name)
    elif target == "train":
        _mutate_native(data.draw, d / "train", "user_items")
    else:
        vocab = d / "vocab" / data.draw(st.sampled_from(["users.txt", "items.txt"]))
        vocab.write_bytes(data.draw(mut.byte_mutation(vocab.read_bytes())))
    _assert_clean(reader.read("export", d), d)


@FUZZ
@given(st.data())
def test_mutated_checkpoint(reader, templates, tmp_path, data):
    d = _fresh(tmp_path, templates["ckpt"])
    target = data.draw(st.sampled_from(["state.json", "state.json", "factors"]))
    if target == "state.json":
        mut.mutate_json(data.draw, d / "state.json")
    else:
        name = data.draw(st.sampled_from(["user_factors.npy", "item_factors.npy"]))
        mut.mutate_npy(data.draw, d / name)
    _assert_clean(reader.read("checkpoint", d), d)


@FUZZ
@given(st.data())
def test_mutated_tfrecord_shard(reader, templates, tmp_path, data):
    d = _fresh(tmp_path, templates["shards"])
    (path,) = d.iterdir()  # write_tfrecords names its one shard
    raw = path.read_bytes()
    if data.draw(st.booleans()):
        # bytes garbled under the framing: the CRCs should catch it
        path.write_bytes(data.draw(mut.byte_mutation(raw)))
    else:
        # records garbled or forged with valid CRCs: the parser itself is tested
        payloads = mut.unframe(raw)
        for _ in range(data.draw(st.integers(1, 2))):
            i = data.draw(st.integers(0, len(payloads) - 1))
            payloads[i] = data.draw(mut.record_mutation(payloads[i]))
        path.write_bytes(mut.frame(payloads))
    _assert_clean(reader.read("tfrecord", path), path)


def test_the_reader_process_reports_a_crash(reader, tmp_path):
    """The suite can fail: a reader that dies is reported, not mistaken for a pass."""
    answer = reader.read("native", tmp_path)
    assert answer["outcome"] == "error" and "m.json: missing" in answer["message"]
    with pytest.raises(pytest.fail.Exception, match=r"the segfault reader crashed \(exit code -11"):
        reader.read("segfault", tmp_path)
    assert reader.read("native", tmp_path)["outcome"] == "error"  # a new process answers
