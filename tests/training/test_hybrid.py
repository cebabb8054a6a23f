"""The hybrid's choice by validation (walsrec.training.hybrid) and train's item-item flags."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from walsrec.cli import main
from walsrec.errors import InvalidParameterError
from walsrec.training import hybrid
from walsrec.training.hybrid import BLEND_GRID, HybridChoice, choose_hybrid


def _visits(n_users=400, n_items=120, seed=0):
    """Users with tastes for one of four item groups, plus popular items."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 4, n_users)
    rows, cols = [], []
    for u in range(n_users):
        own = np.arange(group[u] * 30, group[u] * 30 + 30)
        picks = np.concatenate([rng.choice(own, 8, replace=False), rng.choice(n_items, 3)])
        rows += [u] * picks.size
        cols += picks.tolist()
    x = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_users, n_items))
    x.data[:] = 1.0
    return x


SETTINGS = {"regularization": 0.05, "embedding_dim": 8}


def test_beta_is_the_best_on_validation_and_every_score_is_kept():
    x = _visits()
    choice = choose_hybrid(x, SETTINGS, item_regularization=20.0, sweeps=3, n_jobs=1)
    assert list(choice.blend_scores) == list(BLEND_GRID)
    best = max(choice.blend_scores, key=lambda b: (choice.blend_scores[b], -b))
    assert choice.blend_weight == (best if best > 0 else 0.0)
    assert choice.item_item == (best > 0)
    assert choice.regularization_scores.keys() == {20.0}
    assert choice.validated_users > 0 and choice.seconds > 0
    again = HybridChoice.from_dict(json.loads(json.dumps(choice.to_dict())))
    assert again.to_dict() == choice.to_dict()


def test_the_blend_scores_equal_a_whole_matrix_evaluation(monkeypatch):
    """The β pass by chunks of users (several here) gives the nDCG of scoring every
    validated user at once with the blended scores."""
    from walsrec.data.split import validation_split
    from walsrec.metrics import evaluate_scorer
    from walsrec.model.ease import EASE, blend, item_item_scores

    x = _visits(seed=1)
    monkeypatch.setattr(hybrid, "_CHUNK_BYTES", 8 * 120 * 37)  # 37 users a chunk
    fit, val = validation_split(x, 0.1, 0)
    wals = hybrid._fit_wals(fit, SETTINGS, 3, 0, 1)
    b = EASE(20.0).fit(fit).weights_
    got = hybrid._blend_scores(wals, b, fit, val, [0.0, 0.5, 2.0], 10, 1, None)
    u = wals.user_factors_.astype(np.float32)
    vt = wals.item_factors_.T.astype(np.float32)
    for beta in (0.0, 0.5, 2.0):
        want = evaluate_scorer(
            lambda users, beta=beta: blend(u[users] @ vt, item_item_scores(fit[users], b), beta),
            fit,
            val,
            k=10,
            metrics=["ndcg@10"],
        )["ndcg@10"]
        assert got[beta] == pytest.approx(want, abs=1e-9)


def test_lambda_b_walks_a_log_grid_to_its_best():
    seen = []

    def score(lam):
        seen.append(lam)
        return -abs(np.log2(lam / 2000.0)), f"B{lam:g}"

    scores = {}
    lam, weights = hybrid._walk_lambda(score, scores)
    assert seen == [500.0, 250.0, 1000.0, 2000.0, 4000.0]
    assert lam == 2000.0 and weights == "B2000" and list(scores) == seen
    seen.clear()
    lam, _ = hybrid._walk_lambda(lambda lam: (seen.append(lam) or -abs(np.log2(lam / 125)), 0), {})
    assert lam == 125.0 and seen == [500.0, 250.0, 125.0, 62.5]


def test_given_weights_skip_the_search():
    x = _visits()
    choice = choose_hybrid(x, SETTINGS, item_item="on", blend_weight=0.7, item_regularization=9.0)
    assert choice.item_item and choice.blend_weight == 0.7 and choice.blend_scores == {}
    assert choice.item_regularization == 9.0
    off = choose_hybrid(x, SETTINGS, blend_weight=0.0, item_regularization=9.0)
    assert not off.item_item and off.reason == "off: β 0 as given"


def test_on_keeps_ease_even_where_wals_alone_would_win(monkeypatch):
    x = _visits()
    monkeypatch.setattr(
        hybrid, "_blend_scores", lambda *a, **k: {b: 1.0 - b for b in a[4]}
    )  # WALS alone best
    auto = choose_hybrid(x, SETTINGS, item_regularization=9.0)
    assert not auto.item_item and auto.blend_weight == 0.0
    assert auto.reason.startswith("off: WALS alone (ndcg@10 1.0000) scored at least as well")
    on = choose_hybrid(x, SETTINGS, item_item="on", item_regularization=9.0)
    assert on.item_item and on.blend_weight == 0.1


def test_too_large_a_catalogue_is_off_or_an_error(monkeypatch):
    import walsrec.model.ease as ease

    monkeypatch.setattr(ease, "DENSE_MAX_ITEMS", 50)
    monkeypatch.setattr(ease, "SPARSE_MAX_SIDE", 60)
    x = _visits()  # 400 users × 120 items
    off = choose_hybrid(x, SETTINGS)
    assert not off.item_item
    assert off.reason == (
        "off: EASE needs a dense matrix of the smaller side of the data, at most 60; this "
        "one has 400 users × 120 items"
    )
    with pytest.raises(InvalidParameterError, match=r"'item_item' setting of train is 'on', but"):
        choose_hybrid(x, SETTINGS, item_item="on")


def test_no_user_to_validate_on():
    x = sp.csr_matrix(sp.eye(30, 20, format="csr"))  # one entry per user
    assert choose_hybrid(x, SETTINGS).reason == (
        "off: no user has two or more training entries to validate on"
    )
    with pytest.raises(InvalidParameterError, match=r"give 'blend_weight' and"):
        choose_hybrid(x, SETTINGS, item_item="on")
    given = choose_hybrid(x, SETTINGS, item_item="on", blend_weight=1.0, item_regularization=5.0)
    assert given.item_item and given.blend_weight == 1.0


def test_train_records_the_choice_and_a_rerun_reads_it(data_dir, tmp_path, capsys):
    args = ["train", "--data", str(data_dir), "--model-dir", str(tmp_path / "m"),
            "--sweeps", "2", "--embedding-dim", "6", "--regularization", "0.05",
            "--item-regularization", "30", "--threads", "1"]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    record = json.loads((tmp_path / "m" / "item_item.json").read_text())
    assert f"item-item: {record['reason']} (β: 0 " in err
    # λ_B as given: scored once, no search
    [(lam, score)] = record["regularization_scores"]
    assert lam == 30.0 and 0 < score <= 1
    assert [b for b, _ in record["blend_scores"]] == list(BLEND_GRID)
    exported = sorted((tmp_path / "m" / "export").iterdir())[-1]
    meta = json.loads((exported / "model.json").read_text())
    assert ("item_item" in meta) == record["item_item"]
    assert main([*args, "--sweeps", "3"]) == 0
    err = capsys.readouterr().err
    assert f"item-item: {record['reason']} (as chosen before, item_item.json)" in err


def test_item_item_off_and_bad_flags(data_dir, tmp_path, capsys):
    base = ["train", "--data", str(data_dir), "--sweeps", "1", "--embedding-dim", "4",
            "--regularization", "0.05", "--threads", "1"]  # fmt: skip
    assert main([*base, "--model-dir", str(tmp_path / "off"), "--item-item", "off"]) == 0
    assert json.loads((tmp_path / "off" / "item_item.json").read_text())["reason"] == "off, as set"
    assert not any((tmp_path / "off" / "export").glob("*/item_item"))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main([*base, "--model-dir", str(tmp_path / "x"), "--item-item", "maybe"])
    assert exit_.value.code == 2
    assert "invalid choice: 'maybe'" in capsys.readouterr().err
    assert main([*base, "--model-dir", str(tmp_path / "x"), "--blend-weight", "-1"]) == 2
    assert "blend_weight" in capsys.readouterr().err
    assert main([*base, "--model-dir", str(tmp_path / "x"), "--item-item", "on",
                 "--dask", "local:1"]) == 2  # fmt: skip
    assert "'item_item' setting of train cannot be 'on' with 'dask'" in capsys.readouterr().err


def test_a_lambda_b_that_cannot_be_factorised_is_never_chosen(monkeypatch):
    import walsrec.model.ease as ease
    from walsrec.errors import SingularSystemError

    real = ease.ease_dense

    def fragile(x, lam, dtype=np.float32, gram=None):
        if lam < 400:
            raise SingularSystemError("not positive definite")
        return real(x, lam, dtype, gram=gram)

    monkeypatch.setattr(ease, "ease_dense", fragile)
    x = _visits()
    choice = choose_hybrid(x, SETTINGS, sweeps=2, item_item="on")
    assert np.isnan(choice.regularization_scores[250.0])
    assert choice.item_regularization >= 500.0 and choice.item_item
    monkeypatch.setattr(ease, "ease_dense", lambda *a, **k: fragile(a[0], 1.0))
    off = choose_hybrid(x, SETTINGS, sweeps=2)
    assert not off.item_item
    assert off.reason == "off: EASE could not be fitted in float32 at any λ_B tried"
    with pytest.raises(InvalidParameterError, match=r"not positive definite in float32 at any"):
        choose_hybrid(x, SETTINGS, sweeps=2, item_item="on")


def test_a_corrupt_record_is_an_error_naming_it(tmp_path):
    from walsrec.errors import DataFormatError
    from walsrec.training.hybrid import read_choice

    path = tmp_path / "item_item.json"
    record = HybridChoice(True, 0.5, 100.0, reason="auto").to_dict()
    path.write_text(json.dumps({**record, "blend_weight": -1}))
    with pytest.raises(DataFormatError, match=r"item_item\.json: not a record of the item-item"):
        read_choice(path)
    path.write_text(json.dumps({**record, "item_regularization": None}))
    with pytest.raises(DataFormatError, match=r"'item_regularization' must be finite numbers"):
        read_choice(path)
    path.write_text(json.dumps(record))
    assert read_choice(path).blend_weight == 0.5


def test_a_recorded_hybrid_resumed_on_dask_exports_wals_alone(tmp_path):
    from walsrec.training.loop import _ItemItem

    (tmp_path / "item_item.json").write_text(
        json.dumps(HybridChoice(True, 0.5, 100.0, reason="auto").to_dict())
    )

    class Dask:
        user_items = None
        validation_model = None

    said = []
    part = _ItemItem(None, Dask(), None, tmp_path, said.append, False)
    assert part() is None
    assert said[-1].startswith("item-item: the recorded choice keeps EASE, but EASE is fitted")


def test_on_with_a_blend_weight_of_zero_is_refused():
    from walsrec.training.config import TrainConfig

    with pytest.raises(InvalidParameterError, match=r"'blend_weight' setting of train is 0"):
        TrainConfig(model_dir="m", data="d", item_item="on", blend_weight=0.0).validate()
