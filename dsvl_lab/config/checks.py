"""Validating a config: every check :meth:`~.dsvl.DSVLConfig.validate` runs, in the order it runs them.

1. :func:`check_values`: each field's type and range, read off its annotation (:func:`field_kind`);
2. :func:`check_choices`, :func:`check_towers`, :func:`check_aligner`, :func:`check_heads`: how the
   parts fit together;
3. :func:`check_ceilings`: sizes a machine could not build, refused before anything is built.

Each raises :class:`ConfigError` naming the first bad key and how to fix it. :func:`check_known_keys`
and :func:`as_tuples` prepare plain data (a parsed JSON file) for the dataclasses.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from .sections import ENCODERS, HYBRID_PROJECTOR_TYPES, PROJECTOR_TYPES, SECTIONS
from .sizes import parameter_counts
from .values import did_you_mean, value_problem

if TYPE_CHECKING:  # for the annotations only: dsvl.py imports this module
    from .dsvl import DSVLConfig


# Ceilings, checked before anything is built. They sit far above any real model (the 7B release has
# 30 LLM layers, a 16K context and 7.3B parameters) and far below what would hang or exhaust a machine:
# modules are built one by one, so a million layers takes minutes even on the meta device, and
# DSVLModel(config) on a real device allocates 4 bytes a parameter.
MAX_PARAMS = 200_000_000_000
MAX_LAYERS = 1_000
MAX_CONTEXT = 1 << 24
MAX_IMAGE_SIDE = 8192  # pixels; the processor makes images this size (the release: 1024)


# ---------------------------------------------------------------------------------------- 1. each value
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


# ---------------------------------------------------------------------------------------- 2. how the parts fit
def check_choices(config: "DSVLConfig") -> None:
    """The named choices (encoder, pixel input, aligner type) are known ones; the low-res view fits."""
    if config.encoder not in ENCODERS:
        raise ConfigError(f"must be one of {ENCODERS}, got {config.encoder!r}", key="encoder")
    if config.pixel_input not in ("raw", "normalized"):
        raise ConfigError(f"must be 'raw' or 'normalized', got {config.pixel_input!r}", key="pixel_input")
    if config.aligner.projector_type not in PROJECTOR_TYPES:
        raise ConfigError(f"must be one of {PROJECTOR_TYPES}, got {config.aligner.projector_type!r}"
                          f"{did_you_mean(config.aligner.projector_type, PROJECTOR_TYPES)}",
                          key="aligner.projector_type")
    if config.low_res_view_from is not None and (config.encoder != "siglip" or config.pixel_input != "raw"
                                                 or (config.siglip is not None  # else: check_towers names it
                                                     and config.low_res_view_from < config.siglip.image_size)):
        raise ConfigError(f"is for SigLIP-only models on raw pixels, at least siglip.image_size "
                          f"({config.siglip.image_size if config.siglip else '-'}); got {config.low_res_view_from} "
                          f"with encoder={config.encoder!r}", key="low_res_view_from")


def check_towers(config: "DSVLConfig") -> None:
    """The encoder has exactly the towers it uses, and their grids and SAM's global blocks agree."""
    needs_siglip = config.encoder in ("siglip", "hybrid")
    needs_sam = config.encoder in ("sam", "hybrid")
    if needs_siglip != (config.siglip is not None) or needs_sam != (config.sam is not None):
        raise ConfigError(
            f"encoder={config.encoder!r} needs siglip={'set' if needs_siglip else 'None'} and "
            f"sam={'set' if needs_sam else 'None'}; fix the towers or the encoder name", key="encoder"
        )
    if config.siglip is not None and config.siglip.grid != config.token_grid:
        raise ConfigError(
            f"SigLIP gives a {config.siglip.grid}x{config.siglip.grid} token grid "
            f"(image_size {config.siglip.image_size} / patch {config.siglip.patch_size}) but token_grid is "
            f"{config.token_grid}; make them equal", key="token_grid"
        )
    if config.sam is not None:
        if config.sam.image_size % config.sam.patch_size:
            raise ConfigError("sam.image_size must be a multiple of sam.patch_size", key="sam.image_size")
        bad = [i for i in config.sam.global_attn_indexes if not 0 <= i < config.sam.depth]
        if bad:
            raise ConfigError(f"{bad} are outside 0..{config.sam.depth - 1}", key="sam.global_attn_indexes")
        if not config.sam.global_attn_indexes:
            raise ConfigError("must name at least one block (the HD branch reads the first)",
                              key="sam.global_attn_indexes")


def check_aligner(config: "DSVLConfig") -> None:
    """The aligner type matches the encoder (hybrid aligners for the hybrid tower only) and the widths."""
    kind = config.aligner.projector_type
    if config.encoder == "hybrid" and kind not in HYBRID_PROJECTOR_TYPES:
        raise ConfigError(f"the hybrid encoder needs one of {HYBRID_PROJECTOR_TYPES}", key="aligner.projector_type")
    if config.encoder != "hybrid" and kind in HYBRID_PROJECTOR_TYPES:
        raise ConfigError(f"aligner.projector_type {kind!r} needs encoder='hybrid'", key="aligner.projector_type")
    if kind == "identity" and config.vision_feature_dim != config.llm.hidden_size:
        raise ConfigError(f"an identity aligner needs vision width {config.vision_feature_dim} == LLM width "
                          f"{config.llm.hidden_size}; use mlp_gelu", key="aligner.projector_type")
    if config.encoder == "hybrid" and config.llm.hidden_size % 2:
        raise ConfigError("the hybrid split aligner needs an even LLM hidden size", key="llm.hidden_size")


def check_heads(config: "DSVLConfig") -> None:
    """Every width divides into its attention heads; grouped KV heads divide the heads; RoPE's head_dim is even."""
    for tower, name in ((config.siglip, "siglip"), (config.sam, "sam")):
        if tower is not None and tower.width % tower.num_heads:
            raise ConfigError(f"width {tower.width} must divide into num_heads {tower.num_heads}",
                              key=f"{name}.num_heads")
    llm = config.llm
    if llm.hidden_size % llm.num_heads:
        raise ConfigError(f"hidden_size {llm.hidden_size} must divide into num_heads {llm.num_heads}",
                          key="llm.num_heads")
    if llm.num_heads % llm.num_kv_heads:
        raise ConfigError(f"num_heads {llm.num_heads} must divide into num_kv_heads {llm.num_kv_heads}",
                          key="llm.num_kv_heads")
    if llm.head_dim % 2:
        raise ConfigError("RoPE needs an even llm head_dim (hidden_size / num_heads)", key="llm.num_heads")


# ---------------------------------------------------------------------------------------- 3. the ceilings
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


# ---------------------------------------------------------------------------------------- plain data -> fields
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
