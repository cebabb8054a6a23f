from __future__ import annotations

import json
import os
import re

import pytest

from walsrec.cli import main
from walsrec.errors import DataFormatError, InvalidParameterError
from walsrec.pipeline import load_pipeline_config, run_pipeline

CONFIG = """\
[prepare]
inputs = ["visits.csv"]
out = "data"
user_col = "visitor_id"
item_col = "article_id"
rating_col = "session_duration"
rating_transform = "scaled-median"
eval_fraction = 0.2
split = "user"

[train]
model_dir = "model"
embedding_dim = {dim}
sweeps = 2

[evaluate]
k = 5

[export]
to = "serving"

[predict]
out = "predictions.csv"
k = {k}
"""


@pytest.fixture
def project(tmp_path):
    import pyarrow.csv as pcsv

    from walsrec.datasets import generate_visits

    pcsv.write_csv(generate_visits(3000, seed=1), tmp_path / "visits.csv")
    write_config(tmp_path)
    return tmp_path


def write_config(root, dim=4, k=3, extra=""):
    (root / "pipeline.toml").write_text(CONFIG.format(dim=dim, k=k) + extra)
    return root / "pipeline.toml"


def run(root, **kw):
    return run_pipeline(root / "pipeline.toml", **kw)


def test_second_run_skips_everything_and_changes_rerun_only_what_they_affect(project):
    first = run(project)
    assert first.ran() == ["prepare", "train", "evaluate", "export", "predict"]
    export = first.export_path
    assert (project / "serving" / "export" / export.name / "model.json").is_file()
    assert (project / "predictions.csv").is_file()
    assert first.evaluation["model"]["ndcg@5"] >= 0
    state = json.loads((project / "pipeline.state.json").read_text())
    assert set(state) >= {"prepare", "train", "evaluate", "export", "predict"}

    second = run(project)
    assert second.ran() == [] and len(second.skipped()) == 5
    assert second.export_path == export

    write_config(project, k=7)  # a predict setting: only predict reruns
    assert run(project).ran() == ["predict"]
    header, row = (project / "predictions.csv").read_text().splitlines()[:2]
    assert header and row

    write_config(project, dim=6, k=7)  # a model setting: everything after prepare
    third = run(project)
    assert third.ran() == ["train", "evaluate", "export", "predict"]
    assert third.export_path != export and export.is_dir()  # the old export stays served
    assert int(third.export_path.name) > int(export.name)  # newer: a watcher swaps it in

    (project / "predictions.csv").unlink()  # a missing output reruns its step
    assert run(project).ran() == ["predict"]

    with open(project / "visits.csv", "a") as f:  # new data: the whole pipeline
        f.write("v_new,a_new,30.0,1767225600\n")
    os.utime(project / "visits.csv", ns=(1, 1))
    assert run(project).ran() == ["prepare", "train", "evaluate", "export", "predict"]


def test_force_dry_run_and_only(project):
    assert run(project, dry_run=True).steps[0].status == "would run"
    assert not (project / "data").exists() and not (project / "pipeline.state.json").exists()
    with pytest.raises(InvalidParameterError, match=r"The prepare step of .* has not run yet"):
        run(project, only=["train"])
    run(project)
    assert run(project, force=["evaluate"]).ran() == ["evaluate"]
    assert run(project, only=["predict"], force=["predict"]).ran() == ["predict"]
    statuses = {s.name: s.status for s in run(project, dry_run=True, force=["all"]).steps}
    assert set(statuses.values()) == {"would run", "off"}
    assert [name for name, status in statuses.items() if status == "off"] == ["update"]
    with pytest.raises(InvalidParameterError, match=r"'force' parameter .* Got 'deploy'"):
        run(project, force=["deploy"])


def test_export_gate_refuses_a_worse_model(project):
    path = write_config(project, extra="")
    text = path.read_text().replace(
        'to = "serving"', 'to = "serving"\nmin_metrics = { "ndcg@5" = 2.0 }'
    )
    path.write_text(text)
    with pytest.raises(InvalidParameterError, match=r"ndcg@5 is 0\.\d{4}, below the minimum 2\.0"):
        run(project)
    assert not (project / "serving").exists()
    state = json.loads((project / "pipeline.state.json").read_text())
    assert "evaluate" in state and "export" not in state  # the failed step reruns next time


def test_export_gate_on_rmse_names_the_binary_targets(project):
    # train's default binary targets: rmse is not computed, and the gate says why
    path = write_config(project)
    path.write_text(
        path.read_text().replace('to = "serving"', 'to = "serving"\nmin_metrics = { rmse = 0 }')
    )
    with pytest.raises(
        InvalidParameterError,
        match=r"min_metrics names 'rmse', which is not computed for a model fitted to "
        r"binary targets",
    ):
        run(project)
    evaluation = json.loads((project / "model" / "evaluation.json").read_text())
    assert evaluation["targets"] == "binary" and "rmse" not in evaluation["model"]
    assert not (project / "serving").exists()


@pytest.mark.parametrize(
    "text,error,message",
    [
        (
            "[train]\nmodel_dir='m'\ndata='d'\n[deploy]\n",
            InvalidParameterError,
            r"unknown table \[deploy\]",
        ),
        (
            "[train]\nmodel_dir='m'\ndata='d'\nembeding_dim=3\n",
            InvalidParameterError,
            r"the setting 'embeding_dim' of \[train\] is not known",
        ),
        ("[train]\ndata='d'\n", InvalidParameterError, r"\[train\] needs model_dir"),
        (
            "[prepare]\nout='d'\n[train]\nmodel_dir='m'\n",
            InvalidParameterError,
            r"\[prepare\] needs inputs",
        ),
        ("[train\n", DataFormatError, r"not valid TOML"),
    ],
)
def test_bad_configurations(tmp_path, text, error, message):
    (tmp_path / "p.toml").write_text(text)
    with pytest.raises(error, match=message):
        load_pipeline_config(tmp_path / "p.toml")


def test_paths_are_relative_to_the_file(project):
    cfg = load_pipeline_config(project / "pipeline.toml")
    assert cfg["prepare"]["inputs"] == [str(project / "visits.csv")]
    assert cfg["train"]["data"] == str(project / "data")


def test_cli_pipeline(project, capsys):
    code = main(["pipeline", "--config", str(project / "pipeline.toml"), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "5 step(s) ran, 0 unchanged and skipped" in out and "ndcg@5" in out
    # the hybrid train chose on validation, scored with its WALS part and EASE's weights
    assert any(
        line.split() == ["metric", "hybrid", "WALS", "most-popular", "EASE"]
        for line in out.splitlines()
    )
    code = main(["pipeline", "--config", str(project / "pipeline.toml"), "--quiet"])
    out, _ = capsys.readouterr()
    assert "0 step(s) ran, 5 unchanged and skipped" in out
    code = main(["pipeline", "--config", str(project / "missing.toml")])
    _, err = capsys.readouterr()
    assert code == 2 and err.strip().endswith("the pipeline configuration file does not exist.")


def test_a_retrained_model_gets_a_newer_version_even_within_the_same_second(project, monkeypatch):
    import time

    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)  # a frozen clock
    first = run(project).export_path
    write_config(project, dim=5)
    second = run(project).export_path
    assert first.name == "2000000000" and second.name == "2000000001"
    assert first.is_dir() and not (project / "model" / ".export-kept").exists()
    import walsrec

    assert walsrec.load_model(project / "model").path == second
    assert walsrec.load_model(second).embedding_dim == 5


@pytest.mark.parametrize("watched", ["model", "serving"])
def test_a_watching_service_picks_up_the_retrained_model(project, watched):
    from walsrec.serving.app import ModelWatcher

    first = run(project).export_path
    watcher = ModelWatcher(str(project / watched), poll_interval=0)
    watcher.load_initial()
    assert watcher.current.version == int(first.name)
    assert watcher.check_once() is False  # nothing new
    write_config(project, dim=5)
    second = run(project).export_path
    assert watcher.check_once() is True
    assert watcher.current.version == int(second.name) and watcher.current.embedding_dim == 5


def test_state_file_where_the_configuration_says(project):
    path = project / "pipeline.toml"
    path.write_text('state = "out/state.json"\n' + path.read_text())
    assert run(project, dry_run=True).state_path == project / "out" / "state.json"
    assert not (project / "out").exists()  # a dry run writes nothing
    run(project)
    assert (project / "out" / "state.json").is_file()
    assert not (project / "pipeline.state.json").exists()
    assert run(project).ran() == []
    path.write_text("state = 3\n" + CONFIG.format(dim=4, k=3))
    with pytest.raises(InvalidParameterError, match=r"state must be a path \(a string\)\. Got 3"):
        run(project)


def test_retraining_keeps_keep_exports_exports(project):
    path = project / "pipeline.toml"
    for dim in (2, 3, 4):
        path.write_text(
            CONFIG.format(dim=dim, k=3).replace("sweeps = 2", "sweeps = 2\nkeep_exports = 2")
        )
        newest = run(project, only=None).export_path
    names = sorted(p.name for p in (project / "model" / "export").iterdir())
    assert len(names) == 2 and names[-1] == newest.name


def test_evaluate_scores_ease_unless_the_table_says_no(project):
    assert "ease" in run(project).evaluation  # 4,000-odd items: EASE is affordable
    text = (project / "pipeline.toml").read_text()
    (project / "pipeline.toml").write_text(text.replace("k = 5\n", "k = 5\nease = false\n", 1))
    again = run(project)
    assert again.ran() == ["evaluate"] and "ease" not in again.evaluation


def test_a_fresh_training_run_clears_the_previous_runs_state_but_not_its_exports(project):
    run(project)
    model = project / "model"
    assert (model / "regularization.json").exists()  # train's default λ "auto" chose one
    exports = sorted(p.name for p in (model / "export").iterdir())
    text = (project / "pipeline.toml").read_text()
    fixed = text.replace("sweeps = 2\n", "sweeps = 2\nregularization = 0.02\n", 1)
    (project / "pipeline.toml").write_text(fixed)
    assert "train" in run(project).ran()
    # a fixed λ: the former run's record of its choice is gone with its checkpoints
    assert not (model / "regularization.json").exists()
    assert set(exports) < {p.name for p in (model / "export").iterdir()}


def _with(project, old, new, text=None):
    path = project / "pipeline.toml"
    text = text or CONFIG.format(dim=4, k=3)
    assert old in text
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(
    ("out", "extra", "what"),
    [
        ("visits.csv", "", "visits.csv"),  # the [prepare] input
        ("pipeline.toml", "", "pipeline.toml"),  # the configuration itself
        ("pipeline.state.json", "", "pipeline.state.json"),
        ("data/meta.json", "", "data"),  # inside the DATA_DIR
        ("data", "", "data"),
        ("model/export/top.csv", "", "model"),  # train's MODEL_DIR
        ("model/config.json", "", "model"),
        ("serving/export/top.csv", "", "serving/export"),  # the deployed exports
        ("ids.txt", 'users_file = "ids.txt"\n', "ids.txt"),
    ],
)
def test_predict_out_may_not_overwrite_what_the_pipeline_reads(project, out, extra, what):
    # Regression: [predict] out was never checked: "in/r.csv" overwrote the ratings, "p.toml"
    # the configuration, "data/meta.json" corrupted the DATA_DIR
    (project / "ids.txt").write_text("1\n")
    path = _with(project, 'out = "predictions.csv"\n', f'out = "{out}"\n{extra}')
    message = (
        rf"{re.escape(str(path))}: The '\[predict\] out' file {re.escape(repr(str(project / out)))}"
        rf" is or lies inside the input {re.escape(repr(str(project / what)))}; writing it would"
    )
    with pytest.raises(InvalidParameterError, match=message):
        load_pipeline_config(path)


def test_a_refused_predict_out_stops_the_pipeline_before_any_step(project):
    visits = (project / "visits.csv").read_bytes()
    _with(project, 'out = "predictions.csv"', 'out = "visits.csv"')
    with pytest.raises(InvalidParameterError, match=r"The '\[predict\] out' file .*visits\.csv"):
        run(project)
    assert (project / "visits.csv").read_bytes() == visits
    assert sorted(p.name for p in project.iterdir()) == ["pipeline.toml", "visits.csv"]


def test_predict_out_may_not_match_an_input_glob(project):
    (project / "in").mkdir()
    (project / "visits.csv").rename(project / "in" / "r.csv")
    text = CONFIG.format(dim=4, k=3).replace('["visits.csv"]', '["in/*.csv"]')
    path = _with(project, 'out = "predictions.csv"', 'out = "in/r.csv"', text)
    with pytest.raises(InvalidParameterError, match=r"The '\[predict\] out' file .*in/r\.csv' is"):
        load_pipeline_config(path)
    path = _with(project, 'out = "predictions.csv"', 'out = "in/top.csv"', text)
    with pytest.raises(InvalidParameterError, match=r"out '.*/in/top\.csv' matches the input"):
        load_pipeline_config(path)
    _with(project, 'out = "predictions.csv"', 'out = "in/top.txt"', text)
    load_pipeline_config(path)  # a name the pattern does not match


@pytest.mark.parametrize(
    ("to", "message"),
    [
        ("data", r"\[export\] to '.*/data' would deploy exports into '.*/data/export', which "),
        ("visits.csv", r"\[export\] to '.*/visits\.csv' would deploy exports into .*the input"),
        ("model/serving", r"\[export\] to '.*/model/serving' lies inside the MODEL_DIR '.*/model'"),
        ("model/checkpoints", r"\[export\] to '.*/model/checkpoints' lies inside the MODEL_DIR"),
    ],
)
def test_export_to_may_not_deploy_into_the_inputs(project, to, message):
    # Regression: [export] to = the DATA_DIR deployed into data/export, which the next prepare
    # (replacing the DATA_DIR whole) deleted under a running service
    path = _with(project, 'to = "serving"', f'to = "{to}"')
    with pytest.raises(InvalidParameterError, match=message):
        load_pipeline_config(path)


@pytest.mark.parametrize("to", ["model", ".", "serving"])
def test_export_to_may_be_the_model_dir_or_a_folder_holding_the_inputs(project, to):
    load_pipeline_config(_with(project, 'to = "serving"', f'to = "{to}"'))


def test_the_plan_builds_the_steps_in_order_and_a_step_is_current_only_with_its_outputs(
    tmp_path,
):
    from walsrec.pipeline import _PLAN, STEPS, Step

    assert [plan.__name__.lstrip("_") for plan in _PLAN] == list(STEPS)

    def nothing():
        return None, ""

    file, folder = tmp_path / "out.csv", tmp_path / "export"
    assert not Step("predict", "f", None, nothing).outputs_exist()
    assert not Step("predict", "f", file, nothing).outputs_exist()
    file.write_text("")
    folder.mkdir()
    assert Step("predict", "f", file, nothing).outputs_exist()
    assert Step("train", "f", folder, nothing, directory=True).outputs_exist()
    # the wrong kind is not the step's output
    assert not Step("predict", "f", folder, nothing).outputs_exist()
    assert not Step("train", "f", file, nothing, directory=True).outputs_exist()


def test_a_dry_run_reports_each_step_once_in_order_with_the_tables_off(project):
    path = project / "pipeline.toml"
    path.write_text(path.read_text().split("[evaluate]")[0])  # prepare and train only
    steps = run(project, dry_run=True).steps
    assert [(s.name, s.status) for s in steps] == [
        ("prepare", "would run"),
        ("train", "would run"),
        ("update", "off"),
        ("evaluate", "off"),
        ("export", "off"),
        ("predict", "off"),
    ]
