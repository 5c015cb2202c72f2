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
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

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
    # SigLIP-only models: None (the original's SigLIP-only layout) has the processor resize straight to
    # SigLIP's input (PIL bicubic); a size here has the processor give images of that size and the model
    # shrink them as the hybrid does (antialiased bilinear), so a SigLIP-only arm of a study sees exactly
    # the hybrid's low-res view: ``dsvl-tiny-siglip[low_res_view_from=256]``.
    low_res_view_from: int | None = None

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
        if self.sam is not None:
            return self.sam.image_size
        return self.low_res_view_from or self.siglip.image_size

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
        """Raise ConfigError naming the first bad key; runs whenever a config is made.

        In order: every value's type and range (:func:`check_values`), how the parts fit together,
        then the ceilings (:func:`check_ceilings`), all before anything is built.
        """
        check_values(self)
        if self.encoder not in ENCODERS:
            raise ConfigError(f"must be one of {ENCODERS}, got {self.encoder!r}", key="encoder")
        if self.pixel_input not in ("raw", "normalized"):
            raise ConfigError(f"must be 'raw' or 'normalized', got {self.pixel_input!r}", key="pixel_input")
        if self.aligner.projector_type not in PROJECTOR_TYPES:
            raise ConfigError(f"must be one of {PROJECTOR_TYPES}, got {self.aligner.projector_type!r}"
                              f"{did_you_mean(self.aligner.projector_type, PROJECTOR_TYPES)}",
                              key="aligner.projector_type")
        if self.low_res_view_from is not None and (self.encoder != "siglip" or self.pixel_input != "raw"
                                                   or (self.siglip is not None  # else: the tower check below
                                                       and self.low_res_view_from < self.siglip.image_size)):
            raise ConfigError(f"is for SigLIP-only models on raw pixels, at least siglip.image_size "
                              f"({self.siglip.image_size if self.siglip else '-'}); got {self.low_res_view_from} "
                              f"with encoder={self.encoder!r}", key="low_res_view_from")
        needs_siglip = self.encoder in ("siglip", "hybrid")
        needs_sam = self.encoder in ("sam", "hybrid")
        if needs_siglip != (self.siglip is not None) or needs_sam != (self.sam is not None):
            raise ConfigError(
                f"encoder={self.encoder!r} needs siglip={'set' if needs_siglip else 'None'} and "
                f"sam={'set' if needs_sam else 'None'}; fix the towers or the encoder name", key="encoder"
            )
        if self.siglip is not None and self.siglip.grid != self.token_grid:
            raise ConfigError(
                f"SigLIP gives a {self.siglip.grid}x{self.siglip.grid} token grid "
                f"(image_size {self.siglip.image_size} / patch {self.siglip.patch_size}) but token_grid is "
                f"{self.token_grid}; make them equal", key="token_grid"
            )
        if self.sam is not None:
            if self.sam.image_size % self.sam.patch_size:
                raise ConfigError("sam.image_size must be a multiple of sam.patch_size", key="sam.image_size")
            bad = [i for i in self.sam.global_attn_indexes if not 0 <= i < self.sam.depth]
            if bad:
                raise ConfigError(f"{bad} are outside 0..{self.sam.depth - 1}", key="sam.global_attn_indexes")
            if not self.sam.global_attn_indexes:
                raise ConfigError("must name at least one block (the HD branch reads the first)",
                                  key="sam.global_attn_indexes")
        if self.encoder == "hybrid" and self.aligner.projector_type not in HYBRID_PROJECTOR_TYPES:
            raise ConfigError(f"the hybrid encoder needs one of {HYBRID_PROJECTOR_TYPES}", key="aligner.projector_type")
        if self.encoder != "hybrid" and self.aligner.projector_type in HYBRID_PROJECTOR_TYPES:
            raise ConfigError(f"aligner.projector_type {self.aligner.projector_type!r} needs encoder='hybrid'",
                              key="aligner.projector_type")
        if self.aligner.projector_type == "identity" and self.vision_feature_dim != self.llm.hidden_size:
            raise ConfigError(f"an identity aligner needs vision width {self.vision_feature_dim} == LLM width "
                              f"{self.llm.hidden_size}; use mlp_gelu", key="aligner.projector_type")
        if self.encoder == "hybrid" and self.llm.hidden_size % 2:
            raise ConfigError("the hybrid split aligner needs an even LLM hidden size", key="llm.hidden_size")
        for tower, name in ((self.siglip, "siglip"), (self.sam, "sam")):
            if tower is not None and tower.width % tower.num_heads:
                raise ConfigError(f"width {tower.width} must divide into num_heads {tower.num_heads}",
                                  key=f"{name}.num_heads")
        if self.llm.hidden_size % self.llm.num_heads:
            raise ConfigError(f"hidden_size {self.llm.hidden_size} must divide into num_heads {self.llm.num_heads}",
                              key="llm.num_heads")
        if self.llm.num_heads % self.llm.num_kv_heads:
            raise ConfigError(f"num_heads {self.llm.num_heads} must divide into num_kv_heads "
                              f"{self.llm.num_kv_heads}", key="llm.num_kv_heads")
        if self.llm.head_dim % 2:
            raise ConfigError("RoPE needs an even llm head_dim (hidden_size / num_heads)", key="llm.num_heads")
        check_ceilings(self)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | os.PathLike | None = None) -> "DSVLConfig":
        """A config from plain data: ``to_dict()``'s output or a parsed ``dsvl_config.json``.

        Missing keys take the defaults above (the 1.3B release); unknown keys, sections that are not
        mappings and bad values raise :class:`ConfigError` naming ``source`` (the file) and the key.
        """
        try:
            return cls._from_mapping(data)
        except ConfigError as error:
            raise in_file(error, source) from None

    @classmethod
    def _from_mapping(cls, data: Any) -> "DSVLConfig":
        if not isinstance(data, Mapping):
            raise ConfigError(f"must be a JSON object of config fields, got {type_name(data)}")
        data = copy.deepcopy(dict(data))  # never change the caller's nested dicts
        check_known_keys(data, cls, "")
        sections: dict[str, Any] = {}
        for name, section_class in SECTIONS.items():
            optional = name in ("siglip", "sam")  # a tower the encoder does not use is null
            value = data.pop(name, None if optional else {})
            if value is None and optional:
                sections[name] = None
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"must be an object of {section_class.__name__} fields{' or null' if optional else ''}, "
                                  f"got {type_name(value)}", key=name)
            check_known_keys(value, section_class, f"{name}.")
            sections[name] = section_class(**as_tuples(value, section_class))
        return cls(**sections, **as_tuples(data, cls))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "DSVLConfig":
        """Read a ``dsvl_config.json``; every problem is a ConfigError naming the file and key."""
        return cls.from_dict(read_config_json(path), source=path)

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


def did_you_mean(word: str, options, cutoff: float = 0.6) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``options``, or nothing."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---------------------------------------------------------------------------------------- input checks
# Ceilings, checked before anything is built. They sit far above any real model (the 7B release has
# 30 LLM layers, a 16K context and 7.3B parameters) and far below what would hang or exhaust a machine:
# modules are built one by one, so a million layers takes minutes even on the meta device, and
# DSVLModel(config) on a real device allocates 4 bytes a parameter.
MAX_PARAMS = 200_000_000_000
MAX_LAYERS = 1_000
MAX_CONTEXT = 1 << 24
MAX_IMAGE_SIDE = 8192  # pixels; the processor makes images this size (the release: 1024)


def type_name(value: Any) -> str:
    """'a list', 'a string', ... for messages about a value of the wrong kind."""
    names = {list: "a list", tuple: "a list", dict: "an object", str: "a string", bool: "a boolean",
             int: "an integer", float: "a number", type(None): "null"}
    return names.get(type(value), f"a {type(value).__name__}")


def shown(value: Any) -> str:
    """``repr(value)``, cut short: a message stays one readable line whatever the file holds."""
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print (Python's 4300-digit limit)
        return f"an integer of {value.bit_length()} bits"
    return text if len(text) <= 60 else text[:57] + "..."


def is_int(value: Any) -> bool:
    """An integer, not a bool (JSON ``true`` is not a size) and not ``64.0``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def value_problem(kind: str, value: Any) -> str | None:
    """What is wrong with ``value`` as a ``kind`` (see :func:`field_kind`), or None.

    Shared by our config, the transformers and the original ``config.json`` readers.
    """
    if kind == "size" and not (is_int(value) and value >= 1):
        return f"must be a positive integer, got {shown(value)}"
    if kind == "index" and not (is_int(value) and value >= 0):
        return f"must be an integer >= 0, got {shown(value)}"
    if kind == "positive" and not (is_number(value) and value > 0):
        return f"must be a positive number, got {shown(value)}"
    if kind == "text" and not isinstance(value, str):
        return f"must be a string, got {shown(value)}"
    if kind == "mapping" and not isinstance(value, Mapping):
        return f"must be an object of keys and values, got {type_name(value)}"
    if kind in ("triple", "positive_triple"):
        if not (isinstance(value, (list, tuple)) and len(value) == 3 and all(map(is_number, value))):
            return f"must be a list of 3 numbers (one per RGB channel), got {shown(value)}"
        if kind == "positive_triple" and min(value) <= 0:
            return f"must be 3 positive numbers, got {shown(value)}"
    if kind == "indexes" and not (isinstance(value, (list, tuple)) and all(is_int(i) and i >= 0 for i in value)):
        return f"must be a list of integers >= 0, got {shown(value)}"
    return None


def field_kind(spec: dataclasses.Field) -> str | None:
    """The check a config field needs, from its annotation; None for a nested section.

    ``int | None`` and the like are the same check, skipped when the value is None.
    """
    kinds = {"int": "index" if spec.name.endswith("_id") else "size", "float": "positive", "str": "text",
             "tuple[int, ...]": "indexes",
             "tuple[float, float, float]": "positive_triple" if spec.name == "pixel_std" else "triple"}
    return kinds.get(str(spec.type).removesuffix(" | None"))


def check_values(config: "DSVLConfig") -> None:
    """Every plain field of the config and its sections has the right type and range."""
    parts = [("", config), *((f"{name}.", getattr(config, name)) for name in SECTIONS)]
    for prefix, part in parts:
        if part is None:
            continue
        for spec in dataclasses.fields(part):
            kind, value = field_kind(spec), getattr(part, spec.name)
            if value is None and str(spec.type).endswith("| None"):
                continue
            problem = kind and value_problem(kind, value)
            if problem:
                raise ConfigError(problem, key=prefix + spec.name)


def check_known_keys(data: Mapping, section_class: type, prefix: str) -> None:
    """Every key of ``data`` is a field of ``section_class``; an unknown one is named with the closest."""
    known = [spec.name for spec in dataclasses.fields(section_class)]
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown key{did_you_mean(key, known)}; {section_class.__name__} keys are "
                              f"{', '.join(known)}", key=f"{prefix}{key}")


def as_tuples(data: Mapping, section_class: type) -> dict[str, Any]:
    """JSON lists -> tuples for the tuple fields (anything else is left for the checks to name)."""
    tuple_fields = {spec.name for spec in dataclasses.fields(section_class) if str(spec.type).startswith("tuple")}
    return {key: tuple(value) if key in tuple_fields and isinstance(value, list) else value
            for key, value in data.items()}


def check_ceilings(config: "DSVLConfig") -> None:
    """Depths, context and the parameter count stay below what a machine can build."""
    depths = {"llm.num_layers": config.llm.num_layers, "aligner.depth": config.aligner.depth}
    for name in ("siglip", "sam"):
        if getattr(config, name) is not None:
            depths[f"{name}.depth"] = getattr(config, name).depth
    for key, depth in depths.items():
        if depth > MAX_LAYERS:
            raise ConfigError(f"{depth} layers is over this workbench's ceiling of {MAX_LAYERS}; is the value a typo?",
                              key=key)
    sides = {"low_res_view_from": config.low_res_view_from or 0}
    for name in ("siglip", "sam"):
        if getattr(config, name) is not None:
            sides[f"{name}.image_size"] = getattr(config, name).image_size
    for key, side in sides.items():
        if side > MAX_IMAGE_SIDE:
            raise ConfigError(f"{side} pixels a side is over the ceiling of {MAX_IMAGE_SIDE}; is the value a typo?",
                              key=key)
    context = config.llm.max_position_embeddings
    if context > MAX_CONTEXT:
        raise ConfigError(f"{context} is over the ceiling of {MAX_CONTEXT:,} tokens; is the value a typo?",
                          key="llm.max_position_embeddings")
    if config.num_image_tokens > context:
        raise ConfigError(f"{config.token_grid}x{config.token_grid} = {config.num_image_tokens} image tokens per image "
                          f"do not fit the LLM context llm.max_position_embeddings = {context}", key="token_grid")
    counts = parameter_counts(config)
    total = sum(counts.values())
    if total > MAX_PARAMS:
        largest = max(counts, key=counts.get)
        raise ConfigError(f"the config describes {total:,} parameters ({largest}: {counts[largest]:,}), over the "
                          f"ceiling of {MAX_PARAMS:,}; nothing was built. Check the sizes for a typo", key=largest)


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


def read_config_json(path: str | os.PathLike) -> dict[str, Any]:
    """A config file's JSON object; unreadable, invalid or non-object JSON is a ConfigError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file; is this a model folder?", source=path) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read it ({error.__class__.__name__}); re-copy the file", source=path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"not valid JSON: {error.msg} (column {error.colno}); fix or re-copy the file",
                          source=f"{path}:{error.lineno}") from None
    except (ValueError, RecursionError) as error:  # an integer of over 4300 digits, nesting too deep
        raise ConfigError(f"not readable JSON: {str(error).splitlines()[0][:100]}", source=path) from None
    if not isinstance(data, dict):
        raise ConfigError(f"must hold a JSON object, got {type_name(data)}", source=path)
    return data


def in_file(error: ConfigError, source: str | os.PathLike | None) -> ConfigError:
    """The same error, naming the file it came from (unless it already names one)."""
    return error.at(source)


# The nested sections of a DSVLConfig, in the order they are checked.
SECTIONS = {"siglip": SigLIPConfig, "sam": SAMConfig, "aligner": AlignerConfig, "llm": LLMConfig}


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
