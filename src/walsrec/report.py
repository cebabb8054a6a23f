"""A self-contained HTML report of a trained model (what ``walsrec demo`` writes).

One file, no external resources: the training curve is embedded as a base64 PNG, the
styles are inline, every value is HTML-escaped. Opening it needs nothing but a browser.
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from walsrec._tables import RMSE_NOT_COMPUTED

__all__ = ["ExampleUser", "curve_missing", "example_users", "write_report"]

# the held-out metrics shown, in this order; training figures (loss, rwse) come after
_RANKING = ("precision@", "recall@", "map@", "ndcg@", "auc", "coverage")
_SKIP = {"model", "step", "sweep", "seconds", "k", "users_evaluated"}

# the hyper-parameters shown (an export's names), with their labels, in this order
_HYPERPARAMETERS = (
    ("regularization", "λ (regularization)"),
    ("unobserved_weight", "w0 (unobserved weight)"),
    ("embedding_dim", "embedding dimension"),
    ("targets", "targets"),
    ("confidence", "confidence"),
    ("alpha", "α (confidence scale)"),
)

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 62rem; padding: 0 1rem; color: #1b1f24; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; }
.sub { color: #57606a; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { padding: 0.25rem 0.7rem; border-bottom: 1px solid #eaeef2; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.better { color: #1a7f37; font-weight: 600; }
.worse { color: #cf222e; }
.users { display: grid; grid-template-columns: repeat(auto-fit, minmax(18rem, 1fr));
         gap: 1rem; }
.user { border: 1px solid #d0d7de; border-radius: 6px; padding: 0.6rem 0.8rem; }
.user h3 { margin: 0 0 0.4rem 0; font-size: 1rem; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 0.6rem; font-size: 0.9rem; }
.cols ol, .cols ul { margin: 0.2rem 0; padding-left: 1.3rem; }
.hit { background: #dafbe1; font-weight: 600; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.88rem; }
pre { background: #f6f8fa; padding: 0.6rem 0.8rem; border-radius: 6px; overflow-x: auto; }
img { max-width: 100%; border: 1px solid #eaeef2; }
"""


@dataclass
class ExampleUser:
    """One user shown in the report: training history beside recommendations.

    Attributes
    ----------
    user : str
        The user's original id.
    history : list of (str, float)
        Training items and their values (strongest first is the most readable).
    recommendations : list of (str, float)
        Recommended items and their scores, best first.
    held_out : list of str
        The user's held-out items, if any; recommended ones (hits) are highlighted.
    drawn : str
        How the user was drawn (e.g. "at random (seed 0) among the users with held-out
        items and 3 to 30 training items"); the report says it above the users.
    """

    user: str
    history: list[tuple[str, float]]
    recommendations: list[tuple[str, float]]
    held_out: list[str] = field(default_factory=list)
    drawn: str = ""

    @property
    def hits(self) -> list[str]:
        """The recommended items that are among the held-out ones, in rank order."""
        held = set(self.held_out)
        return [item for item, _ in self.recommendations if item in held]


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 1e5 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return _esc(value)


def _metric_names(model: Mapping) -> list[str]:
    names = [n for n in model if n not in _SKIP]
    ranking = [n for n in names if n.startswith(_RANKING)]
    return ranking + [n for n in names if n not in ranking]


def _metrics_table(
    model: Mapping, baseline: Mapping | None, ease: Mapping | None, targets: str | None
) -> str:
    rows = []
    for name in _metric_names(model):
        value = model[name]
        base = baseline.get(name) if baseline else None
        cls = ""
        if isinstance(value, float) and isinstance(base, float) and not math.isnan(base):
            higher = name.startswith(_RANKING)
            if value != base:
                cls = "better" if (value > base) == higher else "worse"
        row = (
            f'<tr><td>{_esc(name)}</td><td class="num {cls}">{_fmt(value)}</td>'
            f'<td class="num">{_fmt(base)}</td>'
        )
        if ease:
            row += f'<td class="num">{_fmt(ease.get(name))}</td>'
        rows.append(row + "</tr>")
    if targets == "binary" and "rmse" not in model:
        span = 3 if ease else 2
        rows.append(
            f'<tr><td>rmse</td><td colspan="{span}">n/a ({_esc(RMSE_NOT_COMPUTED)})</td></tr>'
        )
    head = '<th class="num">EASE</th>' if ease else ""
    return (
        '<table><thead><tr><th>metric</th><th class="num">model</th>'
        f'<th class="num">most-popular</th>{head}</tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table>"
    )


def _user_card(example: ExampleUser) -> str:
    held = set(example.held_out)
    history = "".join(
        f"<li>{_esc(item)} <small>({_fmt(float(v))})</small></li>" for item, v in example.history
    )
    recs = "".join(
        (
            f"<li class=hit>{_esc(item)} <small>({_fmt(float(s))})</small> ✓</li>"
            if item in held
            else f"<li>{_esc(item)} <small>({_fmt(float(s))})</small></li>"
        )
        for item, s in example.recommendations
    )
    foot = ""
    if held:
        hits, n = len(example.hits), len(example.recommendations)
        items = f"{len(held)} held-out item{'' if len(held) == 1 else 's'}"
        said = (
            f"{hits} of {n} recommendations are among the user's {items} (highlighted, ✓)"
            if hits
            else f"None of the {n} recommendations is among the user's {items}"
        )
        shown = ", ".join(_esc(i) for i in example.held_out[:10])
        more = f" and {len(held) - 10:,} more" if len(held) > 10 else ""
        foot = f"<p><small>{said}: {shown}{more}.</small></p>"
    return (
        f'<div class="user"><h3>user {_esc(example.user)}</h3><div class="cols">'
        f"<div><b>history</b> <small>(value)</small><ul>{history}</ul></div>"
        f"<div><b>recommended</b> <small>(score)</small><ol>{recs}</ol></div>"
        f"</div>{foot}</div>"
    )


def write_report(
    path: str | os.PathLike,
    *,
    model: Mapping,
    baseline: Mapping | None = None,
    ease: Mapping | None = None,
    hyperparameters: Mapping | None = None,
    curve: str | os.PathLike | None = None,
    examples: Iterable[ExampleUser] = (),
    title: str = "walsrec model report",
    facts: Sequence[tuple[str, object]] = (),
    commands: Sequence[str] = (),
) -> Path:
    """Write a self-contained HTML report and return its path.

    Parameters
    ----------
    path : path
        The HTML file to write (replaced atomically; the parent directory must exist).
    model : mapping
        The model's metrics by name (e.g. the last evaluation of ``TrainResult``).
    baseline : mapping, optional
        The most-popular baseline's metrics by the same names.
    ease : mapping, optional
        The EASE baseline's metrics (``walsrec.evaluate_export(...)["ease"]``), a column
        of the table.
    hyperparameters : mapping, optional
        The model's hyper-parameters (an export's ``model.json``
        ``"hyperparameters"``): λ, w0, the embedding dimension, targets, confidence and
        α are shown. Under ``targets="binary"`` the table says why rmse is missing.
    curve : path, optional
        A PNG (the training curve); embedded as base64. A missing file is reported in
        the page (train draws the curve only when matplotlib is installed).
    examples : iterable of ExampleUser
        Users to show, history beside recommendations.
    title : str, default "walsrec model report"
    facts : sequence of (label, value)
        A short table of facts about the data and the run (users, items, sweeps, ...).
    commands : sequence of str
        Shell commands shown at the end (serving and querying the model).

    Returns
    -------
    Path
    """
    path = Path(path)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
    ]
    k = model.get("k")
    parts.append(
        '<p class="sub">Held-out evaluation'
        + (f" at k = {_esc(k)}" if k else "")
        + ", each user's training items excluded from the ranking. Green: better than "
        "most-popular; red: worse.</p>"
    )
    if facts:
        parts.append("<h2>Data and run</h2><table><tbody>")
        parts += [f'<tr><td>{_esc(a)}</td><td class="num">{_fmt(b)}</td></tr>' for a, b in facts]
        parts.append("</tbody></table>")
    hyper = [
        (label, hyperparameters[key])
        for key, label in _HYPERPARAMETERS
        if hyperparameters and key in hyperparameters
    ]
    if hyper:
        parts.append("<h2>Model</h2><table><tbody>")
        parts += [f'<tr><td>{_esc(a)}</td><td class="num">{_fmt(b)}</td></tr>' for a, b in hyper]
        parts.append("</tbody></table>")
    parts.append("<h2>Metrics</h2>")
    targets = (hyperparameters or {}).get("targets")
    parts.append(_metrics_table(model, baseline, ease, targets))
    if curve is not None:
        parts.append("<h2>Training curve</h2>")
        if Path(curve).is_file():
            data = base64.b64encode(Path(curve).read_bytes()).decode("ascii")
            parts.append(f'<img alt="training curve" src="data:image/png;base64,{data}">')
        else:
            parts.append(f"<p>{_esc(curve_missing(curve))}.</p>")
    examples = list(examples)
    if examples:
        parts.append("<h2>Example users</h2>")
        drawn = examples[0].drawn
        if drawn:
            hits = (
                "recommended items among the user's held-out ones are highlighted (✓)"
                if any(e.hits for e in examples)
                else "none of their recommendations is among their held-out items"
            )
            parts.append(
                f'<p class="sub">{len(examples)} user{"" if len(examples) == 1 else "s"} '
                f"drawn {_esc(drawn)}: their strongest training items beside their top "
                f"{len(examples[0].recommendations)}; {hits}.</p>"
            )
        parts.append("<div class=users>")
        parts += [_user_card(e) for e in examples]
        parts.append("</div>")
    if commands:
        parts.append("<h2>Next</h2><pre>" + _esc("\n".join(commands)) + "</pre>")
    parts.append("</body></html>\n")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, path)
    return path


def curve_missing(curve: str | os.PathLike) -> str:
    """What the report (and a log) says when the training curve ``curve`` is missing."""
    return (
        f"No training curve: {Path(curve).name} was not drawn (train draws it only when "
        "matplotlib is installed: pip install 'walsrec[plot]')"
    )


def example_users(model, data, n: int = 3, *, k: int = 10, seed: int = 0, max_history: int = 12):
    """Draw ``n`` users with held-out items and show their history beside their top ``k``.

    Parameters
    ----------
    model : Recommender
        A loaded export (:func:`walsrec.load_model`).
    data : PreparedData
        The DATA_DIR the model was trained on (:func:`walsrec.load_prepared`). Users are
        drawn at random (``seed``) among those with held-out items and 3 to 30 training
        items (short histories read best); if none qualify, among all users with held-out
        items and a training item; without an eval split, among users with a training item.
        Each :class:`ExampleUser`'s ``drawn`` says which.
    n : int, default 3
    k : int, default 10
    seed : int, default 0
    max_history : int, default 12
        History items shown per user, strongest first.

    Returns
    -------
    list of ExampleUser
        Fewer than ``n`` when fewer users qualify.
    """
    import numpy as np

    train = data.train.user_items
    counts = np.diff(train.indptr)
    held = data.eval.user_items if data.eval is not None else None
    if held is not None:
        held_counts = np.diff(held.indptr)
        drawn = "among the users with held-out items and 3 to 30 training items"
        candidates = np.flatnonzero((held_counts > 0) & (counts >= 3) & (counts <= 30))
        if candidates.size == 0:
            drawn = "among the users with held-out items"
            candidates = np.flatnonzero((held_counts > 0) & (counts > 0))
    else:
        drawn = "among the users with training items (the data has no eval split)"
        candidates = np.flatnonzero(counts > 0)
    drawn = f"at random (seed {seed}) {drawn}"
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(candidates, size=min(n, candidates.size), replace=False).tolist())
    users, items = data.train.users, data.train.items
    out = []
    for u in chosen:
        lo, hi = train.indptr[u], train.indptr[u + 1]
        order = np.argsort(-np.asarray(train.data[lo:hi]), kind="stable")[:max_history]
        history = [(items.id(int(train.indices[lo + j])), float(train.data[lo + j])) for j in order]
        user_id = users.id(u)
        recs = model.recommend(user_id, k=k)
        held_out = []
        if held is not None:
            held_out = [items.id(int(j)) for j in held.indices[held.indptr[u] : held.indptr[u + 1]]]
        out.append(
            ExampleUser(
                user=user_id,
                history=history,
                recommendations=list(zip(recs.items, recs.scores.tolist(), strict=True)),
                held_out=held_out,
                drawn=drawn,
            )
        )
    return out
