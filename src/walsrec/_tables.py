"""The metrics table the commands print: the model beside most-popular and, when scored, EASE."""

from __future__ import annotations

__all__ = ["RMSE_NOT_COMPUTED", "evaluation_table", "metrics_table"]

# keys of an evaluation dictionary that are not metrics
_NOT_METRICS = ("model", "step", "sweep", "seconds", "k")

#: why the tables show no rmse for a model fitted to binary targets
RMSE_NOT_COMPUTED = "binary targets: the model predicts preferences, not values"


def metrics_table(
    model: dict,
    baseline: dict | None,
    ease: dict | None = None,
    *,
    targets: str | None = None,
    wals: dict | None = None,
) -> str:
    """One line per metric of ``model``: its value, most-popular's and EASE's (blank where a
    baseline has no such metric, e.g. rmse); with ``wals`` (a hybrid's WALS part) the
    model's column is headed "hybrid" and WALS alone follows it.

    ``targets`` is the targets the model was fitted to: under ``"binary"`` rmse is not
    computed (:func:`walsrec.metrics.metric_names`), and its row says so.
    """
    names = [n for n in (wals or model) if n not in _NOT_METRICS]
    header = f"  {'metric':<14} {'hybrid' if wals else 'model':>10}"
    header += f" {'WALS':>10}" if wals else ""
    header += f" {'most-popular':>13}"
    lines = [header + (f" {'EASE':>10}" if ease else "")]
    note = None
    if targets == "binary" and "rmse" not in model:
        note = f"  {'rmse':<14} {'n/a':>10}  ({RMSE_NOT_COMPUTED})"
    for name in names:
        if note is not None and not name.startswith(("loss", "rwse")):
            lines.append(note)  # where rmse stands: after the training figures
            note = None
        value = model.get(name)
        value_s = f"{value:>10.4f}" if isinstance(value, float) else f"{'':>10}"
        if wals:
            w = wals.get(name)
            value_s += f" {w:>10.4f}" if isinstance(w, float) else f" {'':>10}"
        base = baseline.get(name) if baseline else None
        base_s = f"{base:>13.4f}" if isinstance(base, float) else f"{'':>13}"
        line = f"  {name:<14} {value_s} {base_s}"
        if ease:
            e = ease.get(name)
            line += f" {e:>10.4f}" if isinstance(e, float) else f" {'':>10}"
        lines.append(line)
    if note is not None:
        lines.append(note)
    return "\n".join(lines)


def evaluation_table(evaluation: dict) -> str:
    """:func:`metrics_table` of an evaluation as :func:`walsrec.evaluate_export` answers it
    (``model``, ``most-popular``, and ``ease`` and ``targets`` where given)."""
    return metrics_table(
        evaluation["model"],
        evaluation["most-popular"],
        evaluation.get("ease"),
        targets=evaluation.get("targets"),
        wals=evaluation.get("wals"),
    )
