"""The parts of a model's config: the two vision towers, the aligner and the LLM, one dataclass each.

Their defaults are the released 1.3B model's (``docs/deepseek_vl_facts.md`` sections 2.2-2.5).
A :class:`~.dsvl.DSVLConfig` holds one of each (a tower the encoder does not use is None).
"""
from __future__ import annotations

from dataclasses import dataclass

# Normalisation statistics the original towers apply to their own [0, 1] input (docs/deepseek_vl_facts.md 2.3, 2.4).
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

ENCODERS = ("siglip", "sam", "hybrid")
PROJECTOR_TYPES = ("identity", "linear", "mlp_gelu", "low_high_hybrid_split_mlp_gelu",
                   "low_high_shared_mlp_gelu", "low_high_separate_mlp_gelu")
# The aligners that take the hybrid tower's (high, low) pair; the first is the release's (paper Table 10:
# "embedding concat, hybrid MLP"); the others are the table's "shared MLP" and "separate MLP" designs.
HYBRID_PROJECTOR_TYPES = ("low_high_hybrid_split_mlp_gelu", "low_high_shared_mlp_gelu", "low_high_separate_mlp_gelu")

# Special tokens of the real DeepSeek tokenizer (docs/deepseek_vl_facts.md 2.2, 2.7).
BOS_TOKEN = "<｜begin▁of▁sentence｜>"
EOS_TOKEN = "<｜end▁of▁sentence｜>"
IMAGE_TOKEN = "<image_placeholder>"
PAD_TOKEN = "<pad>"


@dataclass
class SigLIPConfig:
    """The low-resolution semantic tower (SigLIP-L/16 @ 384 in the release)."""

    image_size: int = 384
    patch_size: int = 16
    width: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_dim: int = 4096
    layer_norm_eps: float = 1e-6
    pixel_mean: tuple[float, float, float] = SIGLIP_MEAN
    pixel_std: tuple[float, float, float] = SIGLIP_STD

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


@dataclass
class SAMConfig:
    """The high-resolution detail tower (SAM-B ViTDet encoder @ 1024 in the release)."""

    image_size: int = 1024
    patch_size: int = 16
    width: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    neck_channels: int = 256
    layer_norm_eps: float = 1e-6
    pixel_mean: tuple[float, float, float] = CLIP_MEAN
    pixel_std: tuple[float, float, float] = CLIP_STD

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def output_channels(self) -> int:
        """Channels after the two stride-2 convs: neck C -> 2C -> 4C (1024 in the release)."""
        return 4 * self.neck_channels


@dataclass
class AlignerConfig:
    """The VL adaptor ("aligner" in the code, MlpProjector in the original)."""

    projector_type: str = "mlp_gelu"
    depth: int = 2


@dataclass
class LLMConfig:
    """LLaMA-architecture language model (DeepSeek-LLM in the release)."""

    vocab_size: int = 102400
    hidden_size: int = 2048
    intermediate_size: int = 5632
    num_layers: int = 24
    num_heads: int = 16
    num_kv_heads: int = 16
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_position_embeddings: int = 16384

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


# The nested sections of a DSVLConfig, in the order they are checked.
SECTIONS = {"siglip": SigLIPConfig, "sam": SAMConfig, "aligner": AlignerConfig, "llm": LLMConfig}
