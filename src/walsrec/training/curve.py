"""``training_curve.png``: the training loss and held-out metrics against sweeps."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt

from walsrec._files import temp_name

__all__ = ["plot_training_curve"]


def plot_training_curve(records: list[dict], path: str | os.PathLike, k: int = 10) -> Path:
    """Draw loss (left) and ranking metrics with the most-popular baseline (right).

    ``records`` are the lines of ``metrics.jsonl``. Written to a temporary file and renamed.
    """
    path = Path(path)
    runs = [r for r in records if r.get("model") == "wals"]
    baseline = next((r for r in records if r.get("model") == "most-popular"), None)
    ranking = [f"ndcg@{k}", f"precision@{k}", f"recall@{k}", f"map@{k}"]
    has_heldout = any(m in r for r in runs for m in ranking)
    fig, axes = plt.subplots(
        1, 2 if has_heldout else 1, figsize=(12 if has_heldout else 6, 6 if has_heldout else 4)
    )
    axes = list(axes) if has_heldout else [axes]
    x = [r["sweep"] for r in runs]
    axes[0].plot(x, [r["loss"] for r in runs], marker="o", color="tab:blue")
    axes[0].set_xlabel("sweep (one update of every user, then of every item)")
    axes[0].set_ylabel("training loss L (weighted squared error + regularization)")
    axes[0].set_title("Training loss")
    axes[0].grid(alpha=0.3)
    if has_heldout:
        ax = axes[1]
        for i, name in enumerate(ranking):
            color = f"C{i + 1}"
            ax.plot(
                x, [r.get(name, float("nan")) for r in runs], marker="o", color=color, label=name
            )
            if baseline is not None and baseline.get(name) is not None:
                ax.axhline(
                    baseline[name],
                    color=color,
                    linestyle="--",
                    linewidth=1,
                    label=f"{name} most-popular",
                )
        ax.set_xlabel("sweep (one update of every user, then of every item)")
        ax.set_ylabel(f"held-out metric at k = {k} (higher is better)")
        ax.set_title(f"Held-out ranking metrics (top {k}; dashed: most-popular)")
        ax.grid(alpha=0.3)
        # below the axes, so it never hides a curve
        ax.legend(fontsize=10, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.13))
    fig.tight_layout()
    tmp = temp_name(path, "tmp", ".png")  # matplotlib takes the format from the suffix
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path
