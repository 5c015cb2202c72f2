"""Parity with transformers' DeepseekVL / DeepseekVLHybrid: weights moved both ways, same logits.

Configs are drawn at random (depths, widths, heads, grouped-query attention, SAM windows that
need padding, global-block positions) so the key map and the reshapes are exercised beyond one
hand-picked shape. Tolerance: 1e-4 on logits in fp32 on CPU.
"""
from __future__ import annotations

import random

import pytest
import torch

from dsvl_lab import convert
from dsvl_lab.config import DSVLConfig
from dsvl_lab.model import DSVLModel

from conftest import make_batch, randomize_

pytestmark = pytest.mark.parity
ATOL = 1e-4


def random_config(encoder: str, seed: int) -> DSVLConfig:
    rng = random.Random(seed)
    heads = rng.choice([2, 4])
    sam_depth = rng.choice([2, 3, 4])
    grid = rng.choice([2, 3, 4])
    sam_patch = rng.choice([4, 8])
    sam_grid = rng.choice([5, 6, 8])
    overrides = {
        "token_grid": grid,
        "siglip.image_size": grid * 8, "siglip.patch_size": 8,
        "siglip.width": 16 * rng.choice([2, 3]), "siglip.depth": rng.choice([1, 2]), "siglip.num_heads": 2,
        "siglip.mlp_dim": rng.choice([40, 64]),
        "llm.hidden_size": 16 * heads * rng.choice([1, 2]), "llm.num_heads": heads,
        "llm.num_kv_heads": rng.choice([heads, heads // 2]), "llm.num_layers": rng.choice([1, 2, 3]),
        "llm.intermediate_size": rng.choice([48, 96]), "llm.rope_theta": rng.choice([10000.0, 500.0]),
    }
    if encoder == "hybrid":
        overrides.update({
            "sam.image_size": sam_grid * sam_patch, "sam.patch_size": sam_patch, "sam.width": 32,
            "sam.depth": sam_depth, "sam.num_heads": 2, "sam.mlp_dim": 48,
            "sam.window_size": rng.choice([2, 3, 4]),
            "sam.global_attn_indexes": tuple(sorted(rng.sample(range(sam_depth), rng.choice([1, 2])))),
            "sam.neck_channels": rng.choice([8, 12]),
        })
    return DSVLConfig.from_name(f"dsvl-micro-{encoder}", **overrides)


def assert_same_logits(hf_out, our_out, mask):
    real = mask.bool()
    difference = (hf_out.logits[real] - our_out.logits[real]).abs().max().item()
    assert difference < ATOL, f"max logit difference {difference:.2e}"


CASES = [(encoder, seed) for encoder in ("siglip", "hybrid") for seed in range(3)]


@pytest.mark.parametrize("encoder,seed", CASES)
@pytest.mark.parametrize("pad", [0, 3])
def test_transformers_to_ours_and_back_gives_the_same_logits_and_loss(encoder, seed, pad):
    torch.manual_seed(seed)
    config = random_config(encoder, seed)
    hf_model = convert.to_hf(randomize_(DSVLModel(config), seed)).eval()  # a transformers model with random weights
    ours = convert.from_hf(hf_model).eval()
    round_trip = convert.to_hf(ours).eval()
    batch = make_batch(ours.config, pad_first=pad, seed=seed, normalized=True)
    with torch.no_grad():
        reference = hf_model(**batch)
        mine = ours(**batch)
        back = round_trip(**batch)
    assert_same_logits(reference, mine, batch["attention_mask"])
    assert_same_logits(reference, back, batch["attention_mask"])
    assert abs(reference.loss.item() - mine.loss.item()) < ATOL
    assert abs(reference.loss.item() - back.loss.item()) < ATOL


@pytest.mark.parametrize("encoder", ["siglip", "hybrid"])
def test_round_trip_moves_every_weight_exactly(encoder):
    config = random_config(encoder, 7)
    ours = randomize_(DSVLModel(config.replace(pixel_input="normalized")), 7)
    back = convert.from_hf(convert.to_hf(ours))
    for key, tensor in ours.state_dict().items():
        assert torch.equal(tensor, back.state_dict()[key]), key


def test_transformers_initialised_model_converts_too():
    """Start from a model transformers built and initialised itself, not from ours."""
    from transformers import DeepseekVLHybridForConditionalGeneration

    config = random_config("hybrid", 11)
    hf_model = DeepseekVLHybridForConditionalGeneration(convert.hf_config_from(config)).eval()
    ours = convert.from_hf(hf_model).eval()
    batch = make_batch(ours.config, pad_first=2, seed=11, normalized=True)
    with torch.no_grad():
        assert_same_logits(hf_model(**batch), ours(**batch), batch["attention_mask"])


def test_layouts_transformers_cannot_hold_fail_clearly():
    with pytest.raises(ValueError, match="SAM-only"):
        convert.to_hf(DSVLModel.from_name("dsvl-micro-sam"))
    with pytest.raises(ValueError, match="depth"):
        convert.to_hf(DSVLModel.from_name("dsvl-micro-siglip", **{"aligner.depth": 3}))


@pytest.mark.parametrize("encoder,unset", [("siglip", ("pad_token_id",)), ("hybrid", ("pad_token_id",)),
                                           ("siglip", ("pad_token_id", "bos_token_id", "eos_token_id"))])
def test_round_trip_keeps_special_token_ids_the_source_left_unset(encoder, unset):
    """LLaMA's text config has no pad_token_id by default; with a vocabulary smaller than the release's ids,
    from_hf's stand-in 100001 must not come back from to_hf (transformers refuses it as padding_idx)."""
    from transformers import DeepseekVLForConditionalGeneration, DeepseekVLHybridForConditionalGeneration

    hf_config = convert.hf_config_from(random_config(encoder, 5))
    for key in unset:
        setattr(hf_config.text_config, key, None)
    klass = DeepseekVLHybridForConditionalGeneration if encoder == "hybrid" else DeepseekVLForConditionalGeneration
    hf_model = klass(hf_config).eval()
    back = convert.to_hf(convert.from_hf(hf_model)).eval()
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        assert getattr(back.config.text_config, key) == getattr(hf_config.text_config, key), key
    batch = make_batch(convert.config_from_hf(hf_config), seed=5, normalized=True)
    with torch.no_grad():
        assert_same_logits(hf_model(**batch), back(**batch), batch["attention_mask"])
