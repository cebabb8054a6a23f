from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from walsrec.errors import DataFormatError, InvalidParameterError
from walsrec.serving.export import list_exports, read_export
from walsrec.training import column_weights_from_counts, load_config, train
from walsrec.training.regularization import AUTO_GRID

KW = dict(embedding_dim=8, threads=1, seed=3)


def _lines(model_dir):
    return [json.loads(x) for x in (model_dir / "metrics.jsonl").read_text().splitlines()]


def test_train_evaluates_checkpoints_and_exports(data_dir, tmp_path):
    md = tmp_path / "m"
    res = train(data=str(data_dir), model_dir=str(md), sweeps=3, keep_checkpoints=2, **KW)
    lines = _lines(md)
    assert lines[0]["model"] == "most-popular"
    evals = [r for r in lines if r["model"] == "wals"]
    assert [r["step"] for r in evals] == [2, 4, 6] and [r["sweep"] for r in evals] == [1, 2, 3]
    for name in (
        "loss",
        "rwse",
        "precision@10",
        "recall@10",
        "map@10",
        "ndcg@10",
        "auc",
        "coverage",
    ):
        assert np.isfinite(evals[-1][name]), name
    # train's default binary targets: the model predicts preferences, not values
    assert "rmse" not in evals[-1]
    assert evals[0]["loss"] > evals[1]["loss"] > evals[2]["loss"]
    # a model beats most-popular on planted tastes after three sweeps
    assert evals[-1]["ndcg@10"] > lines[0]["ndcg@10"]
    assert (md / "training_curve.png").stat().st_size > 10_000
    assert sorted(p.name for p in (md / "checkpoints").iterdir()) == [
        "step-000000004",
        "step-000000006",
    ]
    exp = read_export(md)
    assert exp.path == res.export_path
    np.testing.assert_array_equal(exp.user_factors, res.model.user_factors_)
    np.testing.assert_array_equal(exp.item_factors, res.model.item_factors_)
    assert exp.meta["metrics"]["ndcg@10"] == evals[-1]["ndcg@10"]
    assert exp.meta["hyperparameters"]["embedding_dim"] == 8
    saved = json.loads((md / "config.json").read_text())
    assert saved["embedding_dim"] == 8 and saved["sweeps"] == 3


def test_resume_ends_with_the_factors_of_an_uninterrupted_run(data_dir, tmp_path):
    full = train(data=str(data_dir), model_dir=str(tmp_path / "a"), sweeps=4, **KW)
    first = train(data=str(data_dir), model_dir=str(tmp_path / "b"), sweeps=2, **KW)
    assert first.steps == 4
    resumed = train(data=str(data_dir), model_dir=str(tmp_path / "b"), sweeps=4, **KW)
    assert resumed.resumed_from_step == 4 and resumed.steps == 8
    np.testing.assert_array_equal(resumed.model.user_factors_, full.model.user_factors_)
    np.testing.assert_array_equal(resumed.model.item_factors_, full.model.item_factors_)
    assert resumed.model.loss_ == full.model.loss_
    assert [r["step"] for r in _lines(tmp_path / "b")[1:]] == [2, 4, 6, 8]
    assert len(list_exports(tmp_path / "b" / "export")) == 2
    # nothing left to do: no new training, no duplicate export
    again = train(data=str(data_dir), model_dir=str(tmp_path / "b"), sweeps=4, **KW)
    assert again.export_path == resumed.export_path
    assert len(list_exports(tmp_path / "b" / "export")) == 2


def test_sigkill_at_a_random_point_then_resume(data_dir, tmp_path):
    md = tmp_path / "killed"
    args = [
        sys.executable,
        "-m",
        "walsrec",
        "train",
        "--data",
        str(data_dir),
        "--model-dir",
        str(md),
        "--sweeps",
        "40",
        "--embedding-dim",
        "24",
        "--threads",
        "1",
        "--seed",
        "5",
        "--eval-every",
        "10",
        "--quiet",
    ]
    rng = random.Random(os.getpid())
    for _attempt in range(3):
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while not any((md / "checkpoints").glob("step-*")) and time.time() < deadline:
            if proc.poll() is not None:
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.returncode == -signal.SIGKILL:
            break
        shutil.rmtree(md)  # it finished first: try again with a fresh MODEL_DIR
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    assert not list(md.glob("export/[0-9]*"))  # killed before the end
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    reference = subprocess.run(
        [*args[:7], str(tmp_path / "ref"), *args[8:]], capture_output=True, text=True
    )
    assert reference.returncode == 0, reference.stderr
    a, b = read_export(md), read_export(tmp_path / "ref")
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    assert [r["step"] for r in _lines(md)[1:]] == [20, 40, 60, 80]


def test_batches_of_rows_give_the_full_half_steps(data_dir, tmp_path):
    whole = train(data=str(data_dir), model_dir=str(tmp_path / "a"), sweeps=2, **KW)
    batched = train(
        data=str(data_dir), model_dir=str(tmp_path / "b"), sweeps=2, batch_size=97, **KW
    )
    # rows are independent given the other side: batches change the schedule, not the math
    np.testing.assert_allclose(
        batched.model.user_factors_, whole.model.user_factors_, rtol=1e-5, atol=1e-6
    )
    n_users, n_items = whole.model.user_factors_.shape[0], whole.model.item_factors_.shape[0]
    per_sweep = -(-n_users // 97) + -(-n_items // 97)
    assert batched.steps == 2 * per_sweep


def test_train_steps_and_eval_every_count_steps(data_dir, tmp_path):
    res = train(
        data=str(data_dir),
        model_dir=str(tmp_path / "m"),
        train_steps=7,
        batch_size=200,
        eval_every=3,
        **KW,
    )
    assert res.steps == 7
    assert [r["step"] for r in _lines(tmp_path / "m")[1:]] == [3, 6, 7]


def test_early_stopping_exports_the_best(data_dir, tmp_path):
    res = train(
        data=str(data_dir),
        model_dir=str(tmp_path / "m"),
        sweeps=40,
        early_stopping_metric="ndcg@10",
        patience=2,
        regularization=0.0001,
        embedding_dim=32,
        threads=1,
        seed=1,
    )
    evals = res.evaluations
    best = max(evals, key=lambda r: r["ndcg@10"])
    assert res.stopped_early and len(evals) < 40
    # the last `patience` (2) evaluations came after the best and did not beat it
    assert best["step"] < evals[-2]["step"]
    assert all(r["ndcg@10"] <= best["ndcg@10"] for r in evals[-2:])
    exp = read_export(res.export_path)
    assert exp.meta["metrics"]["step"] == best["step"]
    assert exp.meta["metrics"]["ndcg@10"] == best["ndcg@10"]
    assert exp.meta["training"]["stopped_early"] is True


def test_rmse_is_evaluated_only_for_a_model_that_fits_the_values(data_dir, tmp_path):
    # issue 17: binary predictions were scored against 1-5 ratings (rmse 3.37 on ML-100K)
    from walsrec.evaluation import evaluate_export

    kw = dict(data=str(data_dir), sweeps=1, regularization=0.1, **KW)
    values = train(model_dir=str(tmp_path / "v"), targets="values", **kw)
    binary = train(model_dir=str(tmp_path / "b"), targets="binary", **kw)
    assert np.isfinite(values.evaluations[-1]["rmse"])
    assert "rmse" not in binary.evaluations[-1] and "ndcg@10" in binary.evaluations[-1]
    assert "rmse" in read_export(values.export_path).meta["metrics"]
    assert "rmse" not in read_export(binary.export_path).meta["metrics"]
    # walsrec evaluate (and the pipeline's evaluate step) follow the same rule
    got = evaluate_export(values.export_path, data_dir, ease=False)
    assert got["targets"] == "values" and got["model"]["rmse"] == pytest.approx(
        values.evaluations[-1]["rmse"]
    )
    got = evaluate_export(binary.export_path, data_dir, ease=False)
    assert got["targets"] == "binary" and "rmse" not in got["model"]


def test_early_stopping_on_rmse_needs_a_model_that_fits_the_values(data_dir, tmp_path):
    kw = dict(data=str(data_dir), model_dir=str(tmp_path / "m"), early_stopping_metric="rmse")
    with pytest.raises(
        InvalidParameterError,
        match=r"The 'early_stopping_metric' setting of train cannot be 'rmse' with targets "
        r"'binary': rmse is computed only for models that fit the values",
    ):
        train(targets="binary", **kw, **KW)
    assert not (tmp_path / "m").exists()  # refused before anything was written


def test_logs_get_one_line_per_evaluation_and_no_progress_bar(data_dir, tmp_path, capsys):
    # issue 17: off a terminal (CI logs, files) tqdm wrote bar fragments and blank lines
    # between the evaluations' lines; capsys's stderr is not a terminal
    from walsrec.model.wals import WALS

    said = []
    md = tmp_path / "m"
    train(
        data=str(data_dir),
        model_dir=str(md),
        sweeps=2,
        show_progress=True,
        log=said.append,
        **KW,
    )
    WALS(embedding_dim=4, sweeps=2, show_progress=True).fit(read_export(md).user_items)
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    steps = [m for m in said if m.startswith("step ")]
    assert [m.split(" (")[0] for m in steps] == ["step 2", "step 4"]
    assert all("\n" not in m and "\r" not in m for m in said)


def test_messages_clear_a_terminal_bar_while_they_are_written():
    from contextlib import contextmanager

    from walsrec.training.loop import _said_above

    events = []

    class Bar:
        disable = False

        @contextmanager
        def external_write_mode(self, file=None):
            events.append("clear")
            yield
            events.append("redraw")

    _said_above(Bar(), events.append)("step 2")
    assert events == ["clear", "step 2", "redraw"]
    quiet = events.append
    assert _said_above(None, quiet) is quiet
    Bar.disable = True  # tqdm(disable=None) off a terminal
    assert _said_above(Bar(), quiet) is quiet


def test_without_matplotlib_train_says_once_that_it_draws_no_curve(data_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "walsrec.training.curve", None)  # import fails
    said = []
    train(data=str(data_dir), model_dir=str(tmp_path / "m"), sweeps=3, log=said.append, **KW)
    missing = [m for m in said if "training_curve.png" in m]
    assert missing == [
        "training_curve.png not drawn: matplotlib is not installed (pip install "
        "'walsrec[plot]'); the metrics are in metrics.jsonl"
    ]
    assert not (tmp_path / "m" / "training_curve.png").exists()


@pytest.mark.parametrize(("every_s", "drawn"), [(0.0, [1, 2, 3, 4]), (1e9, [1, 4])])
def test_the_curve_is_redrawn_at_most_every_few_seconds_and_at_the_end(
    data_dir, tmp_path, monkeypatch, every_s, drawn
):
    from walsrec.training import loop

    shown = []
    real = loop._redraw_curve

    def redraw(model_dir, records, k):
        shown.append(sum(1 for r in records if r.get("model") == "wals"))
        return real(model_dir, records, k)

    monkeypatch.setattr(loop, "_redraw_curve", redraw)
    monkeypatch.setattr(loop, "CURVE_REDRAW_S", every_s)
    train(data=str(data_dir), model_dir=str(tmp_path / "m"), sweeps=4, eval_every=1, **KW)
    assert shown == drawn  # evaluations the curve showed at each drawing: the last has all
    assert (tmp_path / "m" / "training_curve.png").stat().st_size > 10_000


def test_conflicting_settings_are_refused_and_overwrite_starts_over(data_dir, tmp_path):
    md = str(tmp_path / "m")
    train(data=str(data_dir), model_dir=md, sweeps=1, **KW)
    with pytest.raises(
        InvalidParameterError,
        match=r"holds a model trained with other settings "
        r"\(embedding_dim: 8 -> 16\)\. Use another --model-dir, or --overwrite",
    ):
        train(data=str(data_dir), model_dir=md, sweeps=1, embedding_dim=16, threads=1, seed=3)
    res = train(
        data=str(data_dir),
        model_dir=md,
        sweeps=1,
        embedding_dim=16,
        threads=1,
        seed=3,
        overwrite=True,
    )
    assert res.resumed_from_step is None
    assert res.model.user_factors_.shape[1] == 16
    assert len(list_exports(tmp_path / "m" / "export")) == 1


def test_tfrecord_inputs_match_data_dir_and_are_cached(data_dir, tmp_path, monkeypatch):
    base = train(data=str(data_dir), model_dir=str(tmp_path / "a"), sweeps=2, **KW)
    rec = dict(
        train_rows=str(data_dir / "train" / "items_for_user-*"),
        train_cols=str(data_dir / "train" / "users_for_item-*"),
        eval_rows=str(data_dir / "eval" / "items_for_user-*"),
        eval_cols=str(data_dir / "eval" / "users_for_item-*"),
    )
    res = train(model_dir=str(tmp_path / "b"), sweeps=2, **rec, **KW)
    np.testing.assert_array_equal(res.model.user_factors_, base.model.user_factors_)
    assert _lines(tmp_path / "b")[-1]["ndcg@10"] == _lines(tmp_path / "a")[-1]["ndcg@10"]
    assert read_export(res.export_path).users == read_export(base.export_path).users
    assert (tmp_path / "b" / "cache" / "key.json").is_file()

    def fail(*a, **k):
        raise AssertionError("records parsed again instead of read from the cache")

    monkeypatch.setattr("walsrec.data.tfrecord.read_tfrecords", fail)
    again = train(model_dir=str(tmp_path / "b"), sweeps=3, **rec, **KW)
    assert again.steps == 6


def _vocab_sizes(data_dir):
    return tuple(
        len((data_dir / "vocab" / f).read_text().split()) for f in ("users.txt", "items.txt")
    )


def test_swapped_rows_and_columns_records_are_an_error(data_dir, tmp_path):
    n_users, n_items = _vocab_sizes(data_dir)
    with pytest.raises(
        DataFormatError,
        match=r"users_for_item-00000-of-00001\.tfrecord: record "
        rf"\d+ \(0-based\): column index \d+ in 'indices' is >= "
        rf"vocab_size={n_items}\. Were the rows read with the wrong vocabulary",
    ):
        train(
            model_dir=str(tmp_path / "m"),
            sweeps=1,
            num_rows=n_users,
            num_cols=n_items,
            train_rows=str(data_dir / "train" / "users_for_item-*"),
            train_cols=str(data_dir / "train" / "items_for_user-*"),
            **KW,
        )


def test_rows_and_columns_of_different_data_are_an_error(data_dir, tmp_path):
    with pytest.raises(
        DataFormatError,
        match=r"do not hold the same matrix.*Are the "
        "items_for_user and users_for_item files swapped, or from different data",
    ):
        train(
            model_dir=str(tmp_path / "m"),
            sweeps=1,
            train_rows=str(data_dir / "train" / "items_for_user-*"),
            train_cols=str(data_dir / "eval" / "users_for_item-*"),
            **KW,
        )


def test_wrong_num_cols_is_the_course_quiz_error(data_dir, tmp_path):
    n_items = len((data_dir / "vocab" / "items.txt").read_text().split())
    with pytest.raises(DataFormatError, match=r"index .* vocab"):
        train(
            model_dir=str(tmp_path / "m"),
            sweeps=1,
            num_cols=n_items - 50,
            train_rows=str(data_dir / "train" / "items_for_user-*"),
            train_cols=str(data_dir / "train" / "users_for_item-*"),
            **KW,
        )


def test_column_weights_from_counts():
    import scipy.sparse as sp

    m = sp.csr_matrix(np.array([[1, 0, 1], [1, 0, 0], [1, 0, 0], [1, 0, 1.0]]))
    np.testing.assert_allclose(
        column_weights_from_counts(m, "linear", factor=130), [130 / 4, 0, 130 / 2]
    )
    np.testing.assert_allclose(
        column_weights_from_counts(m, "log", exponent=0.08), [0.25**0.08, 0, 0.5**0.08]
    )


def test_config_file_with_overrides(tmp_path):
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text('[train]\nembedding-dim = 48\nsolver = "cg"\nsweeps = 4\n')
    cfg = load_config(cfg_file, model_dir="m", data="d", sweeps=None, embedding_dim=12)
    assert (cfg.embedding_dim, cfg.solver, cfg.sweeps) == (12, "cg", 4)
    cfg_file.write_text("embedding_dims = 3\n")
    with pytest.raises(InvalidParameterError, match=r"c\.toml: unknown setting 'embedding_dims'"):
        load_config(cfg_file, model_dir="m", data="d")
    cfg_file.write_text("embedding_dim = \n")
    with pytest.raises(DataFormatError, match=r"c\.toml: not valid TOML"):
        load_config(cfg_file, model_dir="m", data="d")


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(embedding_dim=0), r"'embedding_dim' setting of train must be an int >= 1. Got 0"),
        (dict(solver="lu"), r"'solver' setting of train must be 'cholesky' or 'cg'. Got 'lu'"),
        (dict(sweeps=3, train_steps=5), r"'sweeps' and 'train_steps' of train exclude each other"),
        (
            dict(regularization=-1.0),
            r"'regularization' setting of train must be 'auto' or a finite "
            r"number >= 0. Got -1.0",
        ),
        (
            dict(early_stopping_metric="ndcg@5"),
            r"'early_stopping_metric' setting of train must "
            r"be one of precision@10, .*Got 'ndcg@5'",
        ),
        (
            dict(col_weights_from_counts="sqrt"),
            r"'col_weights_from_counts' setting of train "
            r"must be None, 'linear' or 'log'. Got 'sqrt'",
        ),
    ],
)
def test_invalid_settings(kw, match):
    with pytest.raises(InvalidParameterError, match=match):
        load_config(model_dir="m", data="d", **kw)


def test_missing_inputs():
    with pytest.raises(InvalidParameterError, match=r"train needs its input: 'data'"):
        load_config(model_dir="m")
    with pytest.raises(InvalidParameterError, match=r"needs both 'train_rows'"):
        load_config(model_dir="m", train_rows="x")
    with pytest.raises(InvalidParameterError, match=r"'model_dir' setting of train is required"):
        load_config(data="d")


def test_metrics_file_is_strict_json_with_null_for_nan(tmp_path):
    from walsrec.training.loop import _write_metrics

    _write_metrics(tmp_path / "m.jsonl", [{"model": "wals", "auc": float("nan"), "loss": 1.5}])
    text = (tmp_path / "m.jsonl").read_text()
    assert text == '{"model": "wals", "auc": null, "loss": 1.5}\n'
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_tfrecord_inputs_from_an_fsspec_url(data_dir, tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    for name in ("items_for_user", "users_for_item"):
        for path in (data_dir / "train").glob(f"{name}-*"):
            fs.pipe(f"/walsrec-train-url/{path.name}", path.read_bytes())
    res = train(
        model_dir=str(tmp_path / "m"),
        sweeps=1,
        train_rows="memory://walsrec-train-url/items_for_user-*",
        train_cols="memory://walsrec-train-url/users_for_item-*",
        **KW,
    )
    base = train(data=str(data_dir), model_dir=str(tmp_path / "d"), sweeps=1, **KW)
    np.testing.assert_array_equal(res.model.user_factors_, base.model.user_factors_)
    assert read_export(res.export_path).users.to_list()[:3] == ["0", "1", "2"]  # no vocab


def test_a_retrained_model_is_exported_even_with_the_same_step_count(data_dir, tmp_path):
    md = tmp_path / "m"
    first = train(data=str(data_dir), model_dir=str(md), sweeps=2, **KW)
    shutil.rmtree(md / "checkpoints")  # start over, keeping the exports
    (md / "config.json").unlink()
    second = train(
        data=str(data_dir), model_dir=str(md), sweeps=2, embedding_dim=8, threads=1, seed=4
    )
    assert second.export_path != first.export_path
    np.testing.assert_array_equal(
        read_export(second.export_path).user_factors, second.model.user_factors_
    )


def test_weighting_settings_train_export_and_fold_in_like_the_estimator(data_dir, tmp_path):
    """confidence/targets reach the solver (the factors of WALS.fit with the same settings),
    the export records them, serving folds in with them, and a resume may not change them."""
    import scipy.sparse as sp

    from walsrec.data.native import load_csr
    from walsrec.model.wals import WALS
    from walsrec.serving.model import load_model

    md = tmp_path / "m"
    weighting = dict(confidence="bm25", alpha=2.0, bm25_k1=1.2, bm25_b=0.75, targets="binary")
    res = train(data=str(data_dir), model_dir=str(md), sweeps=2, **weighting, **KW)
    ui = load_csr(data_dir / "train" / "native", "user_items", mmap=False)
    from walsrec.training.config import wals_params

    # train's other defaults (w0 "auto" resolved against the training matrix, λ as chosen)
    lam = res.model.regularization
    assert lam in AUTO_GRID
    ref = WALS(
        **wals_params({"embedding_dim": 8, "regularization": lam, **weighting}, ui),
        sweeps=2,
        n_jobs=1,
        random_state=3,
    ).fit(ui)
    np.testing.assert_allclose(res.model.user_factors_, ref.user_factors_, rtol=1e-5, atol=1e-6)
    hyper = read_export(md).meta["hyperparameters"]
    assert {k: hyper[k] for k in weighting} == weighting
    served = load_model(md)
    user = 5
    row = ui[user]
    pairs = [
        (served.items.id(int(j)), float(v)) for j, v in zip(row.indices, row.data, strict=True)
    ]
    factor, _ = served.fold_in(pairs)
    want = ref.project_rows(sp.csr_matrix(row))[0]
    np.testing.assert_allclose(factor, want, rtol=1e-3, atol=1e-4)
    with pytest.raises(
        InvalidParameterError, match=r"other settings \(confidence: 'bm25' -> 'log'\)"
    ):
        train(
            data=str(data_dir),
            model_dir=str(md),
            sweeps=3,
            **{**weighting, "confidence": "log"},
            **KW,
        )
    with pytest.raises(InvalidParameterError, match=r"'bm25_b' setting of train must be a float"):
        train(data=str(data_dir), model_dir=str(tmp_path / "x"), bm25_b=2.0, **KW)


def test_unobserved_weight_auto_scales_with_density_and_exports_the_number(data_dir, tmp_path):
    import scipy.sparse as sp

    from walsrec.data.native import load_csr
    from walsrec.training.config import AUTO_UNOBSERVED_MASS, resolve_unobserved_weight

    x = sp.csr_matrix(np.eye(4)[:, :2])  # 2 entries in 4 × 2
    assert resolve_unobserved_weight("auto", x) == pytest.approx(AUTO_UNOBSERVED_MASS * 2 / 8)
    assert resolve_unobserved_weight(0.3, x) == 0.3
    res = train(data=str(data_dir), model_dir=str(tmp_path / "m"), sweeps=1, **KW)
    ui = load_csr(data_dir / "train" / "native", "user_items", mmap=False)
    want = AUTO_UNOBSERVED_MASS * ui.nnz / (ui.shape[0] * ui.shape[1])
    assert res.model.unobserved_weight == pytest.approx(want)
    assert read_export(tmp_path / "m").meta["hyperparameters"]["unobserved_weight"] == (
        pytest.approx(want)
    )
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["unobserved_weight"] == "auto"
    with pytest.raises(
        InvalidParameterError,
        match=r"'unobserved_weight' setting of train must be 'auto' or a finite number >= 0. "
        r"Got 'automatic'",
    ):
        load_config(model_dir="m", data="d", unobserved_weight="automatic")


@pytest.mark.parametrize("confidence", ["linear", "log", "bm25", "tfidf"])
def test_alpha_auto_makes_the_mean_confidence_one_and_w0_follows_it(confidence):
    import scipy.sparse as sp

    from walsrec.model.weighting import mean_confidence
    from walsrec.training.config import AUTO_UNOBSERVED_MASS, wals_params

    x = sp.random(30, 20, density=0.2, format="csr", random_state=0)
    x.data = 0.5 + 40.0 * x.data  # units far from 1 (seconds, say)
    density = x.nnz / 600
    scheme = {"confidence": confidence, "epsilon": 2.0, "bm25_k1": 50.0, "bm25_b": 0.5}
    p = wals_params({**scheme, "regularization": 0.01}, x)
    assert mean_confidence(x, **scheme, alpha=p["alpha"]) == pytest.approx(1.0)
    if confidence == "linear":
        assert p["alpha"] == pytest.approx(1.0 / x.data.mean())
    assert p["unobserved_weight"] == pytest.approx(AUTO_UNOBSERVED_MASS * density)
    # a given α is kept, and w0 "auto" scales with the mean confidence it gives
    p = wals_params({**scheme, "alpha": 2.0, "unobserved_mass": 10.0, "regularization": 0.01}, x)
    mean = mean_confidence(x, **scheme, alpha=2.0)
    assert p["alpha"] == 2.0 and mean != pytest.approx(1.0)
    assert p["unobserved_weight"] == pytest.approx(10.0 * density * mean)
    # constant confidence: α unused (1), w0 = mass × density
    p = wals_params({"confidence": "constant", "regularization": 0.01}, x)
    assert p["alpha"] == 1.0
    assert p["unobserved_weight"] == pytest.approx(AUTO_UNOBSERVED_MASS * density)


def test_auto_settings_errors_name_the_setting_and_value(data_dir, tmp_path):
    import scipy.sparse as sp

    from walsrec.training.config import wals_params

    with pytest.raises(
        InvalidParameterError,
        match=r"'alpha' setting of train must be 'auto' or a finite number > 0. Got 'big'",
    ):
        load_config(model_dir="m", data="d", alpha="big")
    with pytest.raises(
        InvalidParameterError,
        match=r"'unobserved_mass' setting of train must be a finite number > 0. Got 0",
    ):
        train(data=str(data_dir), model_dir=str(tmp_path / "x"), unobserved_mass=0, **KW)
    with pytest.raises(
        InvalidParameterError,
        match=r"alpha = auto and unobserved_weight = auto needs the training matrix",
    ):
        wals_params({"regularization": 0.01})
    with pytest.raises(
        InvalidParameterError, match=r"regularization = auto is chosen by validation: resolve"
    ):
        wals_params({}, sp.csr_matrix(np.ones((2, 2))))


def test_train_exports_the_resolved_alpha_and_mass_changes_w0(data_dir, tmp_path):
    from walsrec.data.native import load_csr
    from walsrec.model.weighting import mean_confidence

    res = train(data=str(data_dir), model_dir=str(tmp_path / "m"), sweeps=1, **KW)
    ui = load_csr(data_dir / "train" / "native", "user_items", mmap=False)
    hyper = read_export(tmp_path / "m").meta["hyperparameters"]
    assert hyper["confidence"] == "bm25" and hyper["alpha"] == pytest.approx(res.model.alpha)
    assert mean_confidence(ui, confidence="bm25", alpha=hyper["alpha"]) == pytest.approx(1.0)
    more = train(
        data=str(data_dir), model_dir=str(tmp_path / "n"), sweeps=1, unobserved_mass=60.0, **KW
    )
    assert more.model.unobserved_weight == pytest.approx(2 * res.model.unobserved_weight)


def test_resuming_a_configuration_saved_before_weighting_keeps_its_targets():
    from walsrec.training.config import TrainConfig

    # config.json of a run trained before confidence/targets existed (values as targets)
    old = {"embedding_dim": 32, "unobserved_weight": 0.1, "regularization": 0.1}
    cfg = TrainConfig(model_dir="m", data="d", embedding_dim=32, unobserved_weight=0.1)
    cfg.regularization = 0.1
    assert "targets: 'values' -> 'binary'" in cfg.conflicts_with(old)
    assert "confidence: 'constant' -> 'bm25'" in cfg.conflicts_with(old)
    cfg.targets, cfg.confidence = "values", "constant"
    # alpha acts only with a non-constant confidence, unobserved_mass only with w0 "auto"
    assert cfg.conflicts_with(old) == []
    # a config saved before unobserved_mass existed, with w0 "auto", meant 20
    cfg = TrainConfig(model_dir="m", data="d")
    saved = {**cfg.to_dict()}
    del saved["unobserved_mass"]
    assert cfg.conflicts_with(saved) == ["unobserved_mass: 20.0 -> 30.0"]


def test_the_readme_recipe_for_tf_contribs_model_is_the_estimators_defaults(data_dir, tmp_path):
    """README's migration table: these train settings fit exactly tf.contrib's model, which
    is what the WALS estimator does by default (bar λ, whose None is 0)."""
    from walsrec.data.native import load_csr
    from walsrec.model.wals import WALS

    recipe = dict(
        unobserved_weight=0.1,
        regularization=0.0,
        regularization_exponent=0.0,
        targets="values",
        confidence="constant",
    )
    res = train(data=str(data_dir), model_dir=str(tmp_path / "m"), sweeps=2, **recipe, **KW)
    ui = load_csr(data_dir / "train" / "native", "user_items", mmap=False)
    want = WALS(embedding_dim=8, regularization=0.0, sweeps=2, random_state=3, n_jobs=1)
    want.fit(ui)
    np.testing.assert_allclose(res.model.user_factors_, want.user_factors_, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(res.model.item_factors_, want.item_factors_, rtol=1e-4, atol=1e-6)


def test_regularization_auto_is_chosen_once_recorded_exported_and_kept_on_resume(
    data_dir, tmp_path, monkeypatch
):
    import walsrec.training.regularization as regularization

    md = tmp_path / "m"
    said = []
    res = train(data=str(data_dir), model_dir=str(md), sweeps=1, log=said.append, **KW)
    record = json.loads((md / "regularization.json").read_text())
    lam = res.model.regularization
    assert record["regularization"] == lam and lam in AUTO_GRID
    assert record["folds"] >= 1 and record["validated_users"] > 0
    tried = [x for x, _ in record["scores"]]
    assert tried[0] == 0.015 and set(tried) <= set(AUTO_GRID)
    best = max((pair for pair in record["scores"] if pair[1] is not None), key=lambda p: p[1])
    assert best[0] == lam
    assert any(m.startswith(f"regularization auto: {lam:g}, the best ndcg@10") for m in said)
    assert read_export(md).meta["hyperparameters"]["regularization"] == lam
    assert json.loads((md / "config.json").read_text())["regularization"] == "auto"

    # a resume keeps the recorded λ without searching again
    def refuse(*args, **kwargs):
        raise AssertionError("searched again")

    monkeypatch.setattr(regularization, "choose_regularization", refuse)
    said.clear()
    again = train(data=str(data_dir), model_dir=str(md), sweeps=2, log=said.append, **KW)
    assert again.resumed_from_step is not None and again.model.regularization == lam
    assert f"regularization auto: {lam:g}, as chosen before (regularization.json)" in said
    # a number instead of auto is another model
    with pytest.raises(
        InvalidParameterError, match=r"other settings \(regularization: 'auto' -> 0.02\)"
    ):
        train(data=str(data_dir), model_dir=str(md), sweeps=2, regularization=0.02, **KW)
    # a damaged record is named, not silently replaced
    (md / "regularization.json").write_text("{")
    with pytest.raises(DataFormatError, match=r"regularization.json: not a record of the chosen"):
        train(data=str(data_dir), model_dir=str(md), sweeps=3, **KW)
    # --overwrite starts over: the record goes with the rest
    monkeypatch.undo()
    train(data=str(data_dir), model_dir=str(md), sweeps=1, overwrite=True, **KW)
    assert json.loads((md / "regularization.json").read_text())["regularization"] == lam
    # (a fresh search rewrites it anyway: a fixed λ shows that none is left behind)
    train(
        data=str(data_dir), model_dir=str(md), sweeps=1, overwrite=True, regularization=0.02, **KW
    )
    assert not (md / "regularization.json").exists()


def test_a_fixed_regularization_runs_no_search(data_dir, tmp_path, monkeypatch):
    import walsrec.training.regularization as regularization

    def refuse(*args, **kwargs):
        raise AssertionError("searched")

    monkeypatch.setattr(regularization, "choose_regularization", refuse)
    md = tmp_path / "m"
    res = train(data=str(data_dir), model_dir=str(md), sweeps=1, regularization=0.02, **KW)
    assert res.model.regularization == 0.02 and not (md / "regularization.json").exists()


def test_the_search_scores_at_trains_default_length_whatever_the_runs(
    data_dir, tmp_path, monkeypatch
):
    """λ must not depend on the run's length: a resumed run may add sweeps."""
    import walsrec.training.regularization as regularization
    from walsrec.training.config import TrainConfig

    seen = {}

    def record(user_items, settings, **kwargs):
        seen.update(kwargs)
        return regularization.RegularizationChoice(0.02, {0.02: 0.5}, "ndcg@10", 1, 10, 1, 0.1)

    monkeypatch.setattr(regularization, "choose_regularization", record)
    res = train(data=str(data_dir), model_dir=str(tmp_path / "m"), sweeps=3, **KW)
    assert seen["sweeps"] == TrainConfig.DEFAULT_SWEEPS != 3
    assert (seen["seed"], seen["k"], seen["n_jobs"]) == (3, 10, 1)
    assert res.model.regularization == 0.02


def test_without_users_to_validate_train_says_it_fell_back(tmp_path):
    from walsrec.data.prepare import prepare
    from walsrec.training.regularization import FALLBACK_REGULARIZATION

    csv = tmp_path / "one_each.csv"
    csv.write_text("user,item\n" + "".join(f"u{u},i{u % 7}\n" for u in range(30)))
    prepare(str(csv), tmp_path / "data", eval_fraction=0.0)
    said = []
    res = train(
        data=str(tmp_path / "data"),
        model_dir=str(tmp_path / "m"),
        sweeps=1,
        log=said.append,
        embedding_dim=2,
        threads=1,
    )
    assert res.model.regularization == FALLBACK_REGULARIZATION
    assert any("the fallback: no validation split held out any entry" in m for m in said)


@pytest.mark.parametrize("value", ["-1", "NaN", "true", '"0.01"'])
def test_a_recorded_regularization_that_is_not_a_number_is_named(data_dir, tmp_path, value):
    md = tmp_path / "m"
    train(data=str(data_dir), model_dir=str(md), sweeps=1, **KW)
    (md / "regularization.json").write_text('{"regularization": ' + value + "}")
    with pytest.raises(
        DataFormatError, match=r"regularization.json: 'regularization' must be a finite number"
    ):
        train(data=str(data_dir), model_dir=str(md), sweeps=2, **KW)


def test_the_training_curve_labels_both_axes_and_has_a_readable_legend(tmp_path, monkeypatch):
    from walsrec.training import curve

    figures = []
    monkeypatch.setattr(curve.plt, "close", figures.append)  # keep the figure to inspect
    records = [
        {"model": "most-popular", "ndcg@10": 0.1, "precision@10": 0.05},
        {"model": "wals", "sweep": 1, "loss": 2.0, "ndcg@10": 0.2, "precision@10": 0.1},
        {"model": "wals", "sweep": 2, "loss": 1.5, "ndcg@10": 0.25, "precision@10": 0.12},
    ]
    curve.plot_training_curve(records, tmp_path / "c.png", k=10)
    (fig,) = figures
    monkeypatch.undo()
    curve.plt.close(fig)
    loss, ranking = fig.axes
    for ax in (loss, ranking):
        assert ax.get_xlabel().startswith("sweep") and ax.get_ylabel()
    assert ranking.get_ylabel() == "held-out metric at k = 10 (higher is better)"
    legend = ranking.get_legend()
    assert min(t.get_fontsize() for t in legend.get_texts()) >= 9
