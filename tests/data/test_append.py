"""``prepare(..., append_to=)``: stable vocabularies, frozen settings, pairs combined."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from walsrec.cli.main import main
from walsrec.data.prepare import load_prepared, prepare
from walsrec.errors import DataFormatError, InvalidParameterError

# the parent's rows, then the new ones: ids that sort before the parent's (a0, b9, i0),
# pairs the parent holds in train and in eval, repeated pairs within the new rows
PARENT = [
    ("u1", "x", 2.0), ("u1", "y", 4.0), ("u1", "z", 1.0), ("u2", "x", 8.0), ("u2", "y", 1.0),
    ("u2", "z", 3.0), ("u2", "w", 2.0), ("u3", "x", 1.0), ("u3", "w", 5.0), ("u3", "y", 6.0),
    ("u1", "x", 1.0), ("u4", "z", 2.0), ("u4", "y", 2.0), ("u4", "x", 4.0),
]  # fmt: skip
NEW = [
    ("u1", "x", 3.0), ("b9", "x", 1.0), ("a0", "i0", 2.0), ("u2", "i0", 1.0), ("u3", "w", 0.5),
    ("a0", "x", 4.0), ("u1", "x", 2.0), ("u4", "y", 7.0), ("b9", "w", 1.5),
]  # fmt: skip


def _csv(path: Path, rows) -> str:
    path.write_text("user,item,r\n" + "".join(f"{u},{i},{r}\n" for u, i, r in rows))
    return str(path)


def _values(data) -> dict:
    """{(user, item): value} of a DATA_DIR's train and eval matrices."""
    out = {}
    for part in (data.train, data.eval):
        if part is None:
            continue
        m = part.user_items.tocoo()
        for r, c, v in zip(m.row, m.col, m.data, strict=True):
            out[(part.users.id(r), part.items.id(c))] = float(v)
    return out


def _oracle(rows, how: str, info: dict) -> dict:
    """Each pair's rows combined by ``how`` (raw, in order), then transformed with the
    parent's recorded parameters."""
    by_pair: dict = {}
    for u, i, r in rows:
        by_pair.setdefault((u, i), []).append(r)
    raw = {
        "sum": sum,
        "max": max,
        "first": lambda v: v[0],
        "last": lambda v: v[-1],
    }
    out = {}
    for pair, vals in by_pair.items():
        x = float(raw[how](vals))
        if info["name"] == "log1p":
            x = np.log1p(x)
        elif info["name"] == "scaled-median":
            x = min(info["cap"], info["scale"] * x / info["median"])
        elif info["name"] == "binary":
            x = 1.0
        out[pair] = float(np.float32(x))
    return out


@pytest.mark.parametrize("how", ["sum", "max", "first", "last"])
@pytest.mark.parametrize("transform", ["none", "binary", "log1p", "scaled-median"])
def test_pairs_combine_with_the_recorded_rule_and_frozen_transform(tmp_path, how, transform):
    parent = _csv(tmp_path / "a.csv", PARENT)
    new = _csv(tmp_path / "b.csv", NEW)
    kw = dict(rating_col="r", duplicates=how, rating_transform=transform, cap=0.9)
    meta = prepare(parent, tmp_path / "one", eval_fraction=0.3, split="user", seed=1, **kw)
    appended = prepare(new, tmp_path / "two", append_to=tmp_path / "one")  # settings: parent's
    one, two = load_prepared(tmp_path / "one"), load_prepared(tmp_path / "two")
    # ids keep their indices; new ones follow in order of first appearance in the new rows
    assert two.train.users.to_list() == [*one.train.users.to_list(), "b9", "a0"]
    assert two.train.items.to_list() == [*one.train.items.to_list(), "i0"]
    # every pair's value: the oracle with the parent's transform (its median frozen)
    got = _values(two)
    want = _oracle(PARENT + NEW, how, meta["rating_transform"])
    assert got.keys() == want.keys()
    for pair, value in want.items():
        assert got[pair] == pytest.approx(value, rel=1e-6), pair
    # the parent's split kept: held-out pairs stay held out, new pairs go to train
    held = set(_values(load_prepared(tmp_path / "one")).keys()) - {
        (one.train.users.id(r), one.train.items.id(c))
        for r, c in zip(*one.train.user_items.nonzero(), strict=True)
    }
    eval_pairs = {
        (two.eval.users.id(r), two.eval.items.id(c))
        for r, c in zip(*two.eval.user_items.nonzero(), strict=True)
    }
    assert eval_pairs == held and held
    assert appended["rating_transform"] == meta["rating_transform"]
    assert appended["duplicates"] == how
    (entry,) = appended["lineage"]
    assert entry["parent"] == str((tmp_path / "one").resolve())
    assert entry["new_users"] == 2 and entry["new_items"] == 1 and entry["rows_read"] == 9
    assert entry["new_pairs"] == 5  # b9·x, a0·i0, u2·i0, a0·x, b9·w
    assert entry["train_pairs_combined"] + entry["eval_pairs_combined"] == 3  # u1·x u3·w u4·y
    assert json.loads((tmp_path / "two" / "meta.json").read_text())["lineage"] == [entry]


def test_appends_chain_and_an_empty_append_changes_no_byte(tmp_path):
    parent = _csv(tmp_path / "a.csv", PARENT)
    prepare(parent, tmp_path / "one", rating_col="r", shards=2, compression="gzip")
    empty = _csv(tmp_path / "e.csv", [])
    prepare(empty, tmp_path / "same", append_to=tmp_path / "one")
    for name in ("vocab/users.txt", "vocab/items.txt", "train/native/user_items.data.npy",
                 "train/items_for_user-00001-of-00002.tfrecord.gz"):  # fmt: skip
        assert (tmp_path / "same" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()
    prepare(_csv(tmp_path / "b.csv", NEW[:4]), tmp_path / "two", append_to=tmp_path / "same")
    third = prepare(
        _csv(tmp_path / "c.csv", NEW[4:]), tmp_path / "three", append_to=tmp_path / "two"
    )
    assert [e["parent"] for e in third["lineage"]] == [
        str((tmp_path / d).resolve()) for d in ("one", "same", "two")
    ]
    # appending in two steps gives the values of one append (sum of integers: exact)
    prepare(_csv(tmp_path / "all.csv", NEW), tmp_path / "once", append_to=tmp_path / "one")
    assert _values(load_prepared(tmp_path / "three")) == _values(load_prepared(tmp_path / "once"))


def test_what_an_append_refuses(tmp_path):
    parent = _csv(tmp_path / "a.csv", PARENT)
    new = _csv(tmp_path / "b.csv", NEW)
    prepare(parent, tmp_path / "one", rating_col="r", duplicates="max")
    with pytest.raises(
        InvalidParameterError, match=r"'duplicates' parameter of prepare is 'sum', but the "
        r"DATA_DIR .*one was prepared with 'max'"
    ):  # fmt: skip
        prepare(new, tmp_path / "two", append_to=tmp_path / "one", duplicates="sum")
    with pytest.raises(
        InvalidParameterError, match=r"'eval_fraction' parameter of prepare is 0\.2"
    ):
        prepare(new, tmp_path / "two", append_to=tmp_path / "one", eval_fraction=0.2)
    with pytest.raises(InvalidParameterError, match="is the DATA_DIR appended to"):
        prepare(new, tmp_path / "one", append_to=tmp_path / "one", overwrite=True)
    prepare(parent, tmp_path / "mean", rating_col="r", duplicates="mean")
    with pytest.raises(InvalidParameterError, match="duplicates='mean', which an append cannot"):
        prepare(new, tmp_path / "two", append_to=tmp_path / "mean")
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,r\nu1,x,1\nu9,y,abc\n")
    with pytest.raises(DataFormatError, match=r"bad\.csv, line 3, column 'r': .*'abc'"):
        prepare(str(bad), tmp_path / "two", append_to=tmp_path / "one")
    assert not (tmp_path / "two").exists()
    (tmp_path / "one" / "meta.json").write_text('{"format_version": 1, "counts": {}}')
    with pytest.raises(DataFormatError, match=r"meta\.json: its columns, rating_transform"):
        prepare(new, tmp_path / "two", append_to=tmp_path / "one")
    from walsrec.distributed.prepare import prepare as prepare_anywhere

    with pytest.raises(InvalidParameterError, match="'append_to' parameter of prepare cannot"):
        prepare_anywhere(new, tmp_path / "two", append_to=tmp_path / "one", dask="local:1")


def test_the_cli_appends_with_the_parents_settings_and_a_model_serves_the_new_ids(tmp_path, capsys):
    parent = _csv(tmp_path / "a.csv", PARENT * 3)
    new = _csv(tmp_path / "b.csv", NEW)
    assert main(["prepare", parent, "--out", str(tmp_path / "one"), "--rating-col", "r",
                 "--rating-transform", "log1p", "--quiet"]) == 0  # fmt: skip
    code = main(["prepare", new, "--out", str(tmp_path / "two"), "--append-to",
                 str(tmp_path / "one"), "--quiet"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "2 new users, 1 new items, 5 new pairs, 3 pairs combined" in out
    meta = json.loads((tmp_path / "two" / "meta.json").read_text())
    assert meta["rating_transform"] == {"name": "log1p"} and meta["columns"]["rating"] == "r"
    # ids appended after the parent's, though they sort before them: trained and served
    assert main(["train", "--data", str(tmp_path / "two"), "--model-dir", str(tmp_path / "m"),
                 "--sweeps", "2", "--embedding-dim", "2", "--regularization", "0.1",
                 "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["recommend", "--model", str(tmp_path / "m"), "--user", "a0", "--k", "2"]) == 0
    out, _ = capsys.readouterr()
    assert "Top 2 items recommended for user 'a0'" in out
    from walsrec.serving.model import load_model

    model = load_model(tmp_path / "m")
    assert model.users.index("a0") == 5 and model.items.index("i0") == 4
    seen = set(model.recommend("a0", k=5, exclude_seen=False).items) - set(
        model.recommend("a0", k=5).items
    )
    assert seen == {"x", "i0"}  # a0's own interactions, by their appended indices


def test_an_append_needs_no_time_column_and_refuses_a_scale_its_parent_lacks(tmp_path):
    (tmp_path / "a.csv").write_text("user,item,r,t\nu1,x,1,10\nu2,y,2,20\nu1,y,1,30\n")
    prepare(str(tmp_path / "a.csv"), tmp_path / "one", rating_col="r", time_col="t",
            eval_fraction=0.3, split="time")  # fmt: skip
    new = _csv(tmp_path / "b.csv", [("u3", "x", 1.0)])  # no time column
    meta = prepare(new, tmp_path / "two", append_to=tmp_path / "one")
    assert meta["lineage"][-1]["new_users"] == 1
    with pytest.raises(InvalidParameterError, match=r"'scale' parameter of prepare is 5\.0, but"):
        prepare(new, tmp_path / "three", append_to=tmp_path / "one", scale=5.0)
