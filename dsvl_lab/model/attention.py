"""Scaled dot-product attention with an opt-in recording path.

Every attention layer of the workbench (SigLIP, SAM, LLaMA) calls :func:`attend`. By default it runs
PyTorch's fused ``scaled_dot_product_attention``; a layer whose ``record_attention`` switch is on
instead computes the softmax explicitly and keeps the weights, so the inspector can show them.
Only the layers asked for pay for the explicit path.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def attend(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    record: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention over ``query, key, value`` of shape [B, heads, T, head_dim].

    ``mask`` is either boolean (True = may attend) or additive (a float bias, e.g. SAM's relative
    positions), broadcastable to [B, heads, Tq, Tk]. Returns (output [B, heads, Tq, head_dim],
    weights [B, heads, Tq, Tk] when ``record`` else None).
    """
    if not record:
        output = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, is_causal=is_causal)
        return output, None
    scores = (query @ key.transpose(-2, -1)) * query.shape[-1] ** -0.5  # [B, heads, Tq, Tk]
    if is_causal:
        tq, tk = scores.shape[-2:]
        causal = torch.ones(tq, tk, dtype=torch.bool, device=scores.device).tril(diagonal=tk - tq)
        scores = scores.masked_fill(~causal, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    weights = torch.softmax(scores.float(), dim=-1).to(query.dtype)
    return weights @ value, weights


class RecordableAttention(nn.Module):
    """Base class holding the per-layer switch and the last recorded weights.

    Set ``layer.record_attention = True`` (or use ``DSVLModel.record_attention(...)``) and, after
    a forward pass, read ``layer.attention_weights``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.record_attention = False
        self.attention_weights: torch.Tensor | None = None

    def _attend(self, query, key, value, mask=None, is_causal=False):
        output, weights = attend(query, key, value, mask, is_causal, record=self.record_attention)
        if self.record_attention:
            self.attention_weights = weights.detach()
        return output
