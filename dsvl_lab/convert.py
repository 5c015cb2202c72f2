"""Checkpoints and interop: transformers <-> ours, and the original DeepSeek-VL key names.

- ``from_hf(hf_model)``: a transformers ``DeepseekVLForConditionalGeneration`` (SigLIP layouts) or
  ``DeepseekVLHybridForConditionalGeneration`` (hybrid layouts) -> a :class:`DSVLModel` that takes
  the same inputs (already normalised pixels, low-res view separate) and returns the same logits.
- ``to_hf(model)``: the reverse.
- ``load_pretrained(folder)`` / ``save_pretrained(model, folder)``: local folders in our format,
  the transformers format or the original DeepSeek-VL format (facts sheet section 3). Nothing is
  ever downloaded: the folder must already be on disk.

Our module names follow the original checkpoint (``vision_model``, ``aligner``, ``language_model``,
SigLIP's ``blocks.i.attn.qkv``, SAM's ``neck.0..3``), so the original format is a prefix map, and
transformers' format is a key map with two reshapes: SigLIP's fused qkv is split into q, k, v, and
SigLIP's position table loses its leading batch axis.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from .atomic import atomic_write
from .config import (AlignerConfig, DSVLConfig, LLMConfig, SAMConfig, SigLIPConfig, did_you_mean, in_file,
                     read_config_json, value_problem)
from .errors import ConfigError, InputError
from .model import DSVLModel

OUR_CONFIG = "dsvl_config.json"
WEIGHTS = "model.safetensors"

# ============================================================================ transformers key map
# Ordered (our prefix, transformers prefix) pairs; the first match wins. ``{i}`` is a layer index.
_SIGLIP_RULES = [
    ("patch_embed.proj.", "embeddings.patch_embedding."),
    ("pos_embed", "embeddings.position_embedding.weight"),
    ("blocks.{i}.norm1.", "encoder.layers.{i}.layer_norm1."),
    ("blocks.{i}.norm2.", "encoder.layers.{i}.layer_norm2."),
    ("blocks.{i}.attn.proj.", "encoder.layers.{i}.self_attn.out_proj."),
    ("blocks.{i}.mlp.", "encoder.layers.{i}.mlp."),
    ("norm.", "post_layernorm."),
]
_SAM_RULES = [
    ("patch_embed.proj.", "model.high_res_vision_model.vision_encoder.patch_embed.projection."),
    ("pos_embed", "model.high_res_vision_model.vision_encoder.pos_embed"),
    ("blocks.{i}.norm1.", "model.high_res_vision_model.vision_encoder.layers.{i}.layer_norm1."),
    ("blocks.{i}.norm2.", "model.high_res_vision_model.vision_encoder.layers.{i}.layer_norm2."),
    ("blocks.{i}.", "model.high_res_vision_model.vision_encoder.layers.{i}."),
    ("neck.0.", "model.high_res_vision_model.vision_encoder.neck.conv1."),
    ("neck.1.", "model.high_res_vision_model.vision_encoder.neck.layer_norm1."),
    ("neck.2.", "model.high_res_vision_model.vision_encoder.neck.conv2."),
    ("neck.3.", "model.high_res_vision_model.vision_encoder.neck.layer_norm2."),
    ("neck_hd.0.", "model.high_res_vision_neck.conv1."),
    ("neck_hd.1.", "model.high_res_vision_neck.layer_norm1."),
    ("neck_hd.2.", "model.high_res_vision_neck.conv2."),
    ("neck_hd.3.", "model.high_res_vision_neck.layer_norm2."),
    ("downsamples.0.", "model.high_res_vision_proj.conv1."),
    ("downsamples.1.", "model.high_res_vision_proj.conv2."),
    ("hd_alpha_downsamples", "model.high_res_vision_alpha"),
]
_ALIGNER_RULES = {
    "mlp_gelu": [("layers.0.", "model.aligner.linear1."), ("layers.2.", "model.aligner.linear2.")],
    "low_high_hybrid_split_mlp_gelu": [
        ("high_up_proj.", "model.aligner.high_res_vision_proj."),
        ("low_up_proj.", "model.aligner.vision_proj."),
        ("layers.1.", "model.aligner.proj."),
    ],
}


def _apply_rules(name: str, rules: list[tuple[str, str]]) -> str | None:
    for ours, theirs in rules:
        pattern = "^" + re.escape(ours).replace(r"\{i\}", r"(\d+)")
        match = re.match(pattern, name)
        if match:
            index = match.group(1) if match.groups() else None
            target = theirs.replace("{i}", index) if index is not None else theirs
            return target + name[match.end():]
    return None


def hf_keys_for(our_key: str, config: DSVLConfig) -> list[str]:
    """transformers key(s) holding our parameter ``our_key`` (three for SigLIP's fused qkv)."""
    if our_key.startswith("language_model.model."):
        return ["model.language_model." + our_key[len("language_model.model."):]]
    if our_key == "language_model.lm_head.weight":
        return ["lm_head.weight"]
    if our_key.startswith("vision_model.low."):
        rest = our_key[len("vision_model.low."):]
        qkv = re.match(r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", rest)
        if qkv:
            layer, kind = qkv.groups()
            return [f"model.vision_model.encoder.layers.{layer}.self_attn.{p}_proj.{kind}" for p in "qkv"]
        mapped = _apply_rules(rest, _SIGLIP_RULES)
        return ["model.vision_model." + mapped] if mapped else []
    if our_key.startswith("vision_model.high."):
        mapped = _apply_rules(our_key[len("vision_model.high."):], _SAM_RULES)
        return [mapped] if mapped else []
    if our_key.startswith("aligner."):
        mapped = _apply_rules(our_key[len("aligner."):], _ALIGNER_RULES.get(config.aligner.projector_type, []))
        return [mapped] if mapped else []
    return []


def check_hf_compatible(config: DSVLConfig) -> None:
    """transformers has only the two released layouts; say clearly what it cannot hold."""
    problems = []
    if config.encoder == "sam":
        problems.append("transformers has no SAM-only DeepSeek-VL (use -siglip or -hybrid)")
    if config.aligner.depth != 2:
        problems.append(f"transformers' aligners have depth 2, this config has depth {config.aligner.depth}")
    if config.aligner.projector_type not in _ALIGNER_RULES:
        problems.append(f"transformers has no '{config.aligner.projector_type}' aligner")
    if problems:
        raise ValueError("cannot convert to transformers: " + "; ".join(problems))


def our_state_to_hf(state: dict[str, torch.Tensor], config: DSVLConfig) -> dict[str, torch.Tensor]:
    check_hf_compatible(config)
    hf_state: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        targets = hf_keys_for(key, config)
        if not targets:
            raise KeyError(f"no transformers name for our parameter {key!r}")
        if len(targets) == 3:  # fused qkv [3D, ...] -> q, k, v [D, ...]
            for target, part in zip(targets, tensor.chunk(3, dim=0)):
                hf_state[target] = part.clone()
        elif key == "vision_model.low.pos_embed":
            hf_state[targets[0]] = tensor.squeeze(0)  # [1, N, D] -> [N, D]
        else:
            hf_state[targets[0]] = tensor
    return hf_state


def hf_state_to_ours(hf_state: dict[str, torch.Tensor], model: DSVLModel) -> dict[str, torch.Tensor]:
    """Pick, for each of our parameters, the transformers tensor(s); missing ones raise KeyError."""
    hf_state = {normalize_hf_key(k): v for k, v in hf_state.items()}
    state: dict[str, torch.Tensor] = {}
    missing: list[str] = []
    for key in model.state_dict():
        sources = hf_keys_for(key, model.config)
        if not sources or any(s not in hf_state for s in sources):
            missing.append(f"{key} <- {sources or '?'}")
            continue
        if len(sources) == 3:
            state[key] = torch.cat([hf_state[s] for s in sources], dim=0)
        elif key == "vision_model.low.pos_embed":
            state[key] = hf_state[sources[0]].unsqueeze(0)
        else:
            state[key] = hf_state[sources[0]]
    if missing:
        raise KeyError("transformers weights are missing for: " + ", ".join(missing))
    return state


def normalize_hf_key(key: str) -> str:
    """Converted Hub files keep transformers 4.x's SiglipVisionModel prefix ``vision_model.vision_model.``."""
    return key.replace("model.vision_model.vision_model.", "model.vision_model.")


# ============================================================================ transformers configs
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
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id,
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


# ============================================================================ in-memory conversion
def from_hf(hf_model, pixel_input: str = "normalized") -> DSVLModel:
    """A transformers DeepseekVL[Hybrid]ForConditionalGeneration -> our DSVLModel, same weights.

    The result takes exactly the transformers inputs (``pixel_input="normalized"``): the normalised
    low-res view as ``pixel_values`` and, for the hybrid, the normalised high-res view as
    ``high_res_pixel_values``. Pass ``pixel_input="raw"`` to get the original convention instead.
    """
    config = config_from_hf(hf_model.config, pixel_input=pixel_input)
    model = DSVLModel(config)
    model.load_state_dict(hf_state_to_ours(hf_model.state_dict(), model), strict=True)
    return model.to(next(hf_model.parameters()).dtype)


def to_hf(model: DSVLModel):
    """Our DSVLModel -> the transformers model (DeepseekVL for SigLIP layouts, DeepseekVLHybrid for hybrid)."""
    from transformers import DeepseekVLForConditionalGeneration, DeepseekVLHybridForConditionalGeneration

    hf_config = hf_config_from(model.config)
    klass = DeepseekVLHybridForConditionalGeneration if model.config.encoder == "hybrid" else DeepseekVLForConditionalGeneration
    hf_model = klass(hf_config)
    hf_state = our_state_to_hf(model.state_dict(), model.config)
    missing, unexpected = hf_model.load_state_dict(hf_state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise KeyError(f"transformers model did not take our weights: missing {missing}, unexpected {unexpected}")
    return hf_model.to(next(model.parameters()).dtype).eval()


# ============================================================================ original key map
# Parameters of the original checkpoint that are never used in its forward pass (facts 2.3, 2.4).
ORIGINAL_UNUSED = (re.compile(r"\.attn_pool\."), re.compile(r"^vision_model\.(high|low)_layer_norm\."))


def original_key_for(our_key: str, config: DSVLConfig) -> str:
    """The original DeepSeek-VL checkpoint name of our parameter."""
    if our_key.startswith("vision_model.low."):
        tower = "vision_model.vision_tower." if config.encoder == "siglip" else "vision_model.vision_tower_low.vision_tower."
        return tower + our_key[len("vision_model.low."):]
    if our_key.startswith("vision_model.high."):
        tower = "vision_model.vision_tower." if config.encoder == "sam" else "vision_model.vision_tower_high.vision_tower."
        return tower + our_key[len("vision_model.high."):]
    return our_key  # aligner.* and language_model.* are named as in the original


def our_state_to_original(state: dict[str, torch.Tensor], config: DSVLConfig) -> dict[str, torch.Tensor]:
    return {original_key_for(k, config): v for k, v in state.items()}


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
    towers = ["vision_config.params.high_res_cfg", "vision_config.params.low_res_cfg"] if hybrid else ["vision_config.params"]
    require(data, towers, source)
    for where in towers:
        require(data, [f"{where}.model_name"] + ([f"{where}.pixel_std"] if "pixel_mean" in dig(data, where) else []),
                source)
    try:
        return _config_from_original_dict(data, hybrid)
    except ConfigError as error:
        raise in_file(file_key(error, ORIGINAL_RENAMES_HYBRID if hybrid else ORIGINAL_RENAMES), source) from None


def _config_from_original_dict(data: dict, hybrid: bool) -> DSVLConfig:
    vision = data["vision_config"]["params"]
    aligner = data["aligner_config"]["params"]
    language = data["language_config"]
    defaults = LLMConfig(hidden_size=4096, intermediate_size=11008, num_layers=32, num_heads=32, num_kv_heads=32)

    def tower(cfg: dict, where: str):
        name = cfg.get("model_name")
        if name not in _ORIGINAL_TOWERS:
            raise ConfigError(f"unknown original vision tower {name!r} (known: {sorted(_ORIGINAL_TOWERS)}); "
                              f"pass config=DSVLConfig(...) (or --preset) to load this folder", key=f"{where}.model_name")
        built = _ORIGINAL_TOWERS[name](cfg)
        if "pixel_mean" in cfg:
            built.pixel_mean, built.pixel_std = tuple(cfg["pixel_mean"]), tuple(cfg["pixel_std"])
        return built

    if hybrid:
        encoder = "hybrid"
        sam = tower(vision["high_res_cfg"], "vision_config.params.high_res_cfg")
        siglip = tower(vision["low_res_cfg"], "vision_config.params.low_res_cfg")
    else:
        encoder, sam, siglip = "siglip", None, tower(vision, "vision_config.params")
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
        aligner=AlignerConfig(aligner.get("projector_type", "mlp_gelu"), depth=aligner.get("depth", 2)), llm=llm,
    )


# ============================================================================ checking config.json files
# The keys each reader uses, section by section, with the check each value needs (the kinds of
# config.value_problem; a trailing "?" allows null). Other keys are the bookkeeping of transformers or
# of the original code (architectures, torch_dtype, select_layer, ...) and are ignored, as those
# libraries ignore keys they do not use; but a key that looks like a misspelling of one read here is
# refused, because the value it meant to set would silently fall back to a default.
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
HF_SUBCONFIG_TYPES = {"text_config": "llama", "vision_config": "siglip_vision_model",
                      "high_res_vision_config": "sam_vision_model"}
_TOWER_KEYS = {"model_name": "text", "image_size": "size", "pixel_mean": "triple", "pixel_std": "positive_triple"}
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

# Our config's keys as each file spells them, for errors found once our config is built (a head count
# that does not divide the width, the parameter ceiling, ...). A section name maps every key under it.
_HF_LLM = {"num_layers": "num_hidden_layers", "num_heads": "num_attention_heads",
           "num_kv_heads": "num_key_value_heads"}
HF_RENAMES = {
    **{f"llm.{ours}": f"text_config.{theirs}" for ours, theirs in _HF_LLM.items()},
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
ORIGINAL_RENAMES = {
    **{f"llm.{ours}": f"language_config.{theirs}" for ours, theirs in _HF_LLM.items()}, "llm": "language_config",
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


def dig(data: dict, dotted: str):
    """``data["a"]["b"]`` for ``"a.b"`` (``data`` itself for ``""``); None where a step is missing."""
    for part in filter(None, dotted.split(".")):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def check_keys(data: dict, schema: dict[str, dict[str, str]], source) -> None:
    """Check the values of the keys a reader uses, and refuse near-misses of them (see :data:`HF_KEYS`)."""
    if not isinstance(data, dict):
        raise ConfigError(f"must hold a JSON object, got {type(data).__name__}", source=source)
    for section, kinds in schema.items():  # parents come first, so a section is a mapping when it is read
        part = dig(data, section)
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            where = f"{section}.{key}" if section else str(key)
            if key not in kinds:
                hint = did_you_mean(key, kinds, cutoff=0.85)
                if hint:
                    raise ConfigError(f"unknown key{hint}", source=source, key=where)
                continue
            kind = kinds[key]
            if kind.endswith("?"):
                if value is None:
                    continue
                kind = kind[:-1]
            problem = value_problem(kind, value)
            if problem:
                raise ConfigError(problem, source=source, key=where)


def require(data: dict, keys: list[str], source) -> None:
    """Each dotted key is present (the readers have no default for them)."""
    for key in keys:
        if dig(data, key) is None:
            raise ConfigError("missing: this reader needs it", source=source, key=key)


def file_key(error: ConfigError, renames: dict[str, str]) -> ConfigError:
    """The error with our config's key (``llm.num_heads``) spelled as the file does (``text_config....``)."""
    key = error.key
    if key in renames:
        key = renames[key]
    elif key and key.split(".")[0] in renames:
        head, _, rest = key.partition(".")
        key = f"{renames[head]}.{rest}"
    return ConfigError(error.problem, source=error.source, key=key)


def folder_config(folder: Path, fmt: str) -> DSVLConfig:
    """The DSVLConfig a model folder's config file describes (reads no weights)."""
    if fmt == "ours":
        return DSVLConfig.load(folder / OUR_CONFIG)
    path = folder / "config.json"
    if fmt == "hf":
        return config_from_hf(read_config_json(path), name=folder.name, source=path)
    return config_from_original(read_config_json(path), source=path)


# ============================================================================ folders
def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except Exception as error:  # safetensors' own errors do not name the file
        raise ValueError(f"cannot read weights file {path}: {error}. Is it complete? Re-copy or re-save it") from error


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a folder: model.safetensors, sharded safetensors (with an index), or pytorch_model.bin."""
    index = folder / "model.safetensors.index.json"
    load = _load_safetensors
    if index.exists():
        weight_map = read_config_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise InputError("must map tensor names to shard file names", source=index, key="weight_map")
        files = [folder / shard for shard in sorted(set(weight_map.values()))]
    else:
        files = sorted(folder.glob("*.safetensors"))
    if not files:
        files = sorted(folder.glob("pytorch_model*.bin"))
        load = lambda file: torch.load(file, map_location="cpu", weights_only=True)  # noqa: E731
    if not files:
        raise FileNotFoundError(f"no weights in {folder}: expected model.safetensors, sharded *.safetensors with "
                                f"model.safetensors.index.json, or pytorch_model.bin")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load(file))
    return state


def detect_format(folder: Path) -> str:
    """'ours', 'hf' or 'original', from the config files present."""
    if (folder / OUR_CONFIG).exists():
        return "ours"
    config_file = folder / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{folder} has neither {OUR_CONFIG} nor config.json: is it a model folder?")
    model_type = read_config_json(config_file).get("model_type")
    if model_type in ("deepseek_vl", "deepseek_vl_hybrid"):
        return "hf"
    if model_type == "multi_modality":
        return "original"
    raise ConfigError(f"unknown model_type {model_type!r}; expected deepseek_vl, deepseek_vl_hybrid "
                      f"(transformers) or multi_modality (original DeepSeek-VL)", source=config_file, key="model_type")


def load_state_checked(model: DSVLModel, state: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict that lists every missing, unexpected and misshapen tensor before failing."""
    expected = {k: v.shape for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    misshapen = sorted(f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k])}"
                       for k in set(state) & set(expected) if state[k].shape != expected[k])
    if missing or extra or misshapen:
        lines = [f"cannot load {source}:"]
        for title, items in (("missing", missing), ("unexpected", extra), ("misshapen", misshapen)):
            if items:
                lines.append(f"  {len(items)} {title}: " + ", ".join(items[:20]) + (" ..." if len(items) > 20 else ""))
        lines.append("  check that the folder matches the config (preset, encoder, sizes)")
        raise ValueError("\n".join(lines))
    model.load_state_dict(state, strict=True, assign=True)


def load_pretrained(path: str | Path, config: DSVLConfig | str | None = None, dtype: torch.dtype | None = None,
                    pixel_input: str = "raw") -> DSVLModel:
    """Load a local model folder in our, the transformers or the original DeepSeek-VL format.

    ``config`` (a DSVLConfig or preset name) overrides the folder's config, e.g. for an original
    checkpoint of a tower this loader does not know. ``pixel_input`` defaults to "raw" so the model
    works with :class:`DSVLProcessor` images; pass "normalized" for transformers-processor inputs.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder. Weights are loaded from a local folder only "
                                f"(nothing is downloaded); point to the checkpoint folder you already have")
    fmt = detect_format(folder)
    if isinstance(config, str):
        config = DSVLConfig.from_name(config)
    if config is None:
        config = folder_config(folder, fmt)  # checked, ceiling included, before anything is built
    if fmt != "ours" or pixel_input != "raw":
        config = config.replace(pixel_input=pixel_input)
    with torch.device("meta"):
        model = DSVLModel(config)
    state = read_weights(folder)
    if fmt == "hf":
        state = hf_state_to_ours(state, model)
    elif fmt == "original":
        state = _original_state_to_ours(state, model)
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    load_state_checked(model, state, f"{folder} ({fmt} format)")
    _rebuild_buffers(model)
    return model.eval()


def _original_state_to_ours(state: dict[str, torch.Tensor], model: DSVLModel) -> dict[str, torch.Tensor]:
    dropped = [k for k in state if any(p.search(k) for p in ORIGINAL_UNUSED)]
    if dropped:
        print(f"note: dropping {len(dropped)} tensors the original model never uses in its forward pass "
              f"(SigLIP's MAP pooling head 'attn_pool', the unused high/low_layer_norm), e.g. {dropped[0]}")
    by_original = {original_key_for(name, model.config): name for name in model.state_dict()}
    return {by_original.get(k, k): v for k, v in state.items() if k not in dropped}


def _rebuild_buffers(model: DSVLModel) -> None:
    """Non-persistent buffers (RoPE frequencies, normalisation stats) were created on the meta device."""
    device = next(model.parameters()).device
    for module in model.modules():
        if hasattr(module, "reset_buffers"):
            module.reset_buffers(device)


def save_pretrained(model: DSVLModel, path: str | Path) -> None:
    """Write ``model.safetensors`` and ``dsvl_config.json``; each file appears whole or not at all."""
    from safetensors.torch import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(folder / WEIGHTS, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    atomic_write(folder / OUR_CONFIG, lambda tmp: model.config.save(tmp))
