from __future__ import annotations

import base64
import re

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
    assert "1 of 2 recommendations are among the user's 1 held-out items" in text
    assert "<li class=hit>y" in text and "1,234" in text
    assert "walsrec serve --model m/" in text
    # precision and auc (held-out ranking) come before the training loss
    assert text.index(">precision@10<") < text.index(">auc<") < text.index(">loss<")


def test_report_without_curve_or_examples(tmp_path):
    path = write_report(tmp_path / "r.html", model={"rmse": float("nan")}, curve=tmp_path / "no")
    text = path.read_text()
    assert "<img" not in text and "Example users" not in text and "–" in text
    assert not list(tmp_path.glob(".*tmp"))  # written through a temporary name


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
