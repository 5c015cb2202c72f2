"""Weight initialisation, written out: what every layer of the model starts from, and why.

The released DeepSeek-VL never initialises anything from scratch: its LLM, SigLIP and SAM come from
pretrained checkpoints, and only the aligner (the "vision-language adaptor") is new in stage 1; the
original code builds it with ``nn.Linear`` and keeps PyTorch's defaults. Our miniatures start every
part from random weights (notebook 01) or from the shipped foundation parts, so the starting point is
part of what a student should be able to read. We keep exactly PyTorch's defaults, which earlier
versions of this workbench applied silently, so every seeded run and shipped checksum stays the same;
the layers below are built with ``skip_init`` (no random draw) and then initialised here, drawing the
same numbers in the same order as the defaults would.

| layer | rule | from |
|---|---|---|
| ``Linear`` weight | U(-b, b), b = 1/sqrt(fan_in) (He-uniform with a = sqrt(5)) | ``nn.Linear.reset_parameters`` |
| ``Linear`` / ``Conv2d`` bias | U(-b, b), b = 1/sqrt(fan_in) | same |
| ``Conv2d`` weight | as ``Linear``, fan_in = in_channels x kernel area | ``nn.Conv2d.reset_parameters`` |
| ``Embedding`` | N(0, 1) | ``nn.Embedding.reset_parameters`` |
| norms (``LayerNorm``, ``RMSNorm``, SAM's ``LayerNorm2d``) | weight 1, bias 0 | written in their constructors |
| SigLIP position table | N(0, 0.02^2) | ours (timm's ViT uses a truncated normal of the same std) |
| SAM position table, relative positions, ``hd_alpha_downsamples`` | 0 | as SAM's and the original's constructors |

Why not a "better" initialisation (e.g. GPT-2's N(0, 0.02) with scaled residual projections, or
LLaMA's)? It would change every seeded number in the workbench; that is a separate, measured
decision, not a side effect of making the rule visible. Note that N(0, 1) embeddings are large next to
the hidden states of a pre-norm transformer; the first RMSNorm rescales them.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import skip_init

# nn.Linear's default: kaiming_uniform_ with a = sqrt(5). The gain sqrt(2 / (1 + a^2)) = sqrt(1/3)
# makes the bound sqrt(3) * gain / sqrt(fan_in) = 1 / sqrt(fan_in): written PyTorch's way so the
# floating-point bound, and so every drawn number, is bit-identical to the default.
DEFAULT_A = math.sqrt(5)


def here() -> torch.device:
    """The device layers are built on now: ``skip_init`` would otherwise allocate real CPU memory even
    inside ``with torch.device("meta")``, where the released 7B is built to count its parameters."""
    return torch.get_default_device()


def fan_in_bound(weight: torch.Tensor) -> float:
    """1/sqrt(fan_in), computed as ``nn.init.kaiming_uniform_(a=sqrt(5))`` computes it."""
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(weight)
    std = nn.init.calculate_gain("leaky_relu", DEFAULT_A) / math.sqrt(fan_in)
    return math.sqrt(3.0) * std


@torch.no_grad()
def init_fan_in_uniform(layer: nn.Linear | nn.Conv2d) -> None:
    """Weight U(-1/sqrt(fan_in), 1/sqrt(fan_in)); bias the same bound (PyTorch's Linear / Conv2d default)."""
    bound = fan_in_bound(layer.weight)
    layer.weight.uniform_(-bound, bound)
    if layer.bias is not None:
        fan_in, _ = nn.init._calculate_fan_in_and_fan_out(layer.weight)
        bias_bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0  # PyTorch writes this bound directly
        layer.bias.uniform_(-bias_bound, bias_bound)


def linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    """``nn.Linear`` with its initialisation written out (:func:`init_fan_in_uniform`)."""
    layer = skip_init(nn.Linear, in_features, out_features, bias=bias, device=here())
    init_fan_in_uniform(layer)
    return layer


def conv2d(in_channels: int, out_channels: int, kernel_size: int, **options) -> nn.Conv2d:
    """``nn.Conv2d`` with its initialisation written out (:func:`init_fan_in_uniform`)."""
    layer = skip_init(nn.Conv2d, in_channels, out_channels, kernel_size, device=here(), **options)
    init_fan_in_uniform(layer)
    return layer


def embedding(num_embeddings: int, dim: int) -> nn.Embedding:
    """``nn.Embedding`` from N(0, 1), PyTorch's default (no padding row is zeroed: the original has none)."""
    layer = skip_init(nn.Embedding, num_embeddings, dim, device=here())
    with torch.no_grad():
        layer.weight.normal_(0.0, 1.0)
    return layer


def position_table(*shape: int, std: float) -> nn.Parameter:
    """A learned position table: N(0, std^2), or zeros when ``std`` is 0 (SAM's, as its constructor)."""
    return nn.Parameter(torch.randn(*shape) * std if std else torch.zeros(*shape))
