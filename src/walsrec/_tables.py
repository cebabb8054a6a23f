"""The metrics table the commands print: the model beside most-popular and, when scored, EASE."""

from __future__ import annotations

__all__ = ["metrics_table"]

# keys of an evaluation dictionary that are not metrics
_NOT_METRICS = ("model", "step", "sweep", "seconds", "k")


def metrics_table(model: dict, baseline: dict | None, ease: dict | None = None) -> str:
    """One line per metric of ``model``: its value, most-popular's and EASE's (blank where a
    baseline has no such metric, e.g. rmse)."""
    names = [n for n in model if n not in _NOT_METRICS]
    header = f"  {'metric':<14} {'model':>10} {'most-popular':>13}"
    lines = [header + (f" {'EASE':>10}" if ease else "")]
    for name in names:
        value = model[name]
        value_s = f"{value:>10.4f}" if isinstance(value, float) else f"{'':>10}"
        base = baseline.get(name) if baseline else None
        base_s = f"{base:>13.4f}" if isinstance(base, float) else f"{'':>13}"
        line = f"  {name:<14} {value_s} {base_s}"
        if ease:
            e = ease.get(name)
            line += f" {e:>10.4f}" if isinstance(e, float) else f" {'':>10}"
        lines.append(line)
    return "\n".join(lines)
