from __future__ import annotations

import base64
import re
from types import SimpleNamespace

import numpy as np

from walsrec._tables import metrics_table
from walsrec.cli import main
from walsrec.report import ExampleUser, write_report

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


def test_report_is_self_contained_and_escaped(tmp_path):
    curve = tmp_path / "curve.png"
    curve.write_bytes(PNG)
    path = write_report(
        tmp_path / "r.html",
        model={"model": "wals", "k": 10, "precision@10": 0.25, "auc": 0.6, "loss": 12.5},
        baseline={"precision@10": 0.125, "auc": 0.75},
        curve=curve,
        examples=[
            ExampleUser(
                user="<u1>",
                history=[("a&b", 1.0)],
                recommendations=[("x", 0.5), ("y", 0.25)],
                held_out=["y"],
            )
        ],
        facts=[("users", 1234)],
        commands=["walsrec serve --model m/"],
    )
    text = path.read_text()
    assert base64.b64encode(PNG).decode() in text
    # nothing fetched from elsewhere: no scripts, stylesheets or remote sources
    assert not re.search(r"<script|<link|src=\"http|url\(", text)
    assert "&lt;u1&gt;" in text and "<u1>" not in text and "a&amp;b" in text
    # precision beats most-popular (higher is better); auc does not
    assert re.search(r'class="num better">0\.2500<', text)
    assert re.search(r'class="num worse">0\.6000<', text)
    assert (
        "1 of 2 recommendations are among the user's 1 held-out item (highlighted, ✓): y." in text
    )
    assert "<li class=hit>y" in text and "1,234" in text
    assert "walsrec serve --model m/" in text
    # precision and auc (held-out ranking) come before the training loss
    assert text.index(">precision@10<") < text.index(">auc<") < text.index(">loss<")


def test_report_without_curve_or_examples(tmp_path):
    path = write_report(tmp_path / "r.html", model={"rmse": float("nan")}, curve=tmp_path / "no")
    text = path.read_text()
    assert "<img" not in text and "Example users" not in text and "–" in text
    assert not list(tmp_path.glob(".*tmp"))  # written through a temporary name


def test_a_card_without_hits_highlights_nothing_and_says_so(tmp_path):
    # issue 17: "0 of 5 recommendations are among the user's 1 held-out items (highlighted)"
    example = ExampleUser(
        user="u",
        history=[("a", 1.0)],
        recommendations=[("x", 0.5), ("y", 0.25)],
        held_out=["z"],
        drawn="at random (seed 0) among the users with held-out items",
    )
    text = write_report(tmp_path / "r.html", model={"auc": 0.5}, examples=[example]).read_text()
    assert "None of the 2 recommendations is among the user's 1 held-out item: z." in text
    assert "highlighted" not in text and "class=hit" not in text and "✓" not in text
    assert (
        "1 user drawn at random (seed 0) among the users with held-out items: their strongest "
        "training items beside their top 2; none of their recommendations is among their "
        "held-out items." in text
    )


def test_report_shows_lambda_w0_ease_and_why_rmse_is_missing(tmp_path):
    path = write_report(
        tmp_path / "r.html",
        model={"k": 10, "loss": 3.0, "ndcg@10": 0.25},
        baseline={"ndcg@10": 0.125},
        ease={"ndcg@10": 0.2},
        hyperparameters={"regularization": 0.025, "unobserved_weight": 0.0042, "targets": "binary"},
    )
    text = path.read_text()
    assert re.search(r"<td>λ \(regularization\)</td><td class=\"num\">0\.0250<", text)
    assert re.search(r"<td>w0 \(unobserved weight\)</td><td class=\"num\">0\.0042<", text)
    assert '<th class="num">EASE</th>' in text and '<td class="num">0.2000</td>' in text
    assert '<td>rmse</td><td colspan="3">n/a (binary targets: the model predicts ' in text


def test_a_missing_curve_is_said_in_the_report(tmp_path):
    # without matplotlib train draws no curve: the report says so instead of dropping it
    text = write_report(
        tmp_path / "r.html", model={"auc": 0.5}, curve=tmp_path / "training_curve.png"
    ).read_text()
    assert (
        "No training curve: training_curve.png was not drawn (train draws it only when "
        "matplotlib is installed: pip install &#x27;walsrec[plot]&#x27;)." in text
    )


class _Model:
    """recommend() of a loaded export, answering the same items whoever asks."""

    def recommend(self, user, k):
        import numpy as np

        return SimpleNamespace(items=["i0", "i1", "i2"][:k], scores=np.ones(k))


def test_example_users_are_drawn_among_users_with_held_out_items(data_dir):
    import numpy as np

    from walsrec.data.prepare import load_prepared
    from walsrec.report import example_users

    data = load_prepared(data_dir)
    held = np.diff(data.eval.user_items.indptr)
    for seed in range(5):
        examples = example_users(_Model(), data, n=4, k=2, seed=seed)
        assert len(examples) == 4
        for ex in examples:
            assert held[data.train.users.index(ex.user)] > 0 and ex.held_out
            assert ex.drawn == (
                f"at random (seed {seed}) among the users with held-out items and 3 to 30 "
                "training items"
            )


def test_demo_writes_the_report_and_the_next_commands(tmp_path, capsys):
    work = tmp_path / "demo"
    code = main(["demo", "--workdir", str(work), "--interactions", "5000", "--sweeps", "3"])
    out, err = capsys.readouterr()
    assert code == 0, err
    for stage in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"):
        assert stage in err  # progress throughout
    report = work / "report.html"
    assert f"Report: {report}" in out
    html = report.read_text()
    assert "data:image/png;base64," in html and "most-popular" in html
    users = re.findall(r"^  user (\S+)  \(", out, flags=re.M)
    assert len(users) == 3
    for user in users:
        assert f"user {user}</h3>" in html
    # the users' recommendations are the model's, by original ids
    import walsrec

    model = walsrec.load_model(work / "model")
    first = model.recommend(users[0], k=5).items
    assert all(item in html for item in first)
    assert f"walsrec serve --model {work / 'model'} --port 8000" in out
    assert f"curl 'http://127.0.0.1:8000/recommendations/{users[0]}?k=5'" in out


def test_example_users_say_how_they_were_drawn_when_few_qualify(data_dir):
    from dataclasses import replace

    import scipy.sparse as sp

    from walsrec.data.interactions import Interactions
    from walsrec.data.prepare import load_prepared
    from walsrec.report import example_users

    data = load_prepared(data_dir)
    # no user with 3 to 30 training items has a held-out one: any user with held-out items
    held = data.eval.user_items.tolil()
    counts = np.diff(data.train.user_items.indptr)
    for u in np.flatnonzero((counts >= 3) & (counts <= 30)):
        held.rows[u], held.data[u] = [], []
    few_held = Interactions(sp.csr_matrix(held, dtype=np.float32), data.eval.users, data.eval.items)
    few = replace(data, eval=few_held)
    examples = example_users(_Model(), few, n=2, k=2, seed=1)
    assert examples and all(ex.held_out for ex in examples)
    assert examples[0].drawn == "at random (seed 1) among the users with held-out items"
    # without an eval split: any user with training items, and the draw says so
    examples = example_users(_Model(), replace(data, eval=None), n=2, k=2, seed=1)
    assert examples[0].drawn == (
        "at random (seed 1) among the users with training items (the data has no eval split)"
    )


def test_printed_tables_say_why_a_binary_target_model_has_no_rmse():
    model = {"model": "wals", "step": 2, "loss": 12.0, "ndcg@10": 0.25}
    table = metrics_table(model, {"ndcg@10": 0.125}, targets="binary").splitlines()
    assert table[2:4] == [
        "  rmse                  n/a  (binary targets: the model predicts preferences, not values)",
        "  ndcg@10            0.2500        0.1250",
    ]
    # fitted to the values, or targets unknown: rmse where it is, no note
    assert "n/a" not in metrics_table({"rmse": 0.5, "ndcg@10": 0.2}, None, targets="values")
    assert "n/a" not in metrics_table(model, None)
