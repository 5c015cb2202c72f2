"""Shared fixtures: small random models and batches that follow the processor's conventions."""
from __future__ import annotations

import pytest
import torch

from dsvl_lab.config import DSVLConfig
from dsvl_lab.model import DSVLModel


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give zero- or one-initialised tensors (rel_pos, hd alpha, norms) random values.

    A parity test on a model whose SAM relative positions and HD alpha are all zero would not
    notice a bug in those paths.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if bool((param == param.flatten()[0]).all()):
                param.add_(torch.randn(param.shape, generator=generator) * 0.1)
    return model


def make_batch(config: DSVLConfig, batch: int = 2, text_len: int = 7, pad_first: int = 0, seed: int = 0,
               normalized: bool = False):
    """One image per row at position 2, random text around it, optional left padding on row 1.

    Returns model kwargs. ``normalized=True`` gives transformers-style inputs (low-res view in
    pixel_values, high-res view in high_res_pixel_values); otherwise raw [0, 1] images at the
    processor size.
    """
    generator = torch.Generator().manual_seed(seed)
    n_img = config.num_image_tokens
    length = text_len + n_img
    high = min(config.llm.vocab_size, 4000)

    def row(size: int) -> torch.Tensor:
        tokens = torch.randint(10, high, (size,), generator=generator)
        tokens[2:2 + n_img] = config.image_token_id
        return tokens

    ids = torch.stack([row(length) for _ in range(batch)])
    mask = torch.ones_like(ids)
    if pad_first:
        ids[1] = torch.cat([torch.full((pad_first,), config.pad_token_id), row(length - pad_first)])
        mask[1, :pad_first] = 0
    labels = ids.masked_fill((mask == 0) | (ids == config.image_token_id), -100)
    # The first real token plays BOS: nothing predicts it (its predictor would be a padding position).
    first_real = mask.argmax(dim=1)
    labels[torch.arange(batch), first_real] = -100
    kwargs = dict(input_ids=ids, attention_mask=mask, labels=labels)
    if normalized:
        kwargs["pixel_values"] = torch.randn(batch, 3, config.siglip.image_size, config.siglip.image_size,
                                             generator=generator)
        if config.sam is not None:
            kwargs["high_res_pixel_values"] = torch.randn(batch, 3, config.sam.image_size, config.sam.image_size,
                                                          generator=generator)
    else:
        kwargs["pixel_values"] = torch.rand(batch, 3, config.image_size, config.image_size, generator=generator)
    return kwargs


@pytest.fixture(params=["dsvl-micro-siglip", "dsvl-micro-sam", "dsvl-micro-hybrid"])
def micro_model(request) -> DSVLModel:
    torch.manual_seed(0)
    return randomize_(DSVLModel.from_name(request.param)).eval()


# An original config.json in the release's shape, shared by test_checkpoints and test_input_checks
# (fields from docs/deepseek_vl_facts.md; not the verbatim file).
ORIGINAL_7B = {
    "model_type": "multi_modality",
    "aligner_config": {"cls": "MlpProjector", "params": {
        "depth": 2, "input_dim": 1024, "n_embed": 4096, "projector_type": "low_high_hybrid_split_mlp_gelu"}},
    "language_config": {"max_position_embeddings": 16384, "model_type": "llama", "num_hidden_layers": 30,
                        "torch_dtype": "float16", "vocab_size": 102400},
    "vision_config": {"cls": "HybridVisionTower", "params": {
        "concat_type": "tuple", "freeze_high": True, "freeze_low": True,
        "high_res_cfg": {"image_size": 1024, "model_name": "sam_b_downsample", "select_layer": -1,
                         "pixel_mean": [0.48145466, 0.4578275, 0.40821073],
                         "pixel_std": [0.26862954, 0.26130258, 0.27577711]},
        "low_res_cfg": {"image_size": 384, "model_name": "siglip_large_patch16_384", "select_layer": -1,
                        "pixel_mean": [0.5, 0.5, 0.5], "pixel_std": [0.5, 0.5, 0.5]}}},
}
