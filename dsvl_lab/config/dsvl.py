"""DSVLConfig: everything needed to build a model, and the named presets built from it.

A config is checked whenever it is made (:meth:`DSVLConfig.validate`, the checks in :mod:`.checks`),
read from and written to ``dsvl_config.json`` (:meth:`DSVLConfig.load`, :meth:`DSVLConfig.save`) and
made from a preset name (:meth:`DSVLConfig.from_name`, the sizes in :mod:`.presets`).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .checks import (as_tuples, check_aligner, check_ceilings, check_choices, check_heads, check_known_keys,
                     check_towers, check_values)
from .files import in_file, read_config_json
from .presets import _SIZES, RELEASED_NAMES
from .sections import ENCODERS, SECTIONS, AlignerConfig, LLMConfig, SAMConfig, SigLIPConfig
from .values import did_you_mean, type_name
from .variants import parse_variant


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
    image_token_id: int = 100015  # UNVERIFIED in docs/deepseek_vl_facts.md 2.7 (inferred from HF default)
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

        In order: every value's type and range (:func:`~.checks.check_values`), how the parts fit
        together, then the ceilings (:func:`~.checks.check_ceilings`), all before anything is built.
        """
        check_values(self)
        check_choices(self)  # encoder, pixel input, aligner type, low-res view
        check_towers(self)   # the towers the encoder uses, their grids
        check_aligner(self)  # the aligner type against the encoder and the widths
        check_heads(self)    # widths that divide into heads
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
                raise ConfigError(f"must be an object of {section_class.__name__} fields"
                                  f"{' or null' if optional else ''}, got {type_name(value)}", key=name)
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
        :func:`~.variants.variant_name`): the one string then names the config everywhere a preset
        name travels (stage hand-off cards, sweep runs, checkpoints).
        """
        base, variant = parse_variant(name)
        if base not in PRESETS:
            raise ValueError(f"unknown preset {base!r}; available presets: {', '.join(sorted(PRESETS))}")
        config = PRESETS[base]()
        if variant:
            config = dataclasses.replace(config.replace(**variant), name=name)
        return config.replace(**overrides) if overrides else config


# ---------------------------------------------------------------------------------------- presets
# Every size of .presets with every encoder, as a name -> a function that builds that DSVLConfig. The
# table lives here, not in presets.py, because DSVLConfig.from_name reads it.
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


def _preset_table() -> dict[str, Any]:
    """Every size with every encoder; the release has no SAM-only layout, but the real-size -sam
    variants are kept for FLOP and memory questions."""
    table: dict[str, Any] = {}
    for size, (siglip, sam, llm, grid, extra) in _SIZES.items():
        for encoder in ENCODERS:
            name = RELEASED_NAMES.get((size, encoder), f"dsvl-{size}-{encoder}")
            table[name] = (lambda n=name, e=encoder, s=siglip, m=sam, lm=llm, g=grid, x=extra:
                           _assemble(n, e, s, m, lm, g, **x))
    return table


PRESETS = _preset_table()


def preset_names() -> list[str]:
    """Every preset name, sorted (``dsvl-lab presets``)."""
    return sorted(PRESETS)
