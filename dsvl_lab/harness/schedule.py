"""The learning-rate schedule of every run: a linear warm-up, then cosine, step or constant.

Foundation recipes use the cosine kind with a floor of 0.1 of the peak; a stage names its kind and
knobs in its ``StageSpec`` (``schedule``, ``min_lr_ratio``, ``step_milestones``, ``step_gamma``).
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import torch

KINDS = ("cosine", "step", "constant")


def lr_factor(step: int, steps: int, warmup_steps: int = 0, kind: str = "cosine", floor: float = 0.1,
              milestones: Sequence[float] = (0.8, 0.9), gamma: float = 0.316) -> float:
    """The learning-rate multiplier at optimizer step ``step`` of a ``steps``-step run.

    Warm-up: ``(step + 1) / warmup_steps`` for the first ``warmup_steps`` steps. Then ``cosine``
    decays from 1 to ``floor`` over the remaining steps, ``step`` multiplies by ``gamma`` at each
    fraction of the run in ``milestones``, and ``constant`` stays at 1.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, steps - warmup_steps))
    # Python floats only: Lightning reloads checkpoints with torch.load(weights_only=True),
    # which refuses numpy scalars in the scheduler's saved state.
    if kind == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if kind == "step":
        return float(gamma ** sum(step >= m * steps for m in milestones))
    return 1.0


def lr_scheduler(optimizer: torch.optim.Optimizer, steps: int, **shape) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler that sets every group's lr to its peak times ``lr_factor`` (stepped once per optimizer step).

    ``shape`` is ``lr_factor``'s keywords (``warmup_steps``, ``kind``, ``floor``, ...).
    """
    # A partial, not a closure: the factor's knobs stay visible when the scheduler is inspected.
    return torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(lr_factor, steps=steps, **shape))
