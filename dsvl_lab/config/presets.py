"""The preset sizes: micro, tiny, small and the released 1.3b and 7b, each a set of tower and LLM sections.

Sizes and encoder choice are separate axes: :mod:`.dsvl` builds every size with the SigLIP tower
alone (``-siglip``), the SAM tower alone (``-sam``) or both (``-hybrid``) and names the two released
layouts ``dsvl-1.3b`` (SigLIP only) and ``dsvl-7b`` (hybrid).
"""
from __future__ import annotations

from .sections import LLMConfig, SAMConfig, SigLIPConfig

# Miniatures share one tokenizer (data_samples/tokenizer): its special tokens sit at ids 0-3.
MINI_TOKENS = dict(bos_token_id=0, eos_token_id=1, pad_token_id=2, image_token_id=3)
MINI_VOCAB = 4096

# size -> (SigLIP tower, SAM tower, LLM, token grid, extra DSVLConfig fields)
_SIZES: dict[str, tuple[SigLIPConfig, SAMConfig, LLMConfig, int, dict]] = {
    # Released 1.3B / 7B (docs/deepseek_vl_facts.md sections 2.2-2.4; the 1.3B LLM numbers are inferred there, 2.2).
    "1.3b": (
        SigLIPConfig(),
        SAMConfig(),
        LLMConfig(hidden_size=2048, intermediate_size=5632, num_layers=24, num_heads=16, num_kv_heads=16),
        24,
        {},
    ),
    "7b": (
        SigLIPConfig(),
        SAMConfig(),
        LLMConfig(hidden_size=4096, intermediate_size=11008, num_layers=30, num_heads=32, num_kv_heads=32),
        24,
        {},
    ),
    # micro: unit tests. The SAM grid (8x8) does not divide into windows of 3, so the padding path of
    # windowed attention runs, as it does at full size (64x64 grid padded to 70x70 for windows of 14).
    "micro": (
        SigLIPConfig(image_size=32, patch_size=8, width=32, depth=2, num_heads=2, mlp_dim=64),
        SAMConfig(image_size=64, patch_size=8, width=32, depth=4, num_heads=2, mlp_dim=64, window_size=3,
                  global_attn_indexes=(1, 3), neck_channels=16),
        LLMConfig(vocab_size=MINI_VOCAB, hidden_size=64, intermediate_size=176, num_layers=2, num_heads=4,
                  num_kv_heads=4, max_position_embeddings=512),
        4,
        MINI_TOKENS,
    ),
    # tiny: notebooks. Sizes follow docs/miniature_sizing.md: SAM at 256 px / patch 16 keeps its
    # token grid at 16x16 so its global attention stays cheap; SigLIP sees the 64 px view (8x8 = 64 tokens).
    "tiny": (
        SigLIPConfig(image_size=64, patch_size=8, width=128, depth=4, num_heads=4, mlp_dim=512),
        SAMConfig(image_size=256, patch_size=16, width=96, depth=4, num_heads=4, mlp_dim=384, window_size=6,
                  global_attn_indexes=(1, 3), neck_channels=64),
        LLMConfig(vocab_size=MINI_VOCAB, hidden_size=128, intermediate_size=352, num_layers=4, num_heads=4,
                  num_kv_heads=4, max_position_embeddings=1024),
        8,
        MINI_TOKENS,
    ),
    # small: the larger proxy for 1.3B -> 7B questions, same structure, about 3x the tiny parameters.
    "small": (
        SigLIPConfig(image_size=96, patch_size=8, width=192, depth=4, num_heads=6, mlp_dim=768),
        SAMConfig(image_size=384, patch_size=16, width=128, depth=6, num_heads=4, mlp_dim=512, window_size=7,
                  global_attn_indexes=(2, 5), neck_channels=96),
        LLMConfig(vocab_size=MINI_VOCAB, hidden_size=256, intermediate_size=704, num_layers=8, num_heads=8,
                  num_kv_heads=8, max_position_embeddings=2048),
        12,
        MINI_TOKENS,
    ),
}


# The released layouts keep their plain names; the swapped-encoder variants carry a suffix.
RELEASED_NAMES = {("1.3b", "siglip"): "dsvl-1.3b", ("7b", "hybrid"): "dsvl-7b"}
