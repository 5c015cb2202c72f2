"""Configuration dataclasses and the preset table.

Sizes and encoder choice are separate axes: every size (micro, tiny, small, 1.3b, 7b) can be built
with the SigLIP tower alone (``-siglip``), the SAM tower alone (``-sam``) or both (``-hybrid``).
The released models are ``dsvl-1.3b`` (SigLIP only) and ``dsvl-7b`` (hybrid); the shapes come from
``shared/design/deepseek_vl_facts.md`` sections 2.2-2.5.

    >>> from dsvl_lab.config import DSVLConfig
    >>> cfg = DSVLConfig.from_name("dsvl-tiny-hybrid")
    >>> cfg.num_image_tokens
    64
    >>> DSVLConfig.from_name("dsvl-7b").llm.num_layers
    30
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Normalisation statistics the original towers apply to their own [0, 1] input (facts 2.3, 2.4).
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

# Special tokens of the real DeepSeek tokenizer (facts 2.2, 2.7).
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


@dataclass
class DSVLConfig:
    """Everything needed to build a :class:`dsvl_lab.model.DSVLModel`.

    ``pixel_input`` says what the vision tower receives:
    - ``"raw"`` (presets): [0, 1] images; each tower normalises its own input and the hybrid tower
      derives the low-res view inside the model, exactly as the original DeepSeek-VL code does.
    - ``"normalized"`` (models made by ``convert.from_hf``): the transformers convention, already
      normalised pixel values, with the low-res view passed separately as ``pixel_values`` and the
      high-res view as ``high_res_pixel_values``.
    """

    name: str = "custom"
    encoder: str = "siglip"
    token_grid: int = 24
    siglip: SigLIPConfig | None = field(default_factory=SigLIPConfig)
    sam: SAMConfig | None = None
    aligner: AlignerConfig = field(default_factory=AlignerConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    pixel_input: str = "raw"
    bos_token_id: int = 100000
    eos_token_id: int = 100001
    pad_token_id: int = 100001  # the original pads with EOS when the tokenizer has no pad token
    image_token_id: int = 100015  # UNVERIFIED in the facts sheet (inferred from HF default)
    max_image_pixels: int = 64_000_000

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ derived quantities
    @property
    def num_image_tokens(self) -> int:
        """Tokens per image, g*g for every encoder choice (576 in the release)."""
        return self.token_grid * self.token_grid

    @property
    def image_size(self) -> int:
        """Side of the square image the processor produces (the high-res size when SAM is used)."""
        return self.sam.image_size if self.sam is not None else self.siglip.image_size

    @property
    def processor_mean(self) -> tuple[float, float, float]:
        """Mean of the tower that sees the processed image; the padding colour derives from it."""
        return self.sam.pixel_mean if self.sam is not None else self.siglip.pixel_mean

    @property
    def vision_feature_dim(self) -> int:
        """Width of the vision features entering a single-branch aligner."""
        if self.encoder == "siglip":
            return self.siglip.width
        if self.encoder == "sam":
            return self.sam.output_channels
        raise ValueError("the hybrid aligner takes two feature widths, see siglip.width and sam.output_channels")

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.pixel_input not in ("raw", "normalized"):
            raise ValueError(f"pixel_input must be 'raw' or 'normalized', got {self.pixel_input!r}")
        if self.aligner.projector_type not in PROJECTOR_TYPES:
            raise ValueError(f"aligner.projector_type must be one of {PROJECTOR_TYPES}, got {self.aligner.projector_type!r}")
        needs_siglip = self.encoder in ("siglip", "hybrid")
        needs_sam = self.encoder in ("sam", "hybrid")
        if needs_siglip != (self.siglip is not None) or needs_sam != (self.sam is not None):
            raise ValueError(
                f"encoder={self.encoder!r} needs siglip={'set' if needs_siglip else 'None'} and "
                f"sam={'set' if needs_sam else 'None'}; fix the towers or the encoder name"
            )
        if self.siglip is not None and self.siglip.grid != self.token_grid:
            raise ValueError(
                f"SigLIP gives a {self.siglip.grid}x{self.siglip.grid} token grid "
                f"(image_size {self.siglip.image_size} / patch {self.siglip.patch_size}) but token_grid is "
                f"{self.token_grid}; make them equal"
            )
        if self.sam is not None:
            if self.sam.image_size % self.sam.patch_size:
                raise ValueError("sam.image_size must be a multiple of sam.patch_size")
            bad = [i for i in self.sam.global_attn_indexes if not 0 <= i < self.sam.depth]
            if bad:
                raise ValueError(f"sam.global_attn_indexes {bad} are outside 0..{self.sam.depth - 1}")
            if not self.sam.global_attn_indexes:
                raise ValueError("sam.global_attn_indexes must name at least one block (the HD branch reads the first)")
        if self.encoder == "hybrid" and self.aligner.projector_type not in HYBRID_PROJECTOR_TYPES:
            raise ValueError(f"the hybrid encoder needs an aligner.projector_type of {HYBRID_PROJECTOR_TYPES}")
        if self.encoder != "hybrid" and self.aligner.projector_type in HYBRID_PROJECTOR_TYPES:
            raise ValueError(f"aligner.projector_type {self.aligner.projector_type!r} needs encoder='hybrid'")
        if self.encoder == "hybrid" and self.llm.hidden_size % 2:
            raise ValueError("the hybrid split aligner needs an even LLM hidden size")
        if self.llm.hidden_size % self.llm.num_heads or self.llm.num_heads % self.llm.num_kv_heads:
            raise ValueError("llm.hidden_size must divide into num_heads, and num_heads into num_kv_heads")
        if self.llm.head_dim % 2:
            raise ValueError("RoPE needs an even llm head_dim")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DSVLConfig":
        data = copy.deepcopy(dict(data))  # never change the caller's nested dicts
        siglip = data.pop("siglip", None)
        sam = data.pop("sam", None)
        aligner = data.pop("aligner", {})
        llm = data.pop("llm", {})
        if sam is not None and "global_attn_indexes" in sam:
            sam = {**sam, "global_attn_indexes": tuple(sam["global_attn_indexes"])}
        for tower in (siglip, sam):
            if tower is not None:
                for key in ("pixel_mean", "pixel_std"):
                    if key in tower:
                        tower[key] = tuple(tower[key])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown DSVLConfig fields {unknown}; known fields are {sorted(known)}")
        return cls(
            siglip=SigLIPConfig(**siglip) if siglip is not None else None,
            sam=SAMConfig(**sam) if sam is not None else None,
            aligner=AlignerConfig(**aligner),
            llm=LLMConfig(**llm),
            **data,
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "DSVLConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def replace(self, **overrides: Any) -> "DSVLConfig":
        """A copy with fields overridden; nested fields use ``"llm.num_layers"`` style keys."""
        data = copy.deepcopy(self.to_dict())
        for key, value in overrides.items():
            target = data
            *parents, leaf = key.replace("__", ".").split(".")
            for parent in parents:
                if target.get(parent) is None:
                    raise ValueError(f"cannot override {key!r}: {parent!r} is not set in this config"
                                     f"{did_you_mean(parent, target)}")
                target = target[parent]
            if leaf not in target:
                raise ValueError(f"cannot override {key!r}: no field {leaf!r}{did_you_mean(leaf, target)}; "
                                 f"fields are {sorted(target)}")
            target[leaf] = value
        return DSVLConfig.from_dict(data)

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> "DSVLConfig":
        """Build a preset by name, e.g. ``DSVLConfig.from_name("dsvl-tiny-hybrid", **{"llm.num_layers": 2})``.

        ``name`` may carry overrides of its own, as a *preset variant*
        (``dsvl-tiny-hybrid[aligner.projector_type=low_high_shared_mlp_gelu]``, see
        :func:`variant_name`): the one string then names the config everywhere a preset name travels
        (stage hand-off cards, sweep runs, checkpoints).
        """
        base, variant = parse_variant(name)
        if base not in PRESETS:
            raise ValueError(f"unknown preset {base!r}; available presets: {', '.join(sorted(PRESETS))}")
        config = PRESETS[base]()
        if variant:
            config = dataclasses.replace(config.replace(**variant), name=name)
        return config.replace(**overrides) if overrides else config


def did_you_mean(word: str, options) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``options``, or nothing."""
    import difflib

    close = difflib.get_close_matches(word, [str(o) for o in options], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---------------------------------------------------------------------------------------- preset variants
def variant_name(preset: str, overrides: dict[str, Any]) -> str:
    """``preset`` with config overrides, as one name: ``dsvl-tiny-hybrid[aligner.depth=3]``.

    Keys are sorted, so the same overrides always give the same name. Values are written as JSON
    (strings unquoted when they are plain words) and read back with YAML's rules.
    """
    if not overrides:
        return preset
    base, earlier = parse_variant(preset)
    merged = {**earlier, **overrides}
    parts = [f"{key}={_variant_value(value)}" for key, value in sorted(merged.items())]
    return f"{base}[{','.join(parts)}]"


def _variant_value(value: Any) -> str:
    text = json.dumps(value)
    return value if isinstance(value, str) and value.replace("_", "").replace("-", "").isalnum() else text


def parse_variant(name: str) -> tuple[str, dict[str, Any]]:
    """``"dsvl-tiny-hybrid[aligner.depth=3]"`` -> ``("dsvl-tiny-hybrid", {"aligner.depth": 3})``."""
    import yaml

    if "[" not in name:
        return name, {}
    if not name.endswith("]"):
        raise ValueError(f"preset variant {name!r} must end with ']': write name[key=value,key=value]")
    base, _, inner = name[:-1].partition("[")
    overrides: dict[str, Any] = {}
    for item in filter(None, inner.split(",")):
        key, equals, value = item.partition("=")
        if not equals:
            raise ValueError(f"preset variant {name!r}: {item!r} is not key=value")
        overrides[key.strip()] = yaml.safe_load(value)
    return base, overrides


# ---------------------------------------------------------------------------------------- presets
def _assemble(name: str, encoder: str, siglip: SigLIPConfig, sam: SAMConfig, llm: LLMConfig,
              token_grid: int, **extra: Any) -> DSVLConfig:
    """One size, one encoder choice: drop the tower that is not used and pick the matching aligner."""
    aligner = AlignerConfig("low_high_hybrid_split_mlp_gelu" if encoder == "hybrid" else "mlp_gelu", depth=2)
    return DSVLConfig(
        name=name,
        encoder=encoder,
        token_grid=token_grid,
        siglip=copy.deepcopy(siglip) if encoder in ("siglip", "hybrid") else None,
        sam=copy.deepcopy(sam) if encoder in ("sam", "hybrid") else None,
        aligner=aligner,
        llm=copy.deepcopy(llm),
        **extra,
    )


# Miniatures share one tokenizer (data_samples/tokenizer): its special tokens sit at ids 0-3.
MINI_TOKENS = dict(bos_token_id=0, eos_token_id=1, pad_token_id=2, image_token_id=3)
MINI_VOCAB = 4096

_SIZES: dict[str, tuple[SigLIPConfig, SAMConfig, LLMConfig, int, dict]] = {
    # Released 1.3B / 7B (facts 2.2-2.4). The 1.3B LLM numbers are inferred in the facts sheet.
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
    # tiny: notebooks. Sizes follow the measurements in WORKBENCH.md: SAM at 256 px / patch 16 keeps its
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


def _preset_table() -> dict[str, Any]:
    """Every size with every encoder; the release has no SAM-only layout, but the real-size -sam
    variants are kept for FLOP and memory questions."""
    table: dict[str, Any] = {}
    for size, (siglip, sam, llm, grid, extra) in _SIZES.items():
        for encoder in ENCODERS:
            name = RELEASED_NAMES.get((size, encoder), f"dsvl-{size}-{encoder}")
            table[name] = (lambda n=name, e=encoder, s=siglip, m=sam, l=llm, g=grid, x=extra:
                           _assemble(n, e, s, m, l, g, **x))
    return table


PRESETS = _preset_table()


def preset_names() -> list[str]:
    return sorted(PRESETS)
