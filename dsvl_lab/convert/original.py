"""The original DeepSeek-VL release's format (``model_type`` ``multi_modality``): key map, config, folder.

- Key map: our module names follow the original checkpoint, so it is a prefix map
  (:func:`original_key_for`): the original's ``MultiModalityCausalLM`` wraps each timm tower in a
  ``CLIPVisionTower`` (attribute ``vision_tower``), held directly as ``vision_model`` or, in the
  hybrid's ``HybridVisionTower``, as ``vision_tower_high`` / ``vision_tower_low``; ``aligner.*`` and
  ``language_model.*`` are named as ours.
- Config: :func:`config_from_original` reads the original ``config.json`` as the original code does
  (``vision_config`` / ``aligner_config`` / ``language_config``), checked first against
  :data:`ORIGINAL_KEYS` (see :mod:`dsvl_lab.convert.config_files`).
- Folder: :func:`original_folder_config` adds the image token's id, found in the folder's tokenizer as
  ``VLChatProcessor`` finds it (:func:`tokenizer_image_id`); :func:`original_state_to_ours` renames
  the checkpoint's tensors and drops those the original never uses or never builds.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from ..config import (IMAGE_TOKEN, AlignerConfig, DSVLConfig, LLMConfig, SAMConfig, SigLIPConfig, in_file, is_int,
                      read_config_json, shown)
from ..errors import ConfigError
from ..model import DSVLModel
from .config_files import LLAMA_NAMES, check_keys, dig, file_key, require

# ============================================================================ key map
# Parameters of the original checkpoint that are never used in its forward pass (docs/deepseek_vl_facts.md 2.3, 2.4).
ORIGINAL_UNUSED = (re.compile(r"\.attn_pool\."), re.compile(r"^vision_model\.(high|low)_layer_norm\."))


def original_key_for(our_key: str, config: DSVLConfig) -> str:
    """The original DeepSeek-VL checkpoint name of our parameter."""
    if our_key.startswith("vision_model.low."):
        tower = ("vision_model.vision_tower." if config.encoder == "siglip"
                 else "vision_model.vision_tower_low.vision_tower.")
        return tower + our_key[len("vision_model.low."):]
    if our_key.startswith("vision_model.high."):
        tower = ("vision_model.vision_tower." if config.encoder == "sam"
                 else "vision_model.vision_tower_high.vision_tower.")
        return tower + our_key[len("vision_model.high."):]
    return our_key  # aligner.* and language_model.* are named as in the original


def our_state_to_original(state: dict[str, torch.Tensor], config: DSVLConfig) -> dict[str, torch.Tensor]:
    """Our state dict under the original checkpoint's names (the same tensors: only the prefixes differ)."""
    return {original_key_for(k, config): v for k, v in state.items()}


def original_state_to_ours(state: dict[str, torch.Tensor], model: DSVLModel) -> dict[str, torch.Tensor]:
    """An original checkpoint's tensors under our names, less those the original never uses or builds."""
    config = model.config
    unused = [k for k in state if any(p.search(k) for p in ORIGINAL_UNUSED)]
    if unused:
        print(f"note: dropping {len(unused)} tensors the original model never uses in its forward pass "
              f"(SigLIP's MAP pooling head 'attn_pool', the unused high/low_layer_norm), e.g. {unused[0]}")
    unbuilt = [k for k in state if _past_select_layer(k, config)]
    if unbuilt:
        print(f"note: dropping {len(unbuilt)} tensors of SigLIP blocks {config.siglip.depth} and up: the original "
              f"builds only the first {config.siglip.depth} (select_layer), e.g. {unbuilt[0]}")
    dropped = set(unused) | set(unbuilt)
    by_original = {original_key_for(name, config): name for name in model.state_dict()}
    return {by_original.get(k, k): v for k, v in state.items() if k not in dropped}


def _past_select_layer(original_key: str, config: DSVLConfig) -> bool:
    """A checkpoint tensor of a SigLIP block the original never builds (see :func:`_siglip_blocks`)."""
    if config.siglip is None:
        return False
    prefix = original_key_for("vision_model.low.", config)
    match = re.match(re.escape(prefix) + r"blocks\.(\d+)\.", original_key)
    return match is not None and int(match.group(1)) >= config.siglip.depth


# ============================================================================ config.json
# The keys config_from_original reads, with the check each value needs (the convention: config_files' docstring).
# select_layers is a real (unused) CLIPVisionTower argument: listed so it is not taken for a misspelt select_layer.
_TOWER_KEYS = {"model_name": "text", "image_size": "size", "pixel_mean": "triple?", "pixel_std": "positive_triple?",
               "select_layer": "integer", "select_layers": "any"}
ORIGINAL_KEYS: dict[str, dict[str, str]] = {
    "": {"model_type": "text", "vision_config": "mapping", "aligner_config": "mapping", "language_config": "mapping"},
    "vision_config": {"cls": "text", "params": "mapping"},
    "vision_config.params": {**_TOWER_KEYS, "high_res_cfg": "mapping", "low_res_cfg": "mapping"},
    "vision_config.params.high_res_cfg": _TOWER_KEYS,
    "vision_config.params.low_res_cfg": _TOWER_KEYS,
    "aligner_config": {"cls": "text", "params": "mapping"},
    "aligner_config.params": {"projector_type": "text", "depth": "size"},
    "language_config": {"vocab_size": "size", "hidden_size": "size", "intermediate_size": "size",
                        "num_hidden_layers": "size", "num_attention_heads": "size", "num_key_value_heads": "size",
                        "rms_norm_eps": "positive", "rope_theta": "positive", "max_position_embeddings": "size"},
}

# Our config's keys as the original file spells them, for errors found once our config is built (a head
# count that does not divide the width, the parameter ceiling, ...). A section name maps every key under it.
ORIGINAL_RENAMES = {
    **{f"llm.{ours}": f"language_config.{theirs}" for ours, theirs in LLAMA_NAMES.items()}, "llm": "language_config",
    "aligner": "aligner_config.params", "siglip.image_size": "vision_config.params.image_size",
    "siglip": "vision_config.params.model_name", "token_grid": "vision_config.params.image_size",
}
ORIGINAL_RENAMES_HYBRID = {
    **ORIGINAL_RENAMES, "siglip.image_size": "vision_config.params.low_res_cfg.image_size",
    "siglip": "vision_config.params.low_res_cfg.model_name",
    "token_grid": "vision_config.params.low_res_cfg.image_size",
    "sam.image_size": "vision_config.params.high_res_cfg.image_size",
    "sam": "vision_config.params.high_res_cfg.model_name",
}

# The original's vision towers by their model_name (create_siglip_vit / create_sam_vit), as our tower configs.
_ORIGINAL_TOWERS = {
    "siglip_large_patch16_384": lambda cfg: SigLIPConfig(image_size=cfg.get("image_size", 384)),
    "sam_b_downsample": lambda cfg: SAMConfig(image_size=cfg.get("image_size", 1024)),
}


def config_from_original(data: dict, source: str | Path | None = None) -> DSVLConfig:
    """Our config from an original ``config.json`` (model_type "multi_modality").

    The dict is checked first (:data:`ORIGINAL_KEYS`); every problem is a ConfigError naming
    ``source`` and the key as the file spells it.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"must hold a JSON object, got {type(data).__name__}", source=source)
    check_keys(data, ORIGINAL_KEYS, source)
    require(data, ["vision_config", "vision_config.params", "aligner_config", "aligner_config.params",
                   "language_config"], source)
    hybrid = "high_res_cfg" in data["vision_config"]["params"]
    towers = (["vision_config.params.high_res_cfg", "vision_config.params.low_res_cfg"] if hybrid
              else ["vision_config.params"])
    require(data, towers, source)
    for where in towers:  # a half-given pair of statistics is a mistake, not a wish to skip normalising
        stats = [f"{where}.{key}" for key in ("pixel_mean", "pixel_std")]
        require(data, [f"{where}.model_name"] + (stats if any(dig(data, key) is not None for key in stats) else []),
                source)
    try:
        return _config_from_original_dict(data, hybrid)
    except ConfigError as error:
        raise in_file(file_key(error, ORIGINAL_RENAMES_HYBRID if hybrid else ORIGINAL_RENAMES), source) from None


# Normalisation statistics that change nothing, (x - 0) / 1: how our config says "do not normalise",
# which the original's CLIPVisionTower does when its config lacks pixel_mean / pixel_std (image_norm=None).
NO_NORMALIZATION = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def _original_tower(cfg: dict, where: str) -> SigLIPConfig | SAMConfig:
    """One original ``CLIPVisionTower`` config -> our tower config (its statistics and SigLIP's depth)."""
    name = cfg.get("model_name")
    if name not in _ORIGINAL_TOWERS:
        raise ConfigError(f"unknown original vision tower {name!r} (known: {sorted(_ORIGINAL_TOWERS)}); "
                          f"pass config=DSVLConfig(...) (or --preset) to load this folder", key=f"{where}.model_name")
    built = _ORIGINAL_TOWERS[name](cfg)
    if cfg.get("pixel_mean") is not None:  # then pixel_std is given too (config_from_original checks)
        built.pixel_mean, built.pixel_std = tuple(cfg["pixel_mean"]), tuple(cfg["pixel_std"])
    else:
        built.pixel_mean, built.pixel_std = NO_NORMALIZATION
    select_layer = cfg.get("select_layer", -2)  # CLIPVisionTower's default; both releases say -1
    if not is_int(select_layer):
        raise ConfigError(f"must be an integer (-1: the last block), got {shown(select_layer)}",
                          key=f"{where}.select_layer")
    if isinstance(built, SigLIPConfig):  # create_sam_vit ignores select_layer: SAM always runs every block
        built.depth = _siglip_blocks(select_layer, built.depth, where)
    return built


def _siglip_blocks(select_layer: int, layers: int, where: str) -> int:
    """How many SigLIP blocks the original builds for ``select_layer`` (``create_siglip_vit``).

    It builds only the blocks up to the selected one and returns their output after the final
    LayerNorm: -1 is every block, -2 all but the last, and a positive n the first n.
    """
    blocks = min(layers, layers + select_layer + 1) if select_layer <= 0 else min(layers, select_layer)
    if blocks < 1:
        raise ConfigError(f"{select_layer} leaves none of SigLIP's {layers} blocks", key=f"{where}.select_layer")
    return blocks


def _config_from_original_dict(data: dict, hybrid: bool) -> DSVLConfig:
    """Our config from a checked original dict, with the original code's defaults where a key is absent."""
    vision = data["vision_config"]["params"]
    aligner = data["aligner_config"]["params"]
    language = data["language_config"]
    defaults = LLMConfig(hidden_size=4096, intermediate_size=11008, num_layers=32, num_heads=32, num_kv_heads=32)
    if hybrid:
        encoder = "hybrid"
        sam = _original_tower(vision["high_res_cfg"], "vision_config.params.high_res_cfg")
        siglip = _original_tower(vision["low_res_cfg"], "vision_config.params.low_res_cfg")
    else:
        encoder, sam, siglip = "siglip", None, _original_tower(vision, "vision_config.params")
    heads = language.get("num_attention_heads", defaults.num_heads)
    llm = LLMConfig(
        vocab_size=language.get("vocab_size", 102400), hidden_size=language.get("hidden_size", defaults.hidden_size),
        intermediate_size=language.get("intermediate_size", defaults.intermediate_size),
        num_layers=language.get("num_hidden_layers", defaults.num_layers), num_heads=heads,
        num_kv_heads=language.get("num_key_value_heads", heads), rms_norm_eps=language.get("rms_norm_eps", 1e-6),
        rope_theta=float(language.get("rope_theta", 10000.0)),
        max_position_embeddings=language.get("max_position_embeddings", 16384),
    )
    return DSVLConfig(
        name="deepseek-vl-original", encoder=encoder, token_grid=siglip.grid, siglip=siglip, sam=sam,
        # MlpProjector reads cfg.get("depth", 1): one Linear unless the file asks for more.
        aligner=AlignerConfig(aligner.get("projector_type", "mlp_gelu"), depth=aligner.get("depth", 1)), llm=llm,
    )


# ============================================================================ folder
def original_folder_config(folder: Path) -> DSVLConfig:
    """An original folder's config, with the image token's id from its tokenizer when it has one."""
    path = folder / "config.json"
    config = config_from_original(read_config_json(path), source=path)
    image_token_id = tokenizer_image_id(folder)
    return config if image_token_id is None else config.replace(image_token_id=image_token_id)


def tokenizer_image_id(folder: Path) -> int | None:
    """The image tag's id in ``folder/tokenizer.json``, found as the original finds it; None without that file.

    The original ``VLChatProcessor`` looks its ``image_tag`` (processor_config.json, default
    ``<image_placeholder>``) up in the tokenizer and, when it is not there, adds it as a new special
    token, whose id is then the tokenizer's size.
    """
    path = folder / "tokenizer.json"
    if not path.is_file():
        return None
    from tokenizers import Tokenizer

    processor_file = folder / "processor_config.json"
    tag = read_config_json(processor_file).get("image_tag", IMAGE_TOKEN) if processor_file.is_file() else IMAGE_TOKEN
    if not isinstance(tag, str):
        raise ConfigError(f"must be a string, got {shown(tag)}", source=processor_file, key="image_tag")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:  # the tokenizers library raises its own types, without the file's name
        raise ConfigError(f"cannot read this tokenizer: {' '.join(str(error).split())[:160]}", source=path) from None
    found = tokenizer.token_to_id(tag)
    return found if found is not None else tokenizer.get_vocab_size(with_added_tokens=True)

