"""walsrec recommend / similar / predict on the command line, and batch prediction files."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest

from walsrec.cli import main
from walsrec.errors import InvalidParameterError, UnknownIdError
from walsrec.serving.predict import predict


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_recommend_prints_the_model_top_k(capsys, model, trained_model_dir):
    uid = model.users.id(7)
    code, out, _ = _run(capsys, "recommend", "--model", trained_model_dir, "--user", uid, "--json")
    assert code == 0
    got = json.loads(out)
    assert [x["item"] for x in got["items"]] == model.recommend(uid).items
    code, out, _ = _run(capsys, "recommend", "--model", trained_model_dir, "--user", uid, "--k", 3)
    assert code == 0 and f"Top 3 items recommended for user {uid!r}" in out
    assert model.recommend(uid, k=3).items[2] in out.splitlines()[-1]


def test_recommend_unknown_user_exits_2_or_falls_back(capsys, trained_model_dir, model):
    code, out, err = _run(capsys, "recommend", "--model", trained_model_dir, "--user", "nobody")
    assert code == 2 and out == ""
    assert err.strip() == "walsrec recommend: error: Unknown user id 'nobody'."
    code, out, _ = _run(
        capsys, "recommend", "--model", trained_model_dir, "--user", "nobody",
        "--fallback", "popular", "--json", "--k", 4,
    )  # fmt: skip
    assert code == 0
    got = json.loads(out)
    assert got["fallback"] == "popular"
    assert [x["item"] for x in got["items"]] == model.popular(4).items


def test_recommend_bad_k_exits_2_with_the_rule(capsys, trained_model_dir, model):
    code, _, err = _run(
        capsys, "recommend", "--model", trained_model_dir, "--user", model.users.id(0), "--k", 0
    )
    assert code == 2
    assert "The 'k' parameter of recommend must be an int >= 1. Got 0 instead." in err


def test_similar_prints_cosine_neighbours(capsys, trained_export, model):
    iid = model.items.id(3)
    code, out, _ = _run(capsys, "similar", "--model", trained_export, "--item", iid, "--json")
    assert code == 0
    assert [x["item"] for x in json.loads(out)["items"]] == model.similar_items(iid).items
    code, _, err = _run(capsys, "similar", "--model", trained_export, "--item", "nope")
    assert code == 2 and "Unknown item id 'nope'" in err


def test_a_broken_export_is_one_line_and_exit_2(capsys, tmp_path):
    from .conftest import make_export

    path = make_export(tmp_path)
    (path / "item_factors.npy").write_bytes(b"\x93NUMPY garbage")
    code, _, err = _run(capsys, "recommend", "--model", path, "--user", "u1")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "item_factors.npy" in err


def test_serve_without_a_loadable_export_is_one_line_and_exit_2(capsys, tmp_path):
    # Regression: the export was first loaded in uvicorn's lifespan, whose failure was a
    # traceback and exit code 3
    from .conftest import make_export

    path = make_export(tmp_path)
    (path / "item_factors.npy").write_bytes(b"\x93NUMPY garbage")
    code, _, err = _run(capsys, "serve", "--model", tmp_path, "--port", "1")
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("walsrec serve: error: ") and "item_factors.npy" in err


def test_recommend_and_serve_examples_use_ids_of_the_demo():
    # Regression: `walsrec serve --help` and `walsrec recommend --help` showed ids (5367,
    # 299824032) that the data of `walsrec demo` does not hold
    import argparse

    from walsrec.cli import build_parser
    from walsrec.datasets import generate_visits

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    demo = parser.parse_args(["demo"])
    table = generate_visits(demo.interactions, seed=demo.seed)
    demo_users = set(table.column("visitor_id").to_pylist())
    demo_items = set(table.column("article_id").to_pylist())
    serve = sub.choices["serve"].epilog
    users = re.findall(r"/recommendations/([^?'/\s]+)", serve)
    items = re.findall(r'"item": "([^"]*)"', serve)
    recommend = sub.choices["recommend"].epilog.splitlines()
    users += [
        u
        for line in recommend
        if "--fallback" not in line
        for u in re.findall(r"--user (\S+)", line)
    ]
    # the fallback's example names a user that is not in the data, on purpose
    unknown = [
        u for line in recommend if "--fallback" in line for u in re.findall(r"--user (\S+)", line)
    ]
    assert len(users) == 3 and len(items) == 1 and len(unknown) == 1
    assert set(users) <= demo_users and set(items) <= demo_items
    assert not set(unknown) & demo_users


# --------------------------------------------------------------------------- predict


def test_predict_course_format_is_one_line_per_user_index(
    capsys, tmp_path, model, trained_model_dir
):
    out = tmp_path / "batch_pred.txt"
    code, stdout, _ = _run(
        capsys, "predict", "--model", trained_model_dir, "--out", out, "--k", 3,
        "--format", "course", "--quiet", "--chunk-size", 50,
    )  # fmt: skip
    assert code == 0 and "top 3 for 599 users" in stdout
    lines = out.read_text().splitlines()
    assert len(lines) == model.n_users
    for user in (0, 1, 300, model.n_users - 1):
        assert lines[user] == ",".join(
            str(j) for j in model.recommend(model.users.id(user), k=3).indices
        )
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_predict_formats_carry_ids_and_scores(tmp_path, model, fmt):
    out = tmp_path / f"top.{fmt}"
    users = [model.users.id(i) for i in (5, 2, 9)]
    info = predict(model, out, k=4, format=fmt, users=users, n_jobs=2)
    assert info["users"] == 3
    want = {u: model.recommend(u, k=4) for u in users}
    if fmt == "jsonl":
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["user"] for r in rows] == users
        for r in rows:
            assert r["items"] == want[r["user"]].items
            np.testing.assert_allclose(r["scores"], want[r["user"]].scores, rtol=1e-6)
        return
    if fmt == "csv":
        import pyarrow.csv as pcsv

        table = pcsv.read_csv(
            out,
            convert_options=pcsv.ConvertOptions(column_types={"user": "string", "item": "string"}),
        )
    else:
        table = pq.read_table(out)
    assert table.column_names == ["user", "rank", "item", "score"]
    d = table.to_pydict()
    assert d["user"] == [u for u in users for _ in range(4)]
    assert d["rank"] == [1, 2, 3, 4] * 3
    assert d["item"] == [i for u in users for i in want[u].items]
    np.testing.assert_allclose(
        d["score"], np.concatenate([want[u].scores for u in users]), rtol=1e-6
    )


def test_predict_include_seen_and_users_file(capsys, tmp_path, model, trained_export):
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{model.users.id(4)}\n\n{model.users.id(1)}\n")
    out = tmp_path / "p.jsonl"
    code, _, _ = _run(
        capsys, "predict", "--model", trained_export, "--out", out, "--format", "jsonl",
        "--users", ids, "--include-seen", "--quiet", "--k", 5,
    )  # fmt: skip
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["user"] for r in rows] == [model.users.id(4), model.users.id(1)]
    assert rows[0]["items"] == model.recommend(model.users.id(4), k=5, exclude_seen=False).items


def test_predict_errors(tmp_path, model):
    with pytest.raises(UnknownIdError, match="Unknown user id 'ghost' \\(line 2 of the users"):
        predict(model, tmp_path / "x.csv", users=[model.users.id(0), "ghost"])
    with pytest.raises(InvalidParameterError, match="The 'format' parameter of predict"):
        predict(model, tmp_path / "x.csv", format="xml")
    with pytest.raises(InvalidParameterError, match="The 'k' parameter of predict must be"):
        predict(model, tmp_path / "x.csv", k=0)
    assert not (tmp_path / "x.csv").exists()


def test_predict_keeps_the_old_file_when_interrupted(tmp_path, model):
    out = tmp_path / "p.csv"
    out.write_text("old\n")

    def stop(done):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict(model, out, chunk_size=100, progress=stop)
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv"]


def _copy_export(trained_export, root):
    import shutil

    export = root / "exp"
    shutil.copytree(trained_export, export)
    return export


def test_predict_out_may_not_overwrite_its_inputs(capsys, tmp_path, trained_export, model):
    # Regression: --out inside the export destroyed it, --out = --users overwrote the users
    # list, and --out naming a directory failed on a temporary name ('.exp.tmp-PID -> exp')
    export = _copy_export(trained_export, tmp_path)
    users = tmp_path / "users.txt"
    users.write_text(f"{model.users.id(0)}\n")
    before = {p: p.read_bytes() for p in [users, *export.rglob("*")] if p.is_file()}
    cases = [
        (export / "model.json", "is or lies inside the input"),
        (export, "is or lies inside the input"),
        (users, "is or lies inside the input"),
        (tmp_path, "is a directory; give a file name"),
    ]
    for out, message in cases:
        code, stdout, err = _run(
            capsys, "predict", "--model", export, "--users", users, "--out", out, "--quiet"
        )
        assert code == 2 and stdout == "", out
        assert err.startswith(f"walsrec predict: error: The 'out' file {str(out)!r} ") or (
            err.startswith(f"walsrec predict: error: The 'out' path {str(out)!r} ")
        ), err
        assert message in err and ".tmp-" not in err and err.count("\n") == 1
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp", "users.txt"]


def test_predict_refuses_out_inside_the_export_or_its_data_dir(tmp_path, trained_export):
    from walsrec.serving.model import load_model

    export = _copy_export(trained_export, tmp_path)  # copies: a regression harms no fixture
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "meta.json").write_text("{}\n")
    meta = json.loads((export / "model.json").read_text())
    meta["training"]["data"] = str(data_dir)
    (export / "model.json").write_text(json.dumps(meta))
    model_json = (export / "model.json").read_bytes()
    with pytest.raises(InvalidParameterError, match=r"The 'out' file .*model\.json' is or lies"):
        predict(export, export / "model.json")
    model = load_model(export)
    with pytest.raises(InvalidParameterError, match=r"The 'out' file .* is or lies inside the inp"):
        predict(model, export / "vocab" / "users.txt")
    with pytest.raises(InvalidParameterError, match=r"The 'out' file .*meta\.json' is or lies"):
        predict(model, data_dir / "meta.json")
    with pytest.raises(InvalidParameterError, match=r"The 'out' path .* is a directory; give a"):
        predict(model, tmp_path)
    assert (export / "model.json").read_bytes() == model_json
    assert (data_dir / "meta.json").read_text() == "{}\n"
