"""The stage data and its modality mixing: language share, modality warm-up and grouping (notebooks 02, 08).

* :func:`stage_data_table`: the stage data presets as a markdown table.
* :func:`measured_language_share`, :func:`plot_warmup`: the modality warm-up, as scheduled and as drawn.
* :func:`modality_grid`, :func:`plot_modality_strips`: which samples of which steps are language-only,
  grouped by modality or mixed.
"""
from __future__ import annotations

from typing import Any

import numpy as np

MODALITY_COLORS = {"text": "#4c72b0", "image": "#e1812c"}  # blue = language-only, orange = image + text


# ============================================================================ stage data
def stage_data_table(presets: dict[str, Any]) -> str:
    """The stage data presets (``STAGE_DATA_PRESETS``) as a markdown table, one row per stage."""
    header = ("| stage | language share | warm-up | grouped by modality | image formats | text format "
              "| fine share | families | seq len x batch |\n|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name, data in presets.items():
        warmup = "none" if not data.warmup_steps or data.warmup_kind == "none" else \
            f"{data.warmup_kind}, {data.warmup_steps} steps" + \
            (f" ({data.warmup_stairs} stairs)" if data.warmup_kind == "step" else "")
        formats = ", ".join(f"{k} {v:.0%}" for k, v in data.image_formats.items())
        text = "-" if data.language_ratio == 0 and data.warmup_steps == 0 else data.text_format
        rows.append(f"| `{name}` | {data.language_ratio:g} | {warmup} | {'yes' if data.group_by_modality else 'no'} "
                    f"| {formats} | {text} | {data.fine_share:g} | {len(data.families)} "
                    f"| {data.seq_len} x {data.batch_size} |")
    return "\n".join([header, *rows])


# ============================================================================ mixing
def measured_language_share(plan, draws: int, window: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """The share of text draws of ``plan`` in consecutive windows of ``window`` draws.

    Returns (window centres in draws, shares); a last partial window is dropped.
    """
    flags = np.array([plan.is_text(d) for d in range(draws - draws % window)], dtype=np.float64)
    shares = flags.reshape(-1, window).mean(axis=1)
    centres = np.arange(len(shares)) * window + (window - 1) / 2
    return centres, shares


def plot_warmup(plans: dict[str, Any], steps: int, window: int = 50):
    """The scheduled language share per step (lines) and each plan's measured share (dots).

    ``plans`` maps a label to a :class:`~dsvl_lab.data.mixing.ModalityPlan`; each plan's schedule is
    drawn as a line and its draws, counted in windows of ``window``, as dots at the window centre
    (converted to steps when a draw is one sample rather than one batch).
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    x = np.arange(steps)
    for index, (label, plan) in enumerate(plans.items()):
        color = f"C{index}"
        ax.plot(x, [plan.schedule(s) for s in x], color=color, lw=1.6, label=f"{label}: schedule")
        centres, shares = measured_language_share(plan, steps * plan.draws_per_step, window)
        ax.plot(centres / plan.draws_per_step, shares, "os^v"[index % 4], color=color, ms=5,
                mfc="none" if index else color,
                label=f"{label}: measured, windows of {window} draws")
    target = next(iter(plans.values())).schedule.target
    ax.axhline(target, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel("training step")
    ax.set_ylabel("language-only share")
    ax.set_ylim(min(target, 0.5) - 0.05, 1.05)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False, fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def modality_grid(plan, steps: int, batch_size: int) -> np.ndarray:
    """[steps, batch_size] booleans: True where the sample of that step and slot is language-only."""
    return np.array([[m == "text" for m in plan.step_modalities(s, batch_size)] for s in range(steps)])


def plot_modality_strips(grids: dict[str, np.ndarray], panel_width: float = 3.2):
    """Side-by-side strips of :func:`modality_grid`: rows = steps, columns = samples, colour = modality."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    steps = max(g.shape[0] for g in grids.values())
    fig, axes = plt.subplots(1, len(grids), figsize=(panel_width * len(grids), 0.085 * steps + 1.3), squeeze=False)
    cmap = ListedColormap([MODALITY_COLORS["image"], MODALITY_COLORS["text"]])
    for ax, (title, grid) in zip(axes[0], grids.items()):
        ax.imshow(grid.astype(int), cmap=cmap, vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        ax.set_title(f"{title}\ntext share {grid.mean():.2f}", fontsize=9)
        ax.set_xlabel("sample in the batch")
        ax.set_ylabel("step")
        ax.set_xticks(range(0, grid.shape[1], 4))
    handles = [Patch(color=MODALITY_COLORS["text"], label="language-only"),
               Patch(color=MODALITY_COLORS["image"], label="image + text")]
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False, fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig
