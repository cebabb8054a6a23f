"""``walsrec pipeline``'s ``[update]`` step: daily increments, a full retrain every N."""

from __future__ import annotations

import json

import pyarrow.csv as pcsv
import pytest

from walsrec.data.prepare import load_prepared
from walsrec.datasets import generate_visits
from walsrec.errors import InvalidParameterError
from walsrec.pipeline import load_pipeline_config, run_pipeline
from walsrec.serving.export import list_exports, read_export

CONFIG = """\
[prepare]
inputs = ["base.csv"]
out = "data"
user_col = "visitor_id"
item_col = "article_id"
rating_col = "session_duration"
rating_transform = "scaled-median"
eval_fraction = 0.2
split = "user"

[train]
model_dir = "model"
embedding_dim = 4
sweeps = 2
regularization = 0.05

[update]
inputs = ["incoming/day-*.csv"]
full_every = 3

[evaluate]
k = 5

[export]
to = "serving"
"""


@pytest.fixture
def project(tmp_path):
    t = generate_visits(6000, seed=3).sort_by("timestamp")
    pcsv.write_csv(t.slice(0, 4000), tmp_path / "base.csv")
    (tmp_path / "incoming").mkdir()
    days = [t.slice(4000 + 500 * d, 500) for d in range(4)]
    (tmp_path / "pipeline.toml").write_text(CONFIG)
    return tmp_path, days


def _day(root, days, d, extra_user=None):
    pcsv.write_csv(days[d], root / "incoming" / f"day-{d}.csv")
    if extra_user:  # a visitor never seen before
        with open(root / "incoming" / f"day-{d}.csv", "a") as f:
            f.write(f"{extra_user},a001,40.0,1790000000\n")


def _status(result) -> dict:
    return {s.name: s.status for s in result.steps}


def test_days_are_taken_in_once_each_and_every_third_is_a_full_retrain(project):
    root, days = project
    first = run_pipeline(root / "pipeline.toml")
    assert _status(first)["update"] == "ran"  # nothing incoming yet: it says so
    assert "no new increments" in next(s.detail for s in first.steps if s.name == "update")
    base_export = first.export_path

    _day(root, days, 0, extra_user="zz-new-visitor")
    second = run_pipeline(root / "pipeline.toml")
    status = _status(second)
    assert status["prepare"] == status["train"] == "skipped"
    assert status["update"] == status["evaluate"] == status["export"] == "ran"
    detail = next(s.detail for s in second.steps if s.name == "update")
    assert detail.startswith("updated with 1 file(s)") and "new users" in detail
    assert second.export_path != base_export
    # the deployed export knows the new visitor, and the evaluation is of the update
    deployed = list_exports(root / "serving" / "export")[-1]
    assert read_export(deployed).users.to_list()[-1] == "zz-new-visitor"
    scores = json.loads((root / "model" / "evaluation.json").read_text())
    assert scores["export"].endswith(second.export_path.name)

    again = run_pipeline(root / "pipeline.toml")  # nothing new: everything skipped
    assert set(_status(again).values()) <= {"skipped", "off"}

    _day(root, days, 1)
    third = run_pipeline(root / "pipeline.toml")
    assert next(s.detail for s in third.steps if s.name == "update").startswith("updated")
    _day(root, days, 2)
    fourth = run_pipeline(root / "pipeline.toml")
    detail = next(s.detail for s in fourth.steps if s.name == "update")
    assert detail.startswith("full retrain with 1 file(s)")  # the third update
    state = json.loads((root / "pipeline.state.json").read_text())["update"]["output"]
    assert state["since_full"] == 0 and state["version"] == 3
    assert len(state["applied"]) == 3
    # the full retrain trained on all the data so far: base and three days
    latest = load_prepared(state["data"])
    config = json.loads((root / "model" / "config.json").read_text())
    assert config["data"] == state["data"]
    assert latest.meta["lineage"][-1]["parent"].endswith("data-00002")
    assert [p.name for p in sorted((root / "data-updates").glob("data-*"))] == [
        "data-00002",
        "data-00003",
    ]  # the newest two kept
    _day(root, days, 3)
    fifth = run_pipeline(root / "pipeline.toml")
    assert next(s.detail for s in fifth.steps if s.name == "update").startswith("updated")


def test_a_new_training_starts_the_chain_again(project):
    root, days = project
    _day(root, days, 0)
    _day(root, days, 1)
    run_pipeline(root / "pipeline.toml")
    (root / "pipeline.toml").write_text(CONFIG.replace("sweeps = 2", "sweeps = 3"))
    result = run_pipeline(root / "pipeline.toml")
    assert _status(result)["train"] == "ran" and _status(result)["update"] == "ran"
    detail = next(s.detail for s in result.steps if s.name == "update")
    assert detail.startswith("updated with 2 file(s)")  # both days again, on the new base


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ('inputs = ["incoming/day-*.csv"]\n', "[update] needs inputs"),
        ("full_every = 3", "[update] full_every must be an int >= 1. Got 0 instead."),
        ("full_every = 3", '[update] out "model/x"'),
    ],
)
def test_bad_update_tables(project, edit, message):
    root, _ = project
    replacement = {
        "[update] needs inputs": "",
        "[update] full_every must be an int >= 1. Got 0 instead.": "full_every = 0",
        '[update] out "model/x"': 'full_every = 3\nout = "model/x"',
    }[message]
    (root / "pipeline.toml").write_text(CONFIG.replace(edit, replacement))
    expected = "is, lies inside or contains" if message.startswith("[update] out") else message
    with pytest.raises(InvalidParameterError, match=expected.replace("[", r"\[")):
        load_pipeline_config(root / "pipeline.toml")


def test_the_example_configuration_loads():
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "daily_update.toml"
    config = load_pipeline_config(example)
    assert config["update"]["full_every"] == 7
    assert config["update"]["out"] == str(example.parent / "data-updates")


def test_a_file_taken_in_and_changed_since_is_refused_and_urls_are_read(project):
    root, days = project
    text = (root / "pipeline.toml").read_text()
    url = f"file://{root}/incoming/day-*.csv"
    (root / "pipeline.toml").write_text(text.replace('"incoming/day-*.csv"', f'"{url}"'))
    _day(root, days, 0)
    result = run_pipeline(root / "pipeline.toml")
    assert next(s.detail for s in result.steps if s.name == "update").startswith("updated")
    with open(root / "incoming" / "day-0.csv", "a") as f:  # grown after it was taken in
        f.write("v001,a001,10.0,1790000001\n")
    with pytest.raises(InvalidParameterError, match=r"\[update\] took in .*day-0\.csv.* changed"):
        run_pipeline(root / "pipeline.toml")
