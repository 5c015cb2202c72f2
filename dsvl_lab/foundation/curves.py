"""The learning curve of a pretraining run: logged as ``curve/*`` points, read back, drawn for the card."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import lightning as L

from ..artifacts import read_metrics
from ..atomic import atomic_write


def log_curve(trainer: L.Trainer, name: str, value: float) -> None:
    """One learning-curve point, written to the logger at this exact step (not smoothed or repeated)."""
    if trainer.logger is not None:
        trainer.logger.log_metrics({name: float(value)}, step=trainer.global_step)


def curve_rows(out: Path) -> list[dict[str, float]]:
    """The learning-curve rows logged as ``curve/*`` in the CSV log (one row per evaluation)."""
    rows = []
    for row in read_metrics(out):
        values = {k.split("/", 1)[1]: v for k, v in row.items() if k.startswith("curve/")}
        if values:
            values["step"] = row["step"]
            rows.append(values)
    return rows


def plot_curve(rows: list[dict[str, float]], keys: Sequence[str], path: Path, title: str) -> None:
    """A learning curve as PNG (one panel per metric)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    keys = [k for k in keys if any(k in r for r in rows)]
    if not keys:
        return
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 2.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        points = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot(*zip(*points), marker="o", markersize=3)
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    plt.close(fig)
