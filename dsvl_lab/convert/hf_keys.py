"""transformers' parameter names for ours: a key map with two reshapes.

Our module names follow the original checkpoint (``vision_model``, ``aligner``, ``language_model``,
SigLIP's ``blocks.i.attn.qkv``, SAM's ``neck.0..3``); the transformers port
(``DeepseekVLForConditionalGeneration`` / ``DeepseekVLHybridForConditionalGeneration``) renamed them.
Its key map is a list of prefix rules per tower, plus two reshapes: SigLIP's fused ``qkv`` is split
into transformers' ``q_proj``, ``k_proj``, ``v_proj``, and SigLIP's position table (timm's
``pos_embed``, ``[1, N, D]``) loses its leading batch axis (transformers' ``position_embedding``, an
``nn.Embedding`` of ``[N, D]``).
"""
from __future__ import annotations

import re

import torch

from ..config import DSVLConfig
from ..model import DSVLModel

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
    """``name`` renamed by the first rule whose prefix it starts with (its layer index carried over), or None."""
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
    """Our state dict under transformers' names (qkv split, SigLIP's position table squeezed)."""
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
