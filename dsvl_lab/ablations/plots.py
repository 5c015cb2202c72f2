"""Pictures of a study: every seed as a dot, the mean with its 95% interval; learning curves with a band.

Both work from plain rows (``stage, metric, arm, mean, ci_low, ci_high, values``), the rows that
``aggregate`` computes and ``results.csv`` stores, so a notebook draws the same figure from the
committed CSV with no run folders present (:func:`read_results_csv`).
"""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path

from ..atomic import atomic_write

ARM_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")


def read_results_csv(path: str | Path) -> list[dict]:
    """``results.csv`` back into rows (numbers as floats, per-seed values and seeds as lists)."""
    rows = []
    with Path(path).open() as handle:
        for row in csv.DictReader(handle):
            number = lambda text: float(text) if text else math.nan  # noqa: E731
            rows.append({**row, "n": int(row["n"]), "mean": number(row["mean"]), "sd": number(row["sd"]),
                         "ci_low": number(row["ci_low"]), "ci_high": number(row["ci_high"]),
                         "seeds": [int(s) for s in row["seeds"].split(";") if s],
                         "values": [float(v) for v in row["values"].split(";") if v],
                         "diff_mean": number(row["diff_mean"]), "diff_ci_low": number(row["diff_ci_low"]),
                         "diff_ci_high": number(row["diff_ci_high"])})
    return rows


def draw_intervals(ax, rows: list[dict], metrics: list[str], arms: list[str], chance: dict | None = None,
                   labels: list[str] | None = None) -> None:
    """One group of columns per metric, one column per arm: seeds as dots, mean and interval as a bar."""
    width = 0.8 / max(1, len(arms))
    by_key = {(r["metric"], r["arm"]): r for r in rows}
    for a, arm in enumerate(arms):
        color = ARM_COLORS[a % len(ARM_COLORS)]
        for m, metric in enumerate(metrics):
            row = by_key.get((metric, arm))
            if row is None:
                continue
            x = m - 0.4 + width * (a + 0.5)
            jitter = [x + width * 0.25 * ((i % 3) - 1) for i in range(len(row["values"]))]
            ax.scatter(jitter, row["values"], s=14, color=color, alpha=0.55, zorder=2, linewidths=0)
            low, high = row["ci_low"], row["ci_high"]
            if not (math.isnan(low) or math.isnan(high)):
                ax.errorbar([x], [row["mean"]], yerr=[[row["mean"] - low], [high - row["mean"]]], fmt="none",
                            ecolor=color, capsize=3, lw=1.5, zorder=3)
            ax.scatter([x], [row["mean"]], marker="_", s=160, color=color, zorder=4,
                       label=arm if m == 0 or all((mm, arm) not in by_key for mm in metrics[:m]) else None)
        if chance:
            for m, metric in enumerate(metrics):
                if metric in chance:
                    ax.hlines(chance[metric], m - 0.45, m + 0.45, colors="0.6", linestyles=":", lw=1, zorder=1)
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels(labels or metrics, fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def interval_figure(rows: list[dict], stage: str, arms: list[str], chance: dict | None = None, title: str = ""):
    """Coarse and fine option accuracy side by side (when present), language metrics beside them."""
    import matplotlib.pyplot as plt

    stage_rows = [r for r in rows if r["stage"] == stage]
    metrics = list(dict.fromkeys(r["metric"] for r in stage_rows))
    panels = [(detail, [m for m in metrics if m.endswith("/" + detail)]) for detail in ("coarse", "fine")]
    panels = [(name, ms) for name, ms in panels if ms]
    others = [m for m in metrics if not any(m in ms for _, ms in panels)]
    panels += [(m, [m]) for m in others]
    widths = [max(1.2, 0.55 * len(ms) + 0.4) for _, ms in panels]
    figure, axes = plt.subplots(1, len(panels), figsize=(sum(widths) + 1, 3.4),
                                gridspec_kw={"width_ratios": widths}, squeeze=False)
    for ax, (name, ms) in zip(axes[0], panels):
        draw_intervals(ax, stage_rows, ms, arms, chance, labels=[m.split("/")[0] for m in ms])
        ax.set_title(name if name in ("coarse", "fine") else name.replace("_", " "), fontsize=9)
        if name in ("coarse", "fine"):
            ax.set_ylim(0, 1.05)
            ax.set_ylabel("option accuracy" if ax is axes[0][0] else "")
    axes[0][0].legend(fontsize=7, loc="lower left", frameon=False)
    figure.suptitle(title or f"after {stage}: seeds (dots), mean and 95% CI (bars), chance (dotted)", fontsize=9)
    figure.tight_layout()
    return figure


def interval_plots(spec, rows: list[dict], chance: dict, into: Path) -> list[Path]:
    paths = []
    for stage in dict.fromkeys(r["stage"] for r in rows):
        stage_chance = {metric: level for (s, metric), level in chance.items() if s == stage}
        figure = interval_figure(rows, stage, list(spec.arms), stage_chance,
                                 f"{spec.study}, after {stage}: seeds (dots), mean and 95% CI, chance (dotted)")
        paths.append(save_figure(figure, into / f"{stage}-intervals.png"))
    return paths


def curve_plots(spec, results: list[dict], into: Path, smooth: int = 5) -> list[Path]:
    """One figure per ``curves`` entry ``<stage>:<metric>``: mean over seeds per arm, +-1 SD band."""
    import matplotlib.pyplot as plt
    import numpy as np

    paths = []
    for entry in spec.curves:
        stage, _, metric = entry.partition(":")
        # held-out points are few and exact: not smoothed
        window = 1 if metric.startswith(("val/", "lang/")) else smooth
        figure, ax = plt.subplots(figsize=(5.5, 3.4))
        for a, arm in enumerate(spec.arms):
            series = [dict(map(tuple, r["stages"][stage]["curves"].get(metric, [])))
                      for r in results if r["arm"] == arm and stage in r["stages"]]
            series = [s for s in series if s]
            if not series:
                continue
            # Modality-grouped batches log train/loss_vl only on image steps, which differ per seed:
            # each seed's smoothed curve is interpolated onto one grid of steps.
            steps = np.linspace(max(min(s) for s in series), min(max(s) for s in series), 50)
            if window == 1 and all(sorted(s) == sorted(series[0]) for s in series):
                steps = np.array(sorted(series[0]), dtype=float)  # the logged steps themselves
            values = np.array([np.interp(steps, sorted(s), moving_average(np.array([[s[k] for k in sorted(s)]]),
                                                                          window)[0]) for s in series])
            mean, sd = values.mean(0), values.std(0)
            color = ARM_COLORS[a % len(ARM_COLORS)]
            ax.plot(steps, mean, color=color, label=f"{arm} (n={len(series)})")
            ax.fill_between(steps, mean - sd, mean + sd, color=color, alpha=0.2, linewidth=0)
        ax.set_xlabel("step")
        ax.set_ylabel(metric)
        how = f"moving average of {window} logs; " if window > 1 else ""
        ax.set_title(f"{spec.study}: {metric} in {stage} ({how}band +-1 SD over seeds)", fontsize=8)
        ax.legend(fontsize=7, frameon=False)
        ax.grid(alpha=0.3)
        figure.tight_layout()
        paths.append(save_figure(figure, into / f"curve-{stage}-{slug(metric)}.png"))
    return paths


def moving_average(values, window: int):
    """Trailing mean over ``window`` logged points per row (the first points average what exists)."""
    import numpy as np

    if window <= 1 or values.shape[1] == 0:
        return values
    cumulative = np.cumsum(values, axis=1)
    out = np.empty_like(values, dtype=float)
    for i in range(values.shape[1]):
        start = max(0, i - window + 1)
        out[:, i] = (cumulative[:, i] - (cumulative[:, start - 1] if start else 0)) / (i - start + 1)
    return out


def trend_figure(points: list[tuple[float, dict]], x_label: str, metric: str, title: str = "",
                 chance: float | None = None):
    """One metric against an arm setting: every seed a dot, the arm's mean with its 95% interval, means joined.

    ``points``: (x, row) per arm, ``row`` as in ``results.csv`` (mean, ci_low, ci_high, values).
    """
    import matplotlib.pyplot as plt

    points = sorted(points, key=lambda p: p[0])
    figure, ax = plt.subplots(figsize=(5.0, 3.2))
    xs = [x for x, _ in points]
    for x, row in points:
        ax.scatter([x] * len(row["values"]), row["values"], s=12, color=ARM_COLORS[0], alpha=0.45, linewidths=0)
        if not (math.isnan(row["ci_low"]) or math.isnan(row["ci_high"])):
            ax.errorbar([x], [row["mean"]], yerr=[[row["mean"] - row["ci_low"]], [row["ci_high"] - row["mean"]]],
                        fmt="none", ecolor=ARM_COLORS[0], capsize=3, lw=1.2)
    ax.plot(xs, [row["mean"] for _, row in points], color=ARM_COLORS[0], marker="_", markersize=12)
    if chance is not None:
        ax.axhline(chance, color="0.6", ls=":", lw=1)
    ax.set_xlabel(x_label)
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric}: seeds (dots), mean and 95% CI", fontsize=8)
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def trend_plots(spec, rows: list[dict], chance: dict, into: Path) -> list[Path]:
    """``trend-<metric>.png`` per ``trends`` entry: the metric of each arm against the arm's setting."""
    paths = []
    for trend in spec.trends:
        found = [r for r in rows if r["metric"] == trend.metric and (not trend.stage or r["stage"] == trend.stage)]
        if not found:
            continue
        stage = found[-1]["stage"]
        points = [(arm_setting(spec, r["arm"], trend.x), r) for r in found if r["stage"] == stage]
        name = trend.x.rsplit(".", 1)[-1]
        figure = trend_figure(points, name, trend.metric, f"{spec.study}, after {stage}: {trend.metric} against "
                              f"{name} (seeds, mean, 95% CI)", chance.get((stage, trend.metric)))
        paths.append(save_figure(figure, into / f"trend-{slug(trend.metric)}.png"))
    return paths


def arm_setting(spec, arm: str, key: str) -> float:
    """The value an arm gives an override key (the arm's own, else the base's): a trend's x position.

    Here rather than in ``aggregate`` because both need it and ``aggregate`` imports this module:
    the figures sit below the tables, so the tables' module is free to import them and not the reverse.
    """
    return float(spec.arm_value(arm, key))


def save_figure(figure, path: Path) -> Path:
    """PNG without a timestamp or software version, so the same data gives the same bytes."""
    import matplotlib.pyplot as plt

    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight",
                                                  metadata={"Software": None}))
    plt.close(figure)
    return path


def slug(metric: str) -> str:
    """A metric's name as a file name part: ``mean/fine`` -> ``mean_fine``, spaces too."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", metric).strip("_")
