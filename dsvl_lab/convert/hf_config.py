"""transformers' ``config.json`` both ways: our DSVLConfig <-> ``DeepseekVLConfig`` / ``DeepseekVLHybridConfig``.

- :func:`hf_config_from`: the transformers config for ours (SigLIP layouts -> ``DeepseekVLConfig``,
  hybrid -> ``DeepseekVLHybridConfig``, whose ``high_res_vision_config`` is the SAM tower).
- :func:`config_from_hf`: ours from a transformers config object, or from a parsed ``config.json``,
  checked first against :data:`HF_KEYS` (see :mod:`dsvl_lab.convert.config_files`), so every problem
  is a ConfigError naming the file and the key as the file spells it (:data:`HF_RENAMES`).
- :func:`hf_folder_config`: the config of a transformers folder, for our loader.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from ..config import AlignerConfig, DSVLConfig, LLMConfig, SAMConfig, SigLIPConfig, in_file, read_config_json
from ..errors import ConfigError
from .config_files import LLAMA_NAMES, check_keys, dig, file_key, require
from .hf_keys import check_hf_compatible

# The keys config_from_hf reads, with the check each value needs (the convention: config_files' docstring).
HF_KEYS: dict[str, dict[str, str]] = {
    "": {"model_type": "text", "text_config": "mapping", "vision_config": "mapping",
         "high_res_vision_config": "mapping", "image_token_id": "index"},
    "text_config": {"model_type": "text", "vocab_size": "size", "hidden_size": "size", "intermediate_size": "size",
                    "num_hidden_layers": "size", "num_attention_heads": "size", "num_key_value_heads": "size?",
                    "head_dim": "size?", "rms_norm_eps": "positive", "max_position_embeddings": "size",
                    "rope_parameters": "mapping?"},
    "text_config.rope_parameters": {"rope_theta": "positive", "rope_type": "text"},
    "vision_config": {"model_type": "text", "image_size": "size", "patch_size": "size", "hidden_size": "size",
                      "num_hidden_layers": "size", "num_attention_heads": "size", "intermediate_size": "size",
                      "layer_norm_eps": "positive", "hidden_act": "text"},
    "high_res_vision_config": {"model_type": "text", "image_size": "size", "patch_size": "size",
                               "hidden_size": "size", "num_hidden_layers": "size", "num_attention_heads": "size",
                               "mlp_dim": "size?", "mlp_ratio": "positive", "window_size": "size",
                               "global_attn_indexes": "indexes", "output_channels": "size",
                               "layer_norm_eps": "positive"},
}
# The model_type each sub-config must name: the only towers and LLM the transformers port builds.
HF_SUBCONFIG_TYPES = {"text_config": "llama", "vision_config": "siglip_vision_model",
                      "high_res_vision_config": "sam_vision_model"}

# Our config's keys as transformers spells them, for errors found once our config is built (a head count
# that does not divide the width, the parameter ceiling, ...). A section name maps every key under it.
HF_RENAMES = {
    **{f"llm.{ours}": f"text_config.{theirs}" for ours, theirs in LLAMA_NAMES.items()},
    "llm.rope_theta": "text_config.rope_parameters.rope_theta", "llm": "text_config",
    "siglip.width": "vision_config.hidden_size", "siglip.depth": "vision_config.num_hidden_layers",
    "siglip.num_heads": "vision_config.num_attention_heads", "siglip.mlp_dim": "vision_config.intermediate_size",
    "siglip": "vision_config", "token_grid": "vision_config.image_size",
    "sam.width": "high_res_vision_config.hidden_size", "sam.depth": "high_res_vision_config.num_hidden_layers",
    "sam.num_heads": "high_res_vision_config.num_attention_heads",
    "sam.neck_channels": "high_res_vision_config.output_channels", "sam": "high_res_vision_config",
    "aligner": "model_type", "bos_token_id": "text_config.bos_token_id", "eos_token_id": "text_config.eos_token_id",
    "pad_token_id": "text_config.pad_token_id",
}


def hf_config_from(config: DSVLConfig):
    """The transformers config for our config (tied embeddings off: the release's head is separate)."""
    from transformers import DeepseekVLConfig, DeepseekVLHybridConfig

    check_hf_compatible(config)
    llm, siglip = config.llm, config.siglip
    text_config = dict(
        model_type="llama", vocab_size=llm.vocab_size, hidden_size=llm.hidden_size,
        intermediate_size=llm.intermediate_size, num_hidden_layers=llm.num_layers,
        num_attention_heads=llm.num_heads, num_key_value_heads=llm.num_kv_heads, rms_norm_eps=llm.rms_norm_eps,
        max_position_embeddings=llm.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": llm.rope_theta}, tie_word_embeddings=False,
        **{key: _hf_token_id(getattr(config, key), llm.vocab_size)
           for key in ("bos_token_id", "eos_token_id", "pad_token_id")},
    )
    vision_config = dict(
        model_type="siglip_vision_model", hidden_size=siglip.width, intermediate_size=siglip.mlp_dim,
        num_hidden_layers=siglip.depth, num_attention_heads=siglip.num_heads, image_size=siglip.image_size,
        patch_size=siglip.patch_size, layer_norm_eps=siglip.layer_norm_eps,
        hidden_act="gelu",  # exact GELU as the original timm code (transformers' default is tanh)
        vision_use_head=False,
    )
    common = dict(text_config=text_config, vision_config=vision_config, image_token_id=config.image_token_id,
                  tie_word_embeddings=False)
    if config.encoder == "siglip":
        return DeepseekVLConfig(**common)
    sam = config.sam
    high_res_vision_config = dict(
        model_type="sam_vision_model", hidden_size=sam.width, output_channels=sam.neck_channels,
        num_hidden_layers=sam.depth, num_attention_heads=sam.num_heads, image_size=sam.image_size,
        patch_size=sam.patch_size, mlp_dim=sam.mlp_dim, window_size=sam.window_size,
        global_attn_indexes=list(sam.global_attn_indexes), layer_norm_eps=sam.layer_norm_eps, hidden_act="gelu",
    )
    return DeepseekVLHybridConfig(**common, high_res_vision_config=high_res_vision_config)


def _id_or(value, default: int) -> int:
    """A special-token id of a transformers config, or the release's id where it is unset (or a list)."""
    return value if isinstance(value, int) else default


def _hf_token_id(token_id: int, vocab_size: int) -> int | None:
    """A special-token id for transformers' text config: None where it is no row of the vocabulary.

    :func:`_id_or` fills an unset id with the release's (100000 / 100001). In a smaller vocabulary that
    id names no token, and transformers' LLaMA would take the pad id as its embedding's ``padding_idx``
    and fail; writing None gives back what the source had (``to_hf(from_hf(m))`` keeps ``m``'s config).
    """
    return token_id if token_id < vocab_size else None


def config_from_hf(hf_config, name: str = "from-hf", pixel_input: str = "normalized",
                   source: str | Path | None = None) -> DSVLConfig:
    """Our config for a transformers DeepseekVL / DeepseekVLHybrid config (object or dict).

    A dict (a parsed ``config.json``) is checked first (:data:`HF_KEYS`); every problem is a
    ConfigError naming ``source`` and the key as the file spells it.
    """
    if isinstance(hf_config, dict):
        hf_config = _hf_config_object(hf_config, source)
    try:
        return _config_from_hf_object(hf_config, name, pixel_input)
    except ConfigError as error:
        raise in_file(file_key(error, HF_RENAMES), source) from None


def _hf_config_object(data: dict, source):
    """transformers' config object for a checked ``config.json`` dict."""
    from transformers import DeepseekVLConfig, DeepseekVLHybridConfig

    check_keys(data, HF_KEYS, source)
    model_type = data.get("model_type")
    if model_type not in ("deepseek_vl", "deepseek_vl_hybrid"):
        raise ConfigError(f"must be deepseek_vl or deepseek_vl_hybrid, got {model_type!r}", source, "model_type")
    hybrid = model_type == "deepseek_vl_hybrid"
    if not hybrid and "high_res_vision_config" in data:  # transformers would keep it as a stray dict
        raise ConfigError("is deepseek_vl (SigLIP only) but the file has a high_res_vision_config; a hybrid "
                          "model is deepseek_vl_hybrid", source, "model_type")
    require(data, ["text_config", "vision_config"] + (["high_res_vision_config"] if hybrid else []), source)
    for section, model_type in HF_SUBCONFIG_TYPES.items():
        found = data.get(section, {}).get("model_type", model_type)
        if found != model_type:
            raise ConfigError(f"must be {model_type!r} for DeepSeek-VL, got {found!r}", source, f"{section}.model_type")
    for section in ("", *HF_SUBCONFIG_TYPES):  # transformers looks the name up on torch: name it here instead
        for key in ("dtype", "torch_dtype"):
            value = (dig(data, section) or {}).get(key)
            named = isinstance(value, str) and isinstance(getattr(torch, value, None), torch.dtype)
            if value is not None and not named:
                raise ConfigError(f"must name a torch dtype (float32, bfloat16, ...), got {value!r}", source,
                                  f"{section}.{key}".lstrip("."))
    text = data["text_config"]
    if text.get("head_dim") is not None and text.get("hidden_size") and text.get("num_attention_heads"):
        if text["head_dim"] * text["num_attention_heads"] != text["hidden_size"]:
            raise ConfigError(f"{text['head_dim']} x num_attention_heads {text['num_attention_heads']} must equal "
                              f"hidden_size {text['hidden_size']} (this workbench's LLaMA has no separate head_dim)",
                              source, "text_config.head_dim")
    klass = DeepseekVLHybridConfig if hybrid else DeepseekVLConfig
    try:
        return klass(**{k: v for k, v in data.items() if k not in ("architectures", "transformers_version")})
    except Exception as error:  # transformers' own validation raises several types; each is about the file
        problem, key = _transformers_problem(error, data)
        raise ConfigError(problem, source=source, key=key) from None


def _transformers_problem(error: Exception, data: dict) -> tuple[str, str | None]:
    """(one-line problem, the file's key) for an error transformers raised on a config dict."""
    text = " ".join(str(error).split())
    match = re.search(r"field '(\w+)'", text)
    key = None
    if match:
        field_name = match.group(1)
        sections = [s for s in ("", *HF_SUBCONFIG_TYPES)
                    if isinstance(dig(data, s), dict) and field_name in dig(data, s)]
        key = f"{sections[0]}.{field_name}".lstrip(".") if sections else field_name
    return f"transformers cannot read it: {text[:160]}", key


def _config_from_hf_object(hf_config, name: str, pixel_input: str) -> DSVLConfig:
    """Our config from a transformers config object (unset special-token ids become the release's)."""
    text, vision = hf_config.text_config, hf_config.vision_config
    high = getattr(hf_config, "high_res_vision_config", None)
    if getattr(vision, "hidden_act", None) not in ("gelu", None):
        warnings.warn(f"the transformers SigLIP uses hidden_act={vision.hidden_act!r}; ours uses exact GELU as the "
                      f"original, so outputs will differ slightly", stacklevel=2)
    rope = getattr(text, "rope_parameters", None) or {}
    llm = LLMConfig(
        vocab_size=text.vocab_size, hidden_size=text.hidden_size, intermediate_size=text.intermediate_size,
        num_layers=text.num_hidden_layers, num_heads=text.num_attention_heads,
        num_kv_heads=text.num_key_value_heads or text.num_attention_heads, rms_norm_eps=text.rms_norm_eps,
        rope_theta=float(rope.get("rope_theta", 10000.0)), max_position_embeddings=text.max_position_embeddings,
    )
    siglip = SigLIPConfig(
        image_size=vision.image_size, patch_size=vision.patch_size, width=vision.hidden_size,
        depth=vision.num_hidden_layers, num_heads=vision.num_attention_heads, mlp_dim=vision.intermediate_size,
        layer_norm_eps=vision.layer_norm_eps,
    )
    sam = None
    if high is not None:
        sam = SAMConfig(
            image_size=high.image_size, patch_size=high.patch_size, width=high.hidden_size,
            depth=high.num_hidden_layers, num_heads=high.num_attention_heads,
            mlp_dim=high.mlp_dim or int(high.hidden_size * high.mlp_ratio), window_size=high.window_size,
            global_attn_indexes=tuple(high.global_attn_indexes), neck_channels=high.output_channels,
            layer_norm_eps=high.layer_norm_eps,
        )
    return DSVLConfig(
        name=name, encoder="hybrid" if sam else "siglip", token_grid=siglip.grid, siglip=siglip, sam=sam,
        aligner=AlignerConfig("low_high_hybrid_split_mlp_gelu" if sam else "mlp_gelu", depth=2), llm=llm,
        pixel_input=pixel_input, image_token_id=hf_config.image_token_id,
        bos_token_id=_id_or(text.bos_token_id, 100000), eos_token_id=_id_or(text.eos_token_id, 100001),
        pad_token_id=_id_or(text.pad_token_id, 100001),
    )


def hf_folder_config(folder: Path) -> DSVLConfig:
    """A transformers folder's config (its ``config.json``), named after the folder."""
    path = folder / "config.json"
    return config_from_hf(read_config_json(path), name=folder.name, source=path)
