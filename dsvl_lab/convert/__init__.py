"""Checkpoints and interop: transformers <-> ours, and the original DeepSeek-VL key names.

- ``from_hf(hf_model)``: a transformers ``DeepseekVLForConditionalGeneration`` (SigLIP layouts) or
  ``DeepseekVLHybridForConditionalGeneration`` (hybrid layouts) -> a :class:`DSVLModel` that takes
  the same inputs (already normalised pixels, low-res view separate) and returns the same logits.
- ``to_hf(model)``: the reverse.
- the readers of transformers and original DeepSeek-VL folders (docs/deepseek_vl_facts.md section 3), registered
  with :mod:`dsvl_lab.model.files` on import, so ``DSVLModel.from_pretrained`` (our loader, which
  lives there with our own format) reads those folders too. ``load_pretrained`` / ``save_pretrained``
  here are the same loader and writer. Nothing is ever downloaded: the folder must be on disk.

Our module names follow the original checkpoint (``vision_model``, ``aligner``, ``language_model``,
SigLIP's ``blocks.i.attn.qkv``, SAM's ``neck.0..3``), so the original format is a prefix map, and
transformers' format is a key map with two reshapes: SigLIP's fused qkv is split into q, k, v, and
SigLIP's position table loses its leading batch axis.

One concept a file; every public name is re-exported here, so ``from dsvl_lab import convert`` and
``convert.from_hf`` / ``convert.config_from_original`` / ... keep working:

- :mod:`.hf_keys`: transformers' parameter names for ours (the key map and its two reshapes).
- :mod:`.hf_config`: our config <-> transformers' ``DeepseekVLConfig`` / ``DeepseekVLHybridConfig``.
- :mod:`.hf`: ``from_hf`` / ``to_hf``, whole models in memory.
- :mod:`.original`: the original release: key map, ``config.json``, tokenizer look-up, folder reader.
- :mod:`.config_files`: what both ``config.json`` readers share (checking keys, naming them as the file does).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..config import DSVLConfig
from ..model import DSVLModel
# Our own folder format and the loader live in the model layer; re-exported for this package's callers.
from ..model.files import (OUR_CONFIG, WEIGHTS, FolderFormat, detect_format, folder_config, load_state_checked,
                           read_weights, register_format, save_pretrained)
from .config_files import check_keys, dig, file_key, require
from .hf import from_hf, to_hf
from .hf_config import HF_KEYS, HF_RENAMES, HF_SUBCONFIG_TYPES, config_from_hf, hf_config_from, hf_folder_config
from .hf_keys import check_hf_compatible, hf_keys_for, hf_state_to_ours, normalize_hf_key, our_state_to_hf
from .original import (NO_NORMALIZATION, ORIGINAL_KEYS, ORIGINAL_RENAMES, ORIGINAL_RENAMES_HYBRID, ORIGINAL_UNUSED,
                       config_from_original, original_folder_config, original_key_for, original_state_to_ours,
                       our_state_to_original, tokenizer_image_id)

__all__ = [
    # in-memory conversion and folders
    "from_hf", "to_hf", "load_pretrained", "save_pretrained", "detect_format", "folder_config", "read_weights",
    "load_state_checked", "register_format", "FolderFormat", "OUR_CONFIG", "WEIGHTS",
    # transformers: key map and config
    "hf_keys_for", "check_hf_compatible", "our_state_to_hf", "hf_state_to_ours", "normalize_hf_key",
    "hf_config_from", "config_from_hf", "hf_folder_config", "HF_KEYS", "HF_SUBCONFIG_TYPES", "HF_RENAMES",
    # the original release: key map, config, folder
    "original_key_for", "our_state_to_original", "original_state_to_ours", "ORIGINAL_UNUSED", "config_from_original",
    "original_folder_config", "tokenizer_image_id", "NO_NORMALIZATION", "ORIGINAL_KEYS", "ORIGINAL_RENAMES",
    "ORIGINAL_RENAMES_HYBRID",
    # checking config.json files
    "dig", "check_keys", "require", "file_key",
]


def load_pretrained(path: str | Path, config: DSVLConfig | str | None = None, dtype: torch.dtype | None = None,
                    pixel_input: str = "raw") -> DSVLModel:
    """A model folder in any of the three formats; the same as ``DSVLModel.from_pretrained``."""
    return DSVLModel.from_pretrained(path, config=config, dtype=dtype, pixel_input=pixel_input)


# The two foreign formats DSVLModel.from_pretrained reads (see dsvl_lab.model.files): importing this
# package is what teaches our loader to read them, and model/ never imports up to here.
register_format("hf", FolderFormat(read_config=hf_folder_config, state_to_ours=hf_state_to_ours))
register_format("original", FolderFormat(read_config=original_folder_config, state_to_ours=original_state_to_ours))
