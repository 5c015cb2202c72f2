"""The VL adaptor: vision features -> language-model embeddings.

Paper: "VL adaptor" (section 3.1), a two-layer hybrid MLP. Original code: ``MlpProjector`` in
``projector.py`` (checkpoint ``aligner.*``), chosen by ``projector_type``. transformers:
``DeepseekVLAligner`` (``linear1``, ``linear2``) and ``DeepseekVLHybridAligner``
(``high_res_vision_proj``, ``vision_proj``, ``proj``).

Types (module names match the original checkpoint keys):
- ``identity``: nothing (``layers`` is an Identity);
- ``linear``: one Linear (``layers``);
- ``mlp_gelu`` of depth d: Linear, then (d-1) x [GELU, Linear] (``layers.0``, ``layers.2``, ...);
- ``low_high_hybrid_split_mlp_gelu`` of depth d: SAM tokens -> ``high_up_proj`` -> n/2, SigLIP tokens
  -> ``low_up_proj`` -> n/2, concatenate [high, low] -> n, then (d-1) x [GELU, Linear]
  (``layers.1``, ...). The paper's text says the concatenation is 2048-wide before GELU; the code
  (followed here) projects each branch to n/2 first.

Two more hybrid designs of the paper's adaptor ablation (Table 10, "embedding concat" rows), ours,
not in the original code, for ``ablations/adaptor``:
- ``low_high_shared_mlp_gelu`` ("shared MLP"): concatenate the raw features [high, low] per token
  (SAM's C_high + SigLIP's C_low channels), then one ``mlp_gelu`` over them (``layers``);
- ``low_high_separate_mlp_gelu`` ("separate MLP"): a whole ``mlp_gelu`` of depth d per branch, each to
  n/2 (``high_layers``, ``low_layers``), concatenated [high, low] -> n with no shared layer.
The chosen "hybrid MLP" sits between them: separate first layers, shared later layers.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import DSVLConfig
from .init import linear


def _gelu_linear_stack(width: int, depth: int) -> list[nn.Module]:
    modules: list[nn.Module] = []
    for _ in range(depth - 1):
        modules += [nn.GELU(), linear(width, width)]
    return modules


class Aligner(nn.Module):
    def __init__(self, config: DSVLConfig) -> None:
        super().__init__()
        kind, depth = config.aligner.projector_type, config.aligner.depth
        out_dim = config.llm.hidden_size
        self.projector_type = kind
        if kind == "low_high_hybrid_split_mlp_gelu":
            self.high_up_proj = linear(config.sam.output_channels, out_dim // 2)
            self.low_up_proj = linear(config.siglip.width, out_dim // 2)
            self.layers = nn.Sequential(*_gelu_linear_stack(out_dim, depth))
            return
        if kind == "low_high_shared_mlp_gelu":
            in_dim = config.sam.output_channels + config.siglip.width
            self.layers = nn.Sequential(linear(in_dim, out_dim), *_gelu_linear_stack(out_dim, depth))
            return
        if kind == "low_high_separate_mlp_gelu":
            self.high_layers = nn.Sequential(linear(config.sam.output_channels, out_dim // 2),
                                             *_gelu_linear_stack(out_dim // 2, depth))
            self.low_layers = nn.Sequential(linear(config.siglip.width, out_dim // 2),
                                            *_gelu_linear_stack(out_dim // 2, depth))
            return
        in_dim = config.vision_feature_dim
        if kind == "identity":
            if in_dim != out_dim:
                raise ValueError(f"an identity aligner needs vision width {in_dim} == LLM width {out_dim}")
            self.layers = nn.Identity()
        elif kind == "linear":
            self.layers = linear(in_dim, out_dim)
        else:  # mlp_gelu
            self.layers = nn.Sequential(linear(in_dim, out_dim), *_gelu_linear_stack(out_dim, depth))

    def forward(self, features) -> torch.Tensor:
        """[N, g*g, D] (or the hybrid pair (high, low)) -> [N, g*g, LLM width]."""
        if self.projector_type == "low_high_hybrid_split_mlp_gelu":
            high, low = features
            features = torch.cat([self.high_up_proj(high), self.low_up_proj(low)], dim=-1)  # [N, g*g, n]
        elif self.projector_type == "low_high_shared_mlp_gelu":
            features = torch.cat(features, dim=-1)  # [N, g*g, C_high + C_low]
        elif self.projector_type == "low_high_separate_mlp_gelu":
            high, low = features
            return torch.cat([self.high_layers(high), self.low_layers(low)], dim=-1)  # [N, g*g, n]
        return self.layers(features)
