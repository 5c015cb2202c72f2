"""Parameter counts of a model per component, and the plain-text tables that show them.

Everything here works on the meta device (shapes and counts, no memory for weights), so even the
released 7B is summarised in about a second. ``dsvl-lab presets`` and ``dsvl-lab info`` print these
numbers, and :func:`dsvl_lab.inspection.parameters.param_breakdown` (notebook 01) counts with
:func:`param_breakdown`, so the notebook and the command always agree.
"""
from __future__ import annotations

import torch

from ..config import DSVLConfig
from ..model import DSVLModel


def millions(n: int) -> str:
    """Millions with two decimals; '-' for a component the model does not have."""
    return f"{n / 1e6:,.2f}" if n else "-"


def param_breakdown(model) -> dict[str, int]:
    """Parameters per component: the two towers, the aligner and the language model."""
    parts = {
        "vision_model.low": getattr(model.vision_model, "low", None),
        "vision_model.high": getattr(model.vision_model, "high", None),
        "aligner": model.aligner,
        "language_model": model.language_model,
    }
    return {name: sum(p.numel() for p in module.parameters()) if module is not None else 0
            for name, module in parts.items()}


def meta_model(config: DSVLConfig) -> DSVLModel:
    """Build the model on the meta device: shapes and counts only, no memory for weights."""
    with torch.device("meta"):
        return DSVLModel(config)


def image_size_label(config: DSVLConfig) -> str:
    """'1024/384' for the hybrid (high/low view), else the single tower's size."""
    if config.encoder == "hybrid":
        return f"{config.sam.image_size}/{config.siglip.image_size}"
    return str(config.image_size)


def summarize(config: DSVLConfig) -> dict:
    """The numbers ``dsvl-lab presets`` and ``dsvl-lab info`` show for one config."""
    model = meta_model(config)
    return {
        "name": config.name,
        "encoder": config.encoder,
        "image_size": config.image_size,
        "image_size_label": image_size_label(config),
        "tokens_per_image": config.num_image_tokens,
        "llm_layers": config.llm.num_layers,
        "llm_width": config.llm.hidden_size,
        "params": model.num_params(),
        "params_by_component": param_breakdown(model),
    }


def print_table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> None:
    """A plain-text table; columns whose index is in ``right`` are right-aligned (numbers)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells):
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    print(line(headers))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))
