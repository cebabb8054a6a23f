"""walsrec.tuning: the validation split, the search space, studies, resuming, outputs."""

from __future__ import annotations

import json
import tomllib
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from walsrec.data.prepare import load_prepared
from walsrec.errors import DataFormatError, InvalidParameterError
from walsrec.tuning import (
    COURSE_SPACE,
    DEFAULT_SPACE,
    SearchSpace,
    load_space,
    metric_direction,
    tune,
    validation_split,
)
from walsrec.tuning.space import TUNABLE, Param

# A small space: every trial is quick (embedding_dim <= 16) and still varies.
SMALL = """
[space]
embedding_dim = { low = 4, high = 16, log = true }
[space.regularization]
low = 0.01
high = 10.0
log = true
"""


@pytest.fixture
def small_space(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text(SMALL)
    return path


# ---------------------------------------------------------------------------- split
def test_validation_split_partitions_each_users_training_row():
    rng = np.random.default_rng(0)
    x = sp.random(300, 80, density=0.08, format="csr", random_state=1, dtype=np.float32)
    x.data[:] = rng.random(x.nnz) + 0.5
    fit, val = validation_split(x, 0.25, seed=3)
    # disjoint, and together exactly the training matrix
    assert (fit.multiply(val)).nnz == 0
    assert abs(fit + val - x).max() == 0
    assert fit.shape == val.shape == x.shape
    counts = np.diff(x.indptr)
    n_val = np.diff(val.indptr)
    # about a quarter of each user, never all of a user's interactions
    assert np.all(n_val <= np.maximum(counts - 1, 0))
    assert np.all(np.abs(n_val - 0.25 * counts) < 1 + 1e-9)
    assert abs(val.nnz / x.nnz - 0.25) < 0.03
    # the same seed gives the same split, another seed another one
    again, _ = validation_split(x, 0.25, seed=3)
    assert (again != fit).nnz == 0
    other, _ = validation_split(x, 0.25, seed=4)
    assert (other != fit).nnz > 0


@settings(deadline=None, max_examples=40)
@given(
    shape=st.tuples(st.integers(1, 30), st.integers(1, 30)),
    density=st.floats(0.0, 1.0),
    fraction=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**32 - 1),
)
def test_validation_split_properties(shape, density, fraction, seed):
    x = sp.random(*shape, density=density, format="csr", random_state=seed % 1000)
    fit, val = validation_split(x, fraction, seed=seed)
    assert fit.multiply(val).nnz == 0 and fit.nnz + val.nnz == x.nnz
    if x.nnz:
        assert abs(fit + val - x).max() == 0
    counts, n_val = np.diff(x.indptr), np.diff(val.indptr)
    assert np.all(n_val <= np.maximum(counts - 1, 0))
    assert np.all(n_val >= np.minimum(np.floor(fraction * counts), np.maximum(counts - 1, 0)))
    assert np.all(n_val <= np.ceil(fraction * counts))


def test_validation_split_keeps_a_single_interaction_for_fitting():
    x = sp.csr_matrix(np.array([[0, 1.0, 0], [1.0, 0, 0], [1.0, 1.0, 1.0]]))
    for seed in range(20):
        fit, val = validation_split(x, 0.9, seed=seed)
        assert fit[0, 1] == 1 and fit[1, 0] == 1
        assert val[2].nnz == 2  # floor(0.9 * 3 + u) = 2 or 3, capped at 2


def test_validation_split_rejects_a_bad_fraction():
    with pytest.raises(InvalidParameterError, match=r"'validation_fraction' .* in \(0, 1\)"):
        validation_split(sp.csr_matrix((2, 2)), 1.0)


def test_metric_direction():
    assert metric_direction("ndcg@10") == ("maximize", 10)
    assert metric_direction("map@5") == ("maximize", 5)
    assert metric_direction("rmse") == ("minimize", 10)
    with pytest.raises(InvalidParameterError, match=r"'metric' parameter of tune .* Got 'ndcg'"):
        metric_direction("ndcg")


# ---------------------------------------------------------------------------- space
def test_default_space_covers_weighting_and_regularization_not_targets():
    p = DEFAULT_SPACE.params
    assert (p["regularization"].low, p["regularization"].high) == (1e-3, 1.0)
    assert p["regularization"].log and p["unobserved_mass"].log
    assert (p["unobserved_mass"].low, p["unobserved_mass"].high) == (2.0, 300.0)
    assert set(p["confidence"].choices) == {"constant", "linear", "log", "bm25"}
    # ν stays train's 1 (λ then has one scale); α stays "auto" (with w0 "auto" it only
    # rescales λ); targets stay binary (train's default) for ranking metrics
    assert not {"targets", "alpha", "regularization_exponent", "unobserved_weight"} & set(p)
    assert set(p) <= set(TUNABLE)


def test_default_space_starts_from_train_defaults():
    start = DEFAULT_SPACE.train_defaults()
    assert start == {
        "embedding_dim": 128,
        "regularization": 0.015,
        "unobserved_mass": 30.0,
        "confidence": "bm25",
        "epsilon": 1.0,
        "bm25_k1": 100.0,
        "bm25_b": 0.8,
    }
    # a default outside the range or choices is left to the sampler
    narrow = SearchSpace(
        {
            "embedding_dim": Param("embedding_dim", "int", 150, 200),
            "confidence": Param("confidence", "categorical", choices=("log", "linear")),
            "solver": Param("solver", "fixed", value="cg"),
        }
    )
    assert narrow.train_defaults() == {}


def test_course_space_is_the_course_space_up_to_256_factors():
    p = COURSE_SPACE.params
    assert (p["regularization"].low, p["regularization"].high) == (0.001, 10.0)
    assert (p["embedding_dim"].low, p["embedding_dim"].high) == (5, 256)
    assert (p["unobserved_weight"].low, p["unobserved_weight"].high) == (0.001, 5.0)
    assert (p["col_weight_factor"].low, p["col_weight_factor"].high) == (1.0, 200.0)
    assert (p["col_weight_exponent"].low, p["col_weight_exponent"].high) == (0.0001, 10.0)
    assert all(q.log for q in p.values() if q.kind in ("int", "float"))
    assert set(p) <= set(TUNABLE)


def test_space_file_narrows_fixes_and_replaces(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        '[space]\nsolver = "cg"\nembedding_dim = { choices = [32, 64] }\n'
        "[space.regularization]\nlow = 0.01\nhigh = 1\nlog = true\n"
    )
    space = load_space(path)
    assert space.params["solver"].kind == "fixed" and space.params["solver"].value == "cg"
    assert space.params["embedding_dim"].choices == (32, 64)
    reg = space.params["regularization"]
    assert (reg.kind, reg.low, reg.high, reg.log) == ("float", 0.01, 1.0, True)
    assert "unobserved_mass" in space.params  # kept from the default space
    path.write_text('replace = true\n[space]\nsolver = "cg"\n')
    assert list(load_space(path).params) == ["solver"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[space]\nbogus = 1\n", r"s\.toml: unknown parameter 'bogus' in \[space\]"),
        (
            "[space.regularization]\nlow = 1\nhigh = 0.1\n",
            r"\[space\.regularization\]: 'low' must be below 'high'",
        ),
        (
            "[space.regularization]\nlow = 0\nhigh = 1\nlog = true\n",
            r"'low' must be > 0 on a log scale",
        ),
        ("[space.regularization]\nlow = 0.1\n", r"\[space\.regularization\]: a range needs both"),
        ("[space.regularization]\nlow = 0.1\nhigh = 1\nstep = 2\n", r"unknown key 'step'"),
        (
            "[space.embedding_dim]\nlow = 4.5\nhigh = 9\n",
            r"\[space\.embedding_dim\]: embedding_dim must be an int\. Got 4\.5",
        ),
        (
            "[space]\nembedding_dim = 0\n",
            r"space\.embedding_dim: The 'embedding_dim' setting of train must be an int >= 1\. "
            r"Got 0",
        ),
        (
            '[space]\nsolver = "lu"\n',
            r"space\.solver: The 'solver' setting of train must be 'cholesky' or 'cg'",
        ),
        ("[space.solver]\nlow = 1\nhigh = 2\n", r"solver is categorical"),
        ("[space]\nembedding_dim = { choices = [] }\n", r"'choices' must be a non-empty list"),
        ("[space]\n", r"no \[space\] table"),
        ("replace = 1\n[space]\nsolver = 'cg'\n", r"'replace' must be true or false"),
        ("[tune]\nx = 1\n", r"unknown top-level key 'tune'"),
    ],
)
def test_space_file_errors_name_the_file_and_key(tmp_path, text, match):
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(InvalidParameterError, match=match):
        load_space(path)


def test_space_file_not_found_and_not_toml(tmp_path):
    with pytest.raises(InvalidParameterError, match=r"Search space file .*nope\.toml' not found"):
        load_space(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[space\n")
    with pytest.raises(DataFormatError, match=r"bad\.toml: not valid TOML"):
        load_space(bad)


def test_conditional_column_weight_parameters_follow_their_choice():
    import optuna

    space = SearchSpace(COURSE_SPACE.params)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        s = space.sample(trial)
        how = s["col_weights_from_counts"]
        seen.add(how)
        assert ("col_weight_factor" in s) == (how == "linear")
        assert ("col_weight_exponent" in s) == (how == "log")
        study.tell(trial, 0.0)
    assert seen == {"linear", "log"}


# ---------------------------------------------------------------------------- studies
def test_three_trial_study_writes_outputs_and_best_toml_trains(data_dir, small_space, tmp_path):
    from walsrec.training import train

    reports = []
    out = tmp_path / "out"
    result = tune(data_dir, trials=3, sweeps=3, space=small_space, out=out, progress=reports.append)
    assert [t.state for t in result.trials] == ["COMPLETE"] * 3
    assert [r.number for r in reports] == [0, 1, 2]
    assert result.direction == "maximize" and result.metric == "ndcg@10"
    values = [t.value for t in result.trials]
    assert result.best_value == max(values) and 0 < result.best_value <= 1
    # every sweep of the first split was reported as an intermediate value; the value is
    # the mean of the three splits' last scores, the first of which is the last report
    for frozen in result.study.trials:
        assert sorted(frozen.intermediate_values) == [1, 2, 3]
        folds = frozen.user_attrs["fold_values"]
        assert frozen.intermediate_values[3] == pytest.approx(folds[0], abs=1e-6)
        assert frozen.value == pytest.approx(np.mean(folds), abs=1e-6)
    assert {"best", "trials", "history", "importances"} <= set(result.paths)
    for key in ("history", "importances"):
        assert result.paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = (out / "trials.csv").read_text().splitlines()
    assert lines[0].startswith("trial,state,ndcg@10,sweeps,seconds,")
    assert len(lines) == 4
    best = tomllib.loads((out / "best.toml").read_text())
    assert best == {**result.best_params, "sweeps": 3, "seed": 0}
    assert 4 <= best["embedding_dim"] <= 16
    trained = train(
        config_file=out / "best.toml", data=str(data_dir), model_dir=str(tmp_path / "model")
    )
    assert trained.export_path is not None and trained.steps == 6
    assert trained.model.user_factors_.shape[1] == best["embedding_dim"]


def test_the_same_storage_resumes_and_adds_trials(data_dir, small_space, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    kw = dict(sweeps=2, space=small_space, storage=storage, study_name="s")
    first = tune(data_dir, trials=3, **kw)
    second = tune(data_dir, trials=3, **kw)
    assert first.new_trials == 3 and second.new_trials == 3
    assert [t.number for t in second.trials] == list(range(6))
    # the resumed sampler does not propose the first run's points again
    firsts = [t.params for t in second.trials[:3]]
    assert all(t.params not in firsts for t in second.trials[3:])
    assert second.best_value == max(t.value for t in second.trials)
    with pytest.raises(
        InvalidParameterError, match=r"study 's' .* tuned on other terms .*sweeps: 2 -> 3"
    ):
        tune(data_dir, trials=1, **{**kw, "sweeps": 3})
    with pytest.raises(InvalidParameterError, match="metric: 'ndcg@10' -> 'rmse'"):
        tune(data_dir, trials=1, metric="rmse", **kw)


def test_folds_score_each_trial_on_several_splits_and_their_mean(data_dir, small_space, tmp_path):
    storage = f"sqlite:///{tmp_path / 'folds.db'}"
    kw = dict(sweeps=2, space=small_space, pruner="none", storage=storage)
    res = tune(data_dir, trials=2, folds=2, study_name="f", **kw)
    trials = res.study.trials
    for t in trials:
        values = t.user_attrs["fold_values"]
        assert len(values) == 2 and values[0] != values[1]
        assert t.value == pytest.approx(np.mean(values), abs=1e-6)
    # the first split is the one-split study's: the same first trial scores the same there
    one = tune(data_dir, trials=1, folds=1, study_name="one", **kw)
    first = one.study.trials[0]
    assert "fold_values" not in first.user_attrs
    assert first.user_attrs["settings"] == trials[0].user_attrs["settings"]
    assert first.value == pytest.approx(trials[0].user_attrs["fold_values"][0], abs=1e-6)
    with pytest.raises(InvalidParameterError, match=r"tuned on other terms .*folds: 2 -> 3"):
        tune(data_dir, trials=1, folds=3, study_name="f", **kw)
    with pytest.raises(InvalidParameterError, match=r"'folds' parameter of tune .* Got 0"):
        tune(data_dir, trials=1, folds=0, study_name="g", **kw)


def test_a_pruned_trial_keeps_its_sweep_and_seconds(data_dir, small_space):
    import optuna

    res = tune(
        data_dir,
        trials=2,
        sweeps=3,
        folds=2,
        evaluate_every=2,
        space=small_space,
        pruner=optuna.pruners.ThresholdPruner(lower=2.0),  # nDCG never reaches 2
    )
    for t in res.study.trials:
        assert t.state.name == "PRUNED"
        assert t.user_attrs["sweeps"] == 2 and t.user_attrs["seconds"] > 0


def test_every_fold_must_have_users_to_score(tmp_path):
    import scipy.sparse as sp

    from walsrec.data.interactions import Interactions
    from walsrec.data.prepare import PreparedData
    from walsrec.data.vocabulary import Vocabulary

    # two users with two interactions each: a 10% split holds one out only now and then
    x = sp.csr_matrix(np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]))
    data = PreparedData(
        Interactions(x, Vocabulary(["a", "b"], "users"), Vocabulary(["p", "q", "r"], "items")),
        None,
        {},
        tmp_path,
    )
    with pytest.raises(
        InvalidParameterError, match=r"too small to carve validation split \d of 50 from"
    ):
        tune(data, trials=1, folds=50, validation_fraction=0.1)


def test_a_new_study_starts_from_train_defaults(data_dir):
    res = tune(data_dir, trials=2, sweeps=1, folds=1, pruner="none")
    start = DEFAULT_SPACE.train_defaults()
    first = res.study.trials[0].user_attrs["settings"]
    # epsilon acts only with confidence "log": train's bm25 does not sample it
    assert first == {k: v for k, v in start.items() if k != "epsilon"}
    assert res.study.trials[1].user_attrs["settings"] != first


def test_a_space_without_regularization_gets_what_train_would_choose(data_dir, tmp_path):
    """λ is train's "auto": chosen on each trial's fit part, as train chooses on train."""
    from walsrec.training.regularization import choose_regularization

    path = tmp_path / "space.toml"
    path.write_text("replace = true\n[space]\nembedding_dim = { low = 4, high = 8 }\n")
    res = tune(data_dir, trials=1, sweeps=2, folds=1, pruner="none", space=path)
    (trial,) = res.study.trials
    assert trial.state.name == "COMPLETE" and "regularization" not in trial.params
    assert np.isfinite(trial.value)
    fit, _ = validation_split(load_prepared(data_dir).train.user_items, 0.1, 0)
    lam = choose_regularization(fit, trial.params, seed=0).value
    assert trial.user_attrs["regularization_by_fold"] == [lam]


def test_a_killed_runs_trial_is_marked_failed_by_the_next_run(
    data_dir, small_space, tmp_path, monkeypatch
):
    import time

    import optuna

    from walsrec.tuning import study as study_module

    monkeypatch.setattr(study_module, "_HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr(study_module, "_HEARTBEAT_GRACE_SECONDS", 1)
    url = f"sqlite:///{tmp_path / 'k.db'}"
    kw = dict(sweeps=1, space=small_space, storage=url, study_name="k", folds=1)
    tune(data_dir, trials=1, **kw)
    # a run killed in the middle of a trial: the trial stays RUNNING, its heartbeat stops
    with pytest.warns(optuna.exceptions.ExperimentalWarning, match="heartbeat"):
        storage = optuna.storages.RDBStorage(url, heartbeat_interval=1)
    with pytest.warns(UserWarning, match="Heartbeat of storage"):  # ask() outside optimize
        trial = optuna.load_study(study_name="k", storage=storage).ask()
    storage.record_heartbeat(trial._trial_id)
    time.sleep(2.5)
    res = tune(data_dir, trials=1, **kw)
    assert [t.state for t in res.trials] == ["COMPLETE", "FAIL", "COMPLETE"]


def test_the_eval_split_is_never_read(data_dir, small_space):
    from walsrec.data.interactions import Interactions
    from walsrec.data.prepare import load_prepared

    prepared = load_prepared(data_dir)
    assert prepared.eval is not None
    fit, val = validation_split(prepared.train.user_items, 0.25, seed=0)
    assert abs(fit + val - prepared.train.user_items).max() == 0
    # eval pairs are not training pairs, so nothing of eval is in either part
    assert prepared.eval.user_items.multiply(fit + val).nnz == 0
    # replacing the eval split with noise changes no trial's score
    rng = np.random.default_rng(0)
    noise = sp.random(*prepared.train.user_items.shape, density=0.2, format="csr", random_state=rng)
    swapped = replace(
        prepared, eval=Interactions(noise, prepared.train.users, prepared.train.items)
    )
    kw = dict(trials=2, sweeps=2, space=small_space, jobs=1, threads=1)
    a = tune(data_dir, **kw)
    b = tune(swapped, **kw)
    assert [t.value for t in a.trials] == [t.value for t in b.trials]


def test_a_trial_behind_the_threshold_is_pruned_at_its_first_report(data_dir, small_space):
    import optuna

    result = tune(
        data_dir,
        trials=2,
        sweeps=4,
        space=small_space,
        pruner=optuna.pruners.ThresholdPruner(lower=0.99),  # no model reaches it
    )
    assert [t.state for t in result.trials] == ["PRUNED", "PRUNED"]
    assert all(t.sweeps == 1 for t in result.trials)
    assert result.best_value is None and result.best_config == {}


def test_rmse_is_minimised(data_dir, small_space):
    result = tune(data_dir, trials=2, sweeps=2, metric="rmse", space=small_space)
    assert result.direction == "minimize"
    assert result.best_value == min(t.value for t in result.trials)
    # rmse measures predicted values: the trials fit the values, not binary targets
    assert all(t.params["targets"] == "values" for t in result.trials)
    assert result.best_config["targets"] == "values"


@pytest.mark.parametrize(
    "targets",
    [
        Param("targets", "fixed", value="binary"),
        Param("targets", "categorical", choices=("values", "binary")),
    ],
)
def test_rmse_refuses_a_space_that_fits_binary_targets(data_dir, targets):
    # a binary-target model predicts preferences: rmse against ratings would score nothing
    # it was fitted to (issue 17)
    space = SearchSpace({"targets": targets})
    with pytest.raises(
        InvalidParameterError,
        match=r"The 'space' parameter of tune sets targets to .*'binary'.*, but the metric "
        r"rmse is computed only for models that fit the values",
    ):
        tune(data_dir, trials=1, sweeps=1, metric="rmse", space=space)


def test_jobs_2_runs_trials_in_parallel_threads(data_dir, small_space):
    result = tune(data_dir, trials=4, sweeps=2, space=small_space, jobs=2, threads=2)
    assert result.threads_per_trial == 1
    assert [t.state for t in result.trials] == ["COMPLETE"] * 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(trials=0), "The 'trials' parameter of tune must be an int >= 1 or None. Got 0"),
        (dict(trials=None), "tune needs 'trials' or 'timeout'"),
        (dict(jobs=0), "The 'jobs' parameter of tune must be an int >= 1. Got 0"),
        (dict(sweeps=1.5), "The 'sweeps' parameter of tune must be an int >= 1. Got 1.5"),
        (dict(metric="ndcg@0"), "The 'metric' parameter of tune"),
        (dict(pruner="hyperband"), "The 'pruner' parameter of tune must be 'median', 'none'"),
        (dict(timeout=-1), "The 'timeout' parameter of tune must be a number > 0"),
        (dict(space=3), "The 'space' parameter of tune must be a SearchSpace"),
        (dict(storage="nosuchdb:///x"), "Cannot open the Optuna storage 'nosuchdb:///x'"),
    ],
)
def test_bad_arguments(data_dir, kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        tune(data_dir, **{"trials": 1, "sweeps": 1, **kwargs})


def test_bad_data_argument():
    with pytest.raises(
        InvalidParameterError, match="The 'data' parameter of tune must be a DATA_DIR"
    ):
        tune(42, trials=1)


def test_a_singular_trial_fails_with_its_reason_and_nothing_is_printed(data_dir, tmp_path, capsys):
    # λ = 0 and w0 = 0 with k above most users' interaction counts: singular systems
    path = tmp_path / "s.toml"
    path.write_text(
        "replace = true\n[space]\nregularization = 0\nunobserved_weight = 0\nembedding_dim = 64\n"
    )
    result = tune(data_dir, trials=2, sweeps=1, space=path, out=tmp_path / "out")
    assert [t.state for t in result.trials] == ["FAIL", "FAIL"]
    assert all(t.error.startswith("SingularSystemError: ") for t in result.trials)
    assert result.best_value is None and result.best_config == {}
    assert result.notes == ["best.toml and the plots not written: no trial completed"]
    assert set(result.paths) == {"trials"}
    assert capsys.readouterr() == ("", "")


def test_small_studies_turn_optunas_warnings_into_notes(data_dir, small_space, tmp_path):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = tune(data_dir, trials=1, sweeps=1, space=small_space, out=tmp_path)
    assert caught == []
    assert {"history", "importances"} <= set(result.paths)
    # one trial is too few to tell the parameters apart
    assert result.notes == [
        "param_importances.png: The number of trials is too small to compute importances. "
        "Parameter importances will be equal."
    ]


def test_the_none_column_weight_choice_is_shown_but_not_written(data_dir, tmp_path):
    from walsrec.tuning.study import trials_table

    path = tmp_path / "s.toml"
    path.write_text(
        "replace = true\n[space]\nembedding_dim = 4\n"
        "col_weights_from_counts = { choices = ['none'] }\n"
    )
    result = tune(data_dir, trials=1, sweeps=1, space=path, out=tmp_path / "out")
    header, rows = trials_table(result)
    assert rows[0][header.index("col_weights_from_counts")] == "none"
    assert result.best_config == {"embedding_dim": 4, "sweeps": 1, "seed": 0}
    best = tomllib.loads((tmp_path / "out" / "best.toml").read_text())
    assert best == result.best_config


def test_evaluate_every_and_a_timeout_without_a_trial_count(data_dir, small_space):
    result = tune(data_dir, trials=None, timeout=1.0, sweeps=3, evaluate_every=2, space=small_space)
    assert result.new_trials >= 1
    for frozen in result.study.trials:
        if frozen.state.name == "COMPLETE":
            assert sorted(frozen.intermediate_values) == [2, 3]  # every 2nd sweep and the last


def test_space_can_fix_unobserved_weight_to_auto(data_dir, tmp_path):
    path = tmp_path / "auto.toml"
    path.write_text(
        'replace = true\n[space]\nunobserved_weight = "auto"\nembedding_dim = 4\n'
        "[space.regularization]\nlow = 0.01\nhigh = 1.0\nlog = true\n"
    )
    space = load_space(path)
    assert space.params["unobserved_weight"].value == "auto"
    result = tune(data_dir, trials=1, sweeps=1, space=space, out=tmp_path / "out")
    assert result.trials[0].state == "COMPLETE"
    assert result.best_config["unobserved_weight"] == "auto"  # train resolves it on train
    assert 'unobserved_weight = "auto"' in (tmp_path / "out" / "best.toml").read_text()
    path.write_text('[space]\nunobserved_weight = { low = "auto", high = 1.0 }\n')
    with pytest.raises(InvalidParameterError, match=r"'low' and 'high' must be finite numbers"):
        load_space(path)


HYBRID = """
[space]
embedding_dim = 8
regularization = 0.05
blend_weight = { low = 0.0, high = 2.0 }
item_regularization = { choices = [20.0, 80.0] }
"""


def test_the_hybrids_weights_are_searched_and_scored_as_the_blend(data_dir, tmp_path):
    """A trial with β > 0 scores its WALS fit blended with EASE on the same split: the
    value equals the blend computed here from the same fit; best.toml trains that hybrid."""
    from walsrec.metrics import evaluate_scorer
    from walsrec.model.ease import EASE, binary_rows, blend, item_item_scores
    from walsrec.model.params import estimator_from_settings
    from walsrec.training import train
    from walsrec.training.config import TrainConfig

    space = tmp_path / "space.toml"
    space.write_text(HYBRID)
    out = tmp_path / "out"
    result = tune(data_dir, trials=3, sweeps=2, folds=1, space=space, pruner="none", out=out)
    fit, val = validation_split(load_prepared(data_dir).train.user_items, 0.1, 0)
    rows = binary_rows(fit)
    for trial in result.study.trials:
        settings = trial.user_attrs["settings"]
        model = estimator_from_settings(
            settings, fit, defaults=TrainConfig().to_dict(), sweeps=2, random_state=0, n_jobs=1
        ).fit(fit)
        b = EASE(settings["item_regularization"]).fit(fit).weights_
        u, vt = model.user_factors_.astype(np.float32), model.item_factors_.T.astype(np.float32)
        want = evaluate_scorer(
            lambda users, s=settings, u=u, vt=vt, b=b: blend(
                u[users] @ vt, item_item_scores(rows[users], b), s["blend_weight"]
            ),
            fit,
            val,
            k=10,
            metrics=["ndcg@10"],
        )["ndcg@10"]
        assert trial.value == pytest.approx(want, abs=1e-6)
    best = tomllib.loads((out / "best.toml").read_text())
    assert {"blend_weight", "item_regularization"} <= set(best)
    trained = train(
        config_file=out / "best.toml", data=str(data_dir), model_dir=str(tmp_path / "model")
    )
    record = json.loads((tmp_path / "model" / "item_item.json").read_text())
    # β and λ_B as given by best.toml: no search on either
    assert record["item_item"] is (best["blend_weight"] > 0)
    assert record["blend_weight"] == (best["blend_weight"] if record["item_item"] else 0.0)
    assert record["blend_scores"] == []
    assert [lam for lam, _ in record["regularization_scores"]] == [best["item_regularization"]]
    assert trained.export_path is not None


def test_the_hybrid_cannot_be_tuned_on_rmse(data_dir, tmp_path):
    space = tmp_path / "space.toml"
    space.write_text(HYBRID + 'targets = "values"\n')
    with pytest.raises(InvalidParameterError, match=r"'blend_weight' cannot be tuned on rmse"):
        tune(data_dir, trials=1, metric="rmse", space=space)
