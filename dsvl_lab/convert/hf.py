"""In-memory conversion between a transformers DeepSeek-VL model and our :class:`DSVLModel`.

- ``from_hf(hf_model)``: a transformers ``DeepseekVLForConditionalGeneration`` (SigLIP layouts) or
  ``DeepseekVLHybridForConditionalGeneration`` (hybrid layouts) -> a :class:`DSVLModel` that takes
  the same inputs (already normalised pixels, low-res view separate) and returns the same logits.
- ``to_hf(model)``: the reverse.

Each is a config conversion (:mod:`~dsvl_lab.convert.hf_config`) plus a state-dict conversion
(:mod:`~dsvl_lab.convert.hf_keys`), loaded strictly so no weight is silently left behind.
"""
from __future__ import annotations

from ..model import DSVLModel
from .hf_config import config_from_hf, hf_config_from
from .hf_keys import hf_state_to_ours, our_state_to_hf


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
    klass = (DeepseekVLHybridForConditionalGeneration if model.config.encoder == "hybrid"
             else DeepseekVLForConditionalGeneration)
    hf_model = klass(hf_config)
    hf_state = our_state_to_hf(model.state_dict(), model.config)
    missing, unexpected = hf_model.load_state_dict(hf_state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise KeyError(f"transformers model did not take our weights: missing {missing}, unexpected {unexpected}")
    return hf_model.to(next(model.parameters()).dtype).eval()
