"""Pictures of a pipeline run: per-stage losses and the language share the data actually had.

Used by ``notebooks/05_training_stages.ipynb``; everything reads the run folder a pipeline wrote
(``<run>/<stage>/logs/metrics.csv``), so the same figures work for ``make demo``'s ``runs/demo``.
"""
from __future__ import annotations

from pathlib import Path

from ..artifacts import read_metrics

SERIES = {"train/loss_text": "text batches", "train/loss_vl": "image batches"}


def series(rows: list[dict[str, float]], key: str) -> tuple[list[float], list[float]]:
    points = [(row["step"], row[key]) for row in rows if key in row and "step" in row]
    return ([s for s, _ in points], [v for _, v in points]) if points else ([], [])


def plot_stages(run: str | Path, stages=("stage1_adaptor", "stage2_joint", "stage3_sft")):
    """Row 1: training loss on text and on image batches per stage. Row 2: the language share the
    schedule asked for (modality warm-up) and the share the model actually saw."""
    import matplotlib.pyplot as plt

    run = Path(run)
    present = [s for s in stages if (run / s / "logs" / "metrics.csv").is_file()]
    fig, axes = plt.subplots(2, len(present), figsize=(3.8 * len(present), 5.2), squeeze=False)
    for column, stage in enumerate(present):
        rows = read_metrics(run / stage)
        top, bottom = axes[0][column], axes[1][column]
        for key, label in SERIES.items():
            steps, values = series(rows, key)
            if steps:
                top.plot(steps, values, label=label, linewidth=1)
        top.set_title(stage, fontsize=10)
        top.set_xlabel("step")
        top.set_ylabel("training loss")
        top.legend(fontsize=8)
        top.grid(alpha=0.3)
        for key, label, style in (("data/language_share_target", "schedule", "--"),
                                  ("data/language_share_seen", "seen so far", "-")):
            steps, values = series(rows, key)
            if steps:
                bottom.plot(steps, values, style, label=label, linewidth=1)
        bottom.set_ylim(-0.05, 1.05)
        bottom.set_xlabel("step")
        bottom.set_ylabel("language share")
        bottom.legend(fontsize=8)
        bottom.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def spec_table(specs) -> str:
    """A markdown table of stage specs: what trains, learning rate and schedule, steps, data mixture."""
    lines = ["| stage | trains | lr | schedule (warm-up) | steps | batch | language ratio (modality warm-up) |",
             "|---|---|---|---|---|---|---|"]
    for spec in specs:
        data = spec.data
        lines.append(f"| {spec.name} | {', '.join(spec.trainable)} | {spec.learning_rate:g} | {spec.schedule} "
                     f"({spec.warmup_steps}) | {spec.steps} | {data.batch_size} | {data.language_ratio} "
                     f"({data.warmup_steps} steps) |")
    return "\n".join(lines)
