"""What a pretraining run depends on: its recipe, the sizes that have foundation parts, and where they ship.

DeepSeek-VL starts from three pretrained parts (docs/deepseek_vl_facts.md section 2.1): DeepSeek-LLM, SigLIP-L (trained
contrastively on image-text pairs) and SAM-B (trained for segmentation). Stages 1 and 2 keep the
encoders frozen, so the miniatures need pretrained parts of their own. Each part is made by one
Lightning run (``dsvl-lab pretrain lm|siglip|sam``) and shipped as one safetensors file per part
and size under ``data_samples/foundation/<size>/`` with a model card (``<part>.md`` for people,
``<part>.json`` for code: the recipe, wall time, quality figures and checksums).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..config import DSVLConfig
from ..errors import InputError
from ..harness import DEFAULT_PRECISION, adamw_with_schedule, decay_groups

FOUNDATION_DIR = Path(__file__).resolve().parents[2] / "data_samples" / "foundation"
SIZES = ("tiny", "small")
# Part -> the DSVLModel submodule it fills (attribute names follow the original checkpoint).
PARTS = {"lm": "language_model", "siglip": "vision_model.low", "sam": "vision_model.high"}
STORE_DTYPE = torch.bfloat16  # the test re-measures every quality figure from the bf16 files
COSINE_FLOOR = 0.1  # the learning rate ends at a tenth of its peak


class FoundationError(InputError):
    """A missing, altered or mismatched foundation file; the message says how to fix it."""


@dataclass(frozen=True)
class Recipe:
    """Everything a pretraining run depends on. The model card records it whole.

    The schedule is the harness's cosine (``dsvl_lab.harness.lr_factor``): ``warmup_steps`` of linear
    warm-up to ``lr``, then down to ``COSINE_FLOOR`` of it by the last step.
    """

    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    seed: int = 0
    precision: str = DEFAULT_PRECISION  # the harness default: bf16-mixed (docs/miniature_sizing.md)
    val_every: int = 100  # steps between the learning-curve points
    extra: dict[str, Any] = field(default_factory=dict)  # part-specific knobs (pool sizes, seq_len, ...)

    def smoke(self) -> "Recipe":
        """A few steps on small pools: CI proves the command runs, not that it learns."""
        small = {k: min(v, 64) for k, v in self.extra.items() if k.endswith("pool")}
        if "task_samples" in self.extra:
            small["task_samples"] = min(self.extra["task_samples"], 8)
        extra = {**self.extra, **small}
        return replace(self, steps=6, batch_size=min(self.batch_size, 8), warmup_steps=2, val_every=3, extra=extra)

    def optimizer(self, module: torch.nn.Module) -> dict[str, Any]:
        """``configure_optimizers``' answer for a part: AdamW over ``module``'s trainable parameters
        (matrices decay by ``weight_decay``, vectors not) and the warm-up + cosine schedule, per step."""
        groups = decay_groups(module.named_parameters(), self.weight_decay, self.lr)
        return adamw_with_schedule(groups, self.steps, self.betas, warmup_steps=self.warmup_steps, kind="cosine",
                                   floor=COSINE_FLOOR)


def size_of(preset: str | DSVLConfig) -> str:
    """'tiny' or 'small' from a preset name or config; anything else has no foundation weights."""
    name = preset.name if isinstance(preset, DSVLConfig) else preset
    for size in SIZES:
        if name.startswith(f"dsvl-{size}-"):
            return size
    raise FoundationError(f"no foundation weights for preset {name!r}: they exist for the dsvl-tiny-* and "
                          f"dsvl-small-* presets (real sizes load released weights with DSVLModel.from_pretrained)")


def reference_config(size: str) -> DSVLConfig:
    """The hybrid preset of a size: it holds every part (all encoders of one size share their shapes)."""
    return DSVLConfig.from_name(f"dsvl-{size}-hybrid")
