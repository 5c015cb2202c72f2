"""How many parameters a config describes, counted from its sizes alone: nothing is built.

The ceiling check (:func:`~.checks.check_ceilings`) uses it to refuse an absurd config before a
single tensor is allocated.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for the annotations only: dsvl.py imports this module
    from .dsvl import DSVLConfig


def parameter_counts(config: "DSVLConfig") -> dict[str, int]:
    """Parameters per part (siglip, sam, aligner, llm), from the sizes alone: nothing is built.

    The same numbers as counting ``DSVLModel(config)``'s parameters (tests/test_input_checks.py checks
    it for every preset and aligner), in Python integers, so an absurd config costs no memory.
    """
    def linear(inputs: int, outputs: int, bias: bool = True) -> int:
        return inputs * outputs + (outputs if bias else 0)

    def patch_embed(patch: int, width: int) -> int:
        return 3 * patch * patch * width + width  # a strided conv with bias

    counts = {"siglip": 0, "sam": 0, "aligner": 0, "llm": 0}
    low, high, llm = config.siglip, config.sam, config.llm
    if low is not None:
        w, m = low.width, low.mlp_dim
        block = 2 * 2 * w + linear(w, 3 * w) + linear(w, w) + linear(w, m) + linear(m, w)  # norms, attention, MLP
        counts["siglip"] = patch_embed(low.patch_size, w) + low.grid ** 2 * w + low.depth * block + 2 * w
    if high is not None:
        w, m, c, head_dim = high.width, high.mlp_dim, high.neck_channels, high.width // high.num_heads
        block = 2 * 2 * w + linear(w, 3 * w) + linear(w, w) + linear(w, m) + linear(m, w)
        rel_pos = sum(2 * (2 * (high.grid if i in high.global_attn_indexes else high.window_size) - 1) * head_dim
                      for i in range(high.depth))  # decomposed relative positions, one table per axis
        neck = w * c + 2 * c + 9 * c * c + 2 * c  # conv 1x1, LayerNorm2d, conv 3x3, LayerNorm2d
        downsamples = 9 * c * 2 * c + 9 * 2 * c * 4 * c
        counts["sam"] = (patch_embed(high.patch_size, w) + high.grid ** 2 * w + high.depth * block + rel_pos
                         + 2 * neck + downsamples + 1)  # + the HD branch's scalar alpha
    counts["aligner"] = _aligner_count(config, linear)
    n, head_dim = llm.hidden_size, llm.hidden_size // llm.num_heads
    attention = (linear(n, llm.num_heads * head_dim, False) + 2 * linear(n, llm.num_kv_heads * head_dim, False)
                 + linear(llm.num_heads * head_dim, n, False))
    layer = attention + 3 * linear(n, llm.intermediate_size, False) + 2 * n  # SwiGLU and two RMSNorms
    counts["llm"] = 2 * llm.vocab_size * n + llm.num_layers * layer + n  # embedding, untied head, final norm
    return counts


def _aligner_count(config: "DSVLConfig", linear) -> int:
    """Parameters of the aligner, for each projector type (see ``dsvl_lab/model/aligner.py``)."""
    kind, depth, n = config.aligner.projector_type, config.aligner.depth, config.llm.hidden_size

    def stack(width: int) -> int:  # (depth - 1) x [GELU, Linear]
        return (depth - 1) * linear(width, width)

    low = config.siglip.width if config.siglip is not None else 0
    high = config.sam.output_channels if config.sam is not None else 0
    if kind == "low_high_hybrid_split_mlp_gelu":
        return linear(high, n // 2) + linear(low, n // 2) + stack(n)
    if kind == "low_high_shared_mlp_gelu":
        return linear(high + low, n) + stack(n)
    if kind == "low_high_separate_mlp_gelu":
        return linear(high, n // 2) + linear(low, n // 2) + 2 * stack(n // 2)
    if kind == "identity":
        return 0
    return linear(low or high, n) + (stack(n) if kind == "mlp_gelu" else 0)
