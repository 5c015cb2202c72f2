"""Configuration dataclasses and the preset table.

Sizes and encoder choice are separate axes: every size (micro, tiny, small, 1.3b, 7b) can be built
with the SigLIP tower alone (``-siglip``), the SAM tower alone (``-sam``) or both (``-hybrid``).
The released models are ``dsvl-1.3b`` (SigLIP only) and ``dsvl-7b`` (hybrid); the shapes come from
``docs/deepseek_vl_facts.md`` sections 2.2-2.5.

    >>> from dsvl_lab.config import DSVLConfig
    >>> cfg = DSVLConfig.from_name("dsvl-tiny-hybrid")
    >>> cfg.num_image_tokens
    64
    >>> DSVLConfig.from_name("dsvl-7b").llm.num_layers
    30

One file per concept, each using only the ones above it:

* ``values.py``: checking one value (``is_int``, ``value_problem``, ``did_you_mean``), shared by
  every config reader of the workbench;
* ``sections.py``: the parts of a model (``SigLIPConfig``, ``SAMConfig``, ``AlignerConfig``,
  ``LLMConfig``), the normalisation statistics and the special tokens;
* ``sizes.py``: ``parameter_counts``, from the sizes alone;
* ``checks.py``: what ``DSVLConfig.validate`` checks, in order, and the ceilings (``MAX_PARAMS``, ...);
* ``files.py``: reading a config file (``read_config_json``);
* ``variants.py``: preset variants, ``dsvl-tiny-hybrid[aligner.depth=3]``;
* ``presets.py``: the sizes of every preset;
* ``dsvl.py``: :class:`DSVLConfig` itself and the preset table (``PRESETS``, ``preset_names``).

Everything is importable from ``dsvl_lab.config`` directly.
"""
from __future__ import annotations

from ..errors import ConfigError
from .checks import (MAX_CONTEXT, MAX_IMAGE_SIDE, MAX_LAYERS, MAX_PARAMS, as_tuples, check_aligner, check_ceilings,
                     check_choices, check_heads, check_known_keys, check_towers, check_values, field_kind)
from .dsvl import PRESETS, DSVLConfig, preset_names
from .files import in_file, read_config_json
from .presets import MINI_TOKENS, MINI_VOCAB, RELEASED_NAMES
from .sections import (BOS_TOKEN, CLIP_MEAN, CLIP_STD, ENCODERS, EOS_TOKEN, HYBRID_PROJECTOR_TYPES, IMAGE_TOKEN,
                       PAD_TOKEN, PROJECTOR_TYPES, SECTIONS, SIGLIP_MEAN, SIGLIP_STD, AlignerConfig, LLMConfig,
                       SAMConfig, SigLIPConfig)
from .sizes import parameter_counts
from .values import did_you_mean, is_int, is_number, shown, type_name, value_problem
from .variants import parse_variant, variant_name

__all__ = [
    # dsvl.py: the whole config and the presets
    "DSVLConfig", "PRESETS", "preset_names", "ConfigError",
    # sections.py: its parts and shared names
    "SigLIPConfig", "SAMConfig", "AlignerConfig", "LLMConfig", "SECTIONS", "ENCODERS", "PROJECTOR_TYPES",
    "HYBRID_PROJECTOR_TYPES", "SIGLIP_MEAN", "SIGLIP_STD", "CLIP_MEAN", "CLIP_STD",
    "BOS_TOKEN", "EOS_TOKEN", "IMAGE_TOKEN", "PAD_TOKEN",
    # presets.py / variants.py
    "MINI_TOKENS", "MINI_VOCAB", "RELEASED_NAMES", "variant_name", "parse_variant",
    # checks.py / sizes.py: validation
    "MAX_PARAMS", "MAX_LAYERS", "MAX_CONTEXT", "MAX_IMAGE_SIDE", "field_kind", "check_values", "check_choices",
    "check_towers", "check_aligner", "check_heads", "check_ceilings", "check_known_keys", "as_tuples",
    "parameter_counts",
    # files.py / values.py: reading and messages
    "read_config_json", "in_file", "type_name", "shown", "is_int", "is_number", "value_problem", "did_you_mean",
]
