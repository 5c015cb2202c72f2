"""AdamW parameter groups and the optimizer answer of ``configure_optimizers``, for every run.

Weight decay pulls weights towards zero; it is meant for matrices (linear and convolution weights,
embeddings). Norm scales, biases and other vectors keep none: decaying a LayerNorm gain towards zero
shrinks the activations it exists to scale. So each component's trainable parameters become two
groups, ``matrices`` (the run's weight decay) and ``vectors`` (none), and a frozen tensor never
enters the optimizer.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from .schedule import lr_scheduler

MATRICES, VECTORS = "matrices", "vectors"


def decay_groups(named_parameters: Iterable[tuple[str, nn.Parameter]], weight_decay: float, lr: float,
                 name: str | None = None) -> list[dict[str, Any]]:
    """The trainable parameters as AdamW groups: matrices (``weight_decay``), then vectors (0); empty ones left out.

    ``name`` (a component, e.g. ``language_model``) names the groups ``<name>/matrices`` and
    ``<name>/vectors``, for logs and tests; without it they stay unnamed.
    """
    trainable = [param for _, param in named_parameters if param.requires_grad]
    groups = []
    for kind, decay in ((MATRICES, weight_decay), (VECTORS, 0.0)):
        chosen = [param for param in trainable if (param.ndim >= 2) == (kind == MATRICES)]
        if chosen:
            groups.append({"params": chosen, "lr": lr, "weight_decay": decay,
                           **({"name": f"{name}/{kind}"} if name else {})})
    return groups


def adamw_with_schedule(groups: list[dict[str, Any]], steps: int, betas: tuple[float, float], eps: float = 1e-8,
                        **shape) -> dict[str, Any]:
    """What ``configure_optimizers`` returns: AdamW over ``groups`` and the schedule, stepped every batch.

    ``shape`` is the schedule's (``warmup_steps``, ``kind``, ``floor``, ...: see ``lr_factor``);
    each group's ``lr`` is its peak.
    """
    optimizer = torch.optim.AdamW(groups, betas=betas, eps=eps)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": lr_scheduler(optimizer, steps, **shape),
                                                     "interval": "step"}}
