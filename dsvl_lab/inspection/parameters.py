"""Parameters per component of a preset, and their bar chart (notebook 01).

The counting is :func:`dsvl_lab.inspection.model_tables.param_breakdown` on a model built on the
meta device (:func:`~dsvl_lab.inspection.model_tables.meta_model`), the numbers ``dsvl-lab presets``
prints, so the notebook and the command always agree. Here: a preset by name, and the figure.
"""
from __future__ import annotations

from ..config import DSVLConfig
from . import model_tables

COMPONENTS = ("vision_model.low", "vision_model.high", "aligner", "language_model")
COMPONENT_LABELS = {"vision_model.low": "SigLIP (low)", "vision_model.high": "SAM (high)",
                    "aligner": "aligner", "language_model": "LLM"}


def param_breakdown(name_or_config: str | DSVLConfig) -> dict[str, int]:
    """Parameters per component of a preset, counted on the meta device (0 for a missing tower).

    Keys: ``vision_model.low`` (SigLIP), ``vision_model.high`` (SAM), ``aligner``, ``language_model``;
    the same numbers ``dsvl-lab presets`` prints.
    """
    config = name_or_config if isinstance(name_or_config, DSVLConfig) else DSVLConfig.from_name(name_or_config)
    return model_tables.param_breakdown(model_tables.meta_model(config))


def plot_param_breakdown(breakdowns: dict[str, dict[str, int]], log: bool = True):
    """Grouped bars: one group per component, one bar per preset, labelled in millions.

    A log axis (default) keeps the 6M aligner visible beside the 7B LLM.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 3.6))
    x = np.arange(len(COMPONENTS))
    width = 0.8 / len(breakdowns)
    for i, (preset, parts) in enumerate(breakdowns.items()):
        values = [parts[c] / 1e6 for c in COMPONENTS]
        bars = ax.bar(x + (i - (len(breakdowns) - 1) / 2) * width, [v or np.nan for v in values], width,
                      label=f"{preset} ({sum(parts.values()) / 1e9:.2f}B)")
        for bar, value in zip(bars, values):
            text = "none" if not value else (f"{value:,.0f}M" if value >= 10 else f"{value:.1f}M")
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, value if value else 1),
                        ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(x, [COMPONENT_LABELS[c] for c in COMPONENTS])
    if log:
        ax.set_yscale("log")
        ax.set_ylim(1, None)
    ax.set_ylabel("parameters (millions" + (", log)" if log else ")"))
    ax.legend(frameon=False, loc="upper left")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig
