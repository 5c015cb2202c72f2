"""Unit tests of the model: shapes, structure, the recording switch, generation."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dsvl_lab.config import DSVLConfig, preset_names
from dsvl_lab.model import DSVLModel
from dsvl_lab.model.sam import window_partition, window_unpartition
from dsvl_lab.model.vision import Normalize, resize_antialiased

from conftest import make_batch, randomize_


# ----------------------------------------------------------------------------------------- sizes
def test_released_parameter_counts_match_the_transformers_port():
    with torch.device("meta"):
        assert DSVLModel.from_name("dsvl-1.3b").num_params() == 1_962_640_384
        assert DSVLModel.from_name("dsvl-7b").num_params() == 7_331_390_721


def test_every_preset_builds_and_sizes_are_separate_axes():
    names = preset_names()
    for size in ("micro", "tiny", "small"):
        for encoder in ("siglip", "sam", "hybrid"):
            assert f"dsvl-{size}-{encoder}" in names
    assert {"dsvl-1.3b", "dsvl-7b", "dsvl-1.3b-hybrid", "dsvl-7b-siglip"} <= set(names)
    with torch.device("meta"):
        for name in names:
            config = DSVLConfig.from_name(name)
            assert DSVLModel(config).num_params() > 0
    assert DSVLConfig.from_name("dsvl-7b").encoder == "hybrid"
    assert DSVLConfig.from_name("dsvl-1.3b").encoder == "siglip"
    assert DSVLConfig.from_name("dsvl-1.3b-hybrid").llm == DSVLConfig.from_name("dsvl-1.3b").llm
    assert DSVLConfig.from_name("dsvl-7b-siglip").siglip == DSVLConfig.from_name("dsvl-7b").siglip


@pytest.mark.parametrize("encoder", ["siglip", "sam", "hybrid"])
def test_small_is_two_to_four_times_tiny(encoder):
    with torch.device("meta"):
        tiny = DSVLModel.from_name(f"dsvl-tiny-{encoder}").num_params()
        small = DSVLModel.from_name(f"dsvl-small-{encoder}").num_params()
    assert 2 <= small / tiny <= 4


def test_release_sam_shapes_follow_the_facts_sheet():
    """The facts sheet is docs/deepseek_vl_facts.md; the SAM-B tower's shapes are its section 2.4."""
    with torch.device("meta"):
        sam = DSVLModel.from_name("dsvl-7b").vision_model.high
    globals_ = [i for i, block in enumerate(sam.blocks) if block.is_global]
    assert globals_ == [2, 5, 8, 11]
    assert tuple(sam.blocks[0].attn.rel_pos_h.shape) == (27, 64)
    assert tuple(sam.blocks[2].attn.rel_pos_h.shape) == (127, 64)
    assert tuple(sam.pos_embed.shape) == (1, 64, 64, 768)
    assert tuple(sam.downsamples[1].weight.shape) == (1024, 512, 3, 3)


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown preset"):
        DSVLConfig.from_name("dsvl-huge")
    with pytest.raises(ValueError, match="token grid"):
        DSVLConfig.from_name("dsvl-micro-siglip", **{"siglip.image_size": 48})
    with pytest.raises(ValueError, match="no field"):
        DSVLConfig.from_name("dsvl-micro-siglip", **{"llm.depth": 3})
    with pytest.raises(ValueError, match="hybrid"):
        DSVLConfig.from_name("dsvl-micro-siglip", encoder="hybrid")


def test_config_round_trips_through_json(tmp_path):
    config = DSVLConfig.from_name("dsvl-micro-hybrid")
    config.save(tmp_path / "c.json")
    assert DSVLConfig.load(tmp_path / "c.json") == config


# ----------------------------------------------------------------------------------------- forward
def test_tokens_per_image_is_g_squared_for_every_encoder(micro_model):
    config = micro_model.config
    images = torch.rand(3, 3, config.image_size, config.image_size)
    embeds = micro_model.encode_images(images)
    assert embeds.shape == (3, config.num_image_tokens, config.llm.hidden_size)


def test_forward_backward_gives_loss_and_gradients_everywhere(micro_model):
    micro_model.train()
    out = micro_model(**make_batch(micro_model.config))
    assert out.logits.shape[:2] == (2, 7 + micro_model.config.num_image_tokens)
    out.loss.backward()
    no_grad = [n for n, p in micro_model.named_parameters() if p.grad is None]
    assert no_grad == []


def test_loss_only_equals_the_full_loss_and_its_gradients(micro_model):
    """Training runs the output head only where a label supervises (``loss_only``): the same loss and
    gradients as the loss over the full logits, with image tokens and a prompt left unsupervised."""
    micro_model.train()
    batch = make_batch(micro_model.config)
    labels = batch["input_ids"].clone()
    labels[:, :2 + micro_model.config.num_image_tokens + 2] = -100  # BOS, image, the first prompt tokens
    batch["labels"] = labels
    results = []
    for loss_only in (False, True):
        micro_model.zero_grad(set_to_none=True)
        out = micro_model(**batch, loss_only=loss_only)
        out.loss.backward()
        results.append((out, {n: p.grad.clone() for n, p in micro_model.named_parameters()}))
    (full, full_grads), (only, only_grads) = results
    assert only.logits is None and full.logits is not None
    assert torch.allclose(only.loss, full.loss, atol=1e-6)
    assert all(torch.allclose(only_grads[n], full_grads[n], atol=1e-6) for n in full_grads)


def test_image_embeddings_replace_image_positions_in_order():
    model = randomize_(DSVLModel.from_name("dsvl-micro-siglip")).eval()
    config = model.config
    n = config.num_image_tokens
    ids = torch.full((1, 2 * n + 3), 20)
    ids[0, 1:1 + n] = config.image_token_id
    ids[0, 2 + n:2 + 2 * n] = config.image_token_id
    images = torch.rand(2, 3, config.image_size, config.image_size)
    embeds = model.embed_inputs(ids, images)
    expected = model.encode_images(images)
    torch.testing.assert_close(embeds[0, 1:1 + n], expected[0])
    torch.testing.assert_close(embeds[0, 2 + n:2 + 2 * n], expected[1])
    torch.testing.assert_close(embeds[0, 0], model.language_model.embed(ids[:, :1])[0, 0])


def test_image_token_count_mismatch_raises_a_clear_error():
    model = DSVLModel.from_name("dsvl-micro-siglip")
    batch = make_batch(model.config)
    batch["input_ids"][0, 2] = 20  # one image token fewer than the images provide
    with pytest.raises(ValueError, match="image tokens.*<image_placeholder>"):
        model(**batch)
    batch = make_batch(model.config)
    del batch["pixel_values"]
    with pytest.raises(ValueError, match="0 image"):
        model(**batch)


def test_text_only_batches_skip_the_vision_tower():
    model = DSVLModel.from_name("dsvl-micro-hybrid")
    ids = torch.randint(10, 100, (2, 9))
    out = model(input_ids=ids, labels=ids)
    assert torch.isfinite(out.loss)


def test_left_padding_does_not_change_real_token_logits():
    model = randomize_(DSVLModel.from_name("dsvl-micro-hybrid")).eval()
    batch = make_batch(model.config, pad_first=0)
    padded = make_batch(model.config, pad_first=0)
    pad = torch.full((2, 3), model.config.pad_token_id)
    padded["input_ids"] = torch.cat([pad, padded["input_ids"]], dim=1)
    padded["attention_mask"] = torch.cat([torch.zeros_like(pad), padded["attention_mask"]], dim=1)
    del batch["labels"], padded["labels"]
    with torch.no_grad():
        plain = model(**batch).logits
        shifted = model(**padded).logits[:, 3:]
    torch.testing.assert_close(plain, shifted, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(model(**padded).logits).all()  # padding rows are finite, not NaN


def test_hybrid_derives_the_low_res_view_inside_and_normalises_each_tower():
    raw = randomize_(DSVLModel.from_name("dsvl-micro-hybrid")).eval()
    normalized = DSVLModel(raw.config.replace(pixel_input="normalized")).eval()
    normalized.load_state_dict(raw.state_dict())
    config = raw.config
    images = torch.rand(2, 3, config.image_size, config.image_size)
    low = resize_antialiased(images, config.siglip.image_size)
    low = Normalize(config.siglip.pixel_mean, config.siglip.pixel_std)(low)
    high = Normalize(config.sam.pixel_mean, config.sam.pixel_std)(images)
    with torch.no_grad():
        torch.testing.assert_close(raw.encode_images(images), normalized.encode_images(low, high))
    with pytest.raises(ValueError, match="high_res_pixel_values"):
        normalized.encode_images(low)


def test_hd_branch_starts_at_zero_and_reads_the_first_global_block():
    model = DSVLModel.from_name("dsvl-micro-sam")
    sam = model.vision_model.high
    assert sam.hd_alpha_downsamples.detach().item() == 0.0
    assert sam.hd_block_index == min(model.config.sam.global_attn_indexes)
    images = torch.rand(1, 3, model.config.image_size, model.config.image_size)
    before = model.encode_images(images)
    with torch.no_grad():
        sam.hd_alpha_downsamples.fill_(1.0)
    assert not torch.allclose(before, model.encode_images(images))


def test_hybrid_aligner_concatenates_high_then_low():
    model = randomize_(DSVLModel.from_name("dsvl-micro-hybrid"))
    aligner = model.aligner
    high = torch.randn(1, 4, model.config.sam.output_channels)
    low = torch.randn(1, 4, model.config.siglip.width)
    expected = aligner.layers(torch.cat([aligner.high_up_proj(high), aligner.low_up_proj(low)], -1))
    torch.testing.assert_close(aligner((high, low)), expected)


@pytest.mark.parametrize("kind,depth,n_linear", [("linear", 1, 1), ("mlp_gelu", 3, 3), ("mlp_gelu", 1, 1)])
def test_aligner_types_and_depths(kind, depth, n_linear):
    config = DSVLConfig.from_name("dsvl-micro-siglip", **{"aligner.projector_type": kind, "aligner.depth": depth})
    model = DSVLModel(config)
    linears = [m for m in model.aligner.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == n_linear
    assert model.encode_images(torch.rand(1, 3, 32, 32)).shape == (1, 16, 64)


def test_window_partition_pads_and_round_trips():
    x = torch.randn(2, 8, 8, 5)
    windows, padded = window_partition(x, 3)
    assert padded == (9, 9) and windows.shape == (2 * 9, 3, 3, 5)
    torch.testing.assert_close(window_unpartition(windows, 3, padded, (8, 8)), x)


# ----------------------------------------------------------------------------------------- attention switch
def test_recording_path_matches_fused_attention_and_rows_sum_to_one():
    model = randomize_(DSVLModel.from_name("dsvl-micro-hybrid")).eval()
    batch = make_batch(model.config, pad_first=2)
    with torch.no_grad():
        fused = model(**batch).logits
        model.record_attention()
        recorded = model(**batch).logits
    torch.testing.assert_close(fused, recorded, atol=1e-5, rtol=1e-5)
    for name, layer in model.attention_layers().items():
        weights = layer.attention_weights
        assert weights is not None, name
        torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)), atol=1e-5, rtol=0)


def test_recording_only_the_layers_asked_for_and_off_is_bit_identical():
    model = randomize_(DSVLModel.from_name("dsvl-micro-hybrid")).eval()
    batch = make_batch(model.config)
    with torch.no_grad():
        before = model(**batch).logits
        name = "language_model.model.layers.1.self_attn"
        model.record_attention([name])
        model(**batch)
        recorded = {n: layer.attention_weights is not None for n, layer in model.attention_layers().items()}
        model.record_attention(on=False)
        after = model(**batch).logits
    assert [n for n, r in recorded.items() if r] == [name]
    assert torch.equal(before, after)
    with pytest.raises(ValueError, match="no attention layer"):
        model.record_attention(["nope"])


def test_sam_windowed_attention_stays_inside_its_window():
    model = randomize_(DSVLModel.from_name("dsvl-micro-sam")).eval()
    layer = model.vision_model.high.blocks[0].attn
    layer.record_attention = True
    model.encode_images(torch.rand(1, 3, 64, 64))
    window = model.config.sam.window_size
    assert layer.attention_weights.shape[-1] == window * window  # one window's tokens, nothing else


# ----------------------------------------------------------------------------------------- generation
def test_generate_with_kv_cache_equals_generation_without_it():
    model = randomize_(DSVLModel.from_name("dsvl-micro-hybrid")).eval()
    batch = make_batch(model.config, pad_first=3)
    del batch["labels"]
    cached = model.generate(**batch, max_new_tokens=12, use_cache=True, eos_token_id=-1)
    uncached = model.generate(**batch, max_new_tokens=12, use_cache=False, eos_token_id=-1)
    assert cached.shape == (2, 12)
    assert torch.equal(cached, uncached)


def test_the_growing_cache_leaves_the_prompt_cache_alone_and_refuses_to_overflow():
    """generate_from_cache copies the prompt's cache once into room it fills in place; the prompt's own
    keys and values stay as they were, so the same prompt can be continued twice with the same result."""
    from dsvl_lab.model.llm import GrowingCache

    model = randomize_(DSVLModel.from_name("dsvl-micro-siglip")).eval()
    batch = make_batch(model.config, pad_first=2)
    with torch.no_grad():
        embeds = model.embed_inputs(batch["input_ids"], batch["pixel_values"])
        logits, past = model.prefill(embeds, batch["attention_mask"])
        before = [(k.clone(), v.clone()) for k, v in past]
        first = model.generate_from_cache(logits, past, batch["attention_mask"], 6, eos_token_id=-1)
        again = model.generate_from_cache(logits, past, batch["attention_mask"], 6, eos_token_id=-1)
    assert torch.equal(first, again)
    assert all(torch.equal(k, k0) and torch.equal(v, v0) for (k, v), (k0, v0) in zip(past, before))
    slot = GrowingCache(past, room=1)[0]
    slot.append(past[0][0][:, :, :1], past[0][1][:, :, :1])
    assert slot[0].shape[2] == past[0][0].shape[2] + 1
    with pytest.raises(RuntimeError, match="more room"):
        slot.append(past[0][0][:, :, :1], past[0][1][:, :, :1])


def test_sampling_with_kv_cache_equals_sampling_without_it():
    model = randomize_(DSVLModel.from_name("dsvl-micro-siglip")).eval()
    batch = make_batch(model.config)
    del batch["labels"]
    runs = [model.generate(**batch, max_new_tokens=8, do_sample=True, temperature=0.8, top_k=50, top_p=0.9,
                           use_cache=cache, eos_token_id=-1, generator=torch.Generator().manual_seed(3))
            for cache in (True, False)]
    assert torch.equal(*runs)


def test_generation_stops_on_eos_and_pads_finished_rows():
    model = DSVLModel.from_name("dsvl-micro-siglip").eval()
    with torch.no_grad():
        model.language_model.lm_head.weight.zero_()  # all logits equal: argmax is token 0
    streamed = []
    out = model.generate(input_ids=torch.tensor([[5, 6, 7]]), max_new_tokens=10, eos_token_id=0,
                         streamer=streamed.append)
    assert out.tolist() == [[0]] and len(streamed) == 1


def test_generation_refuses_to_run_past_the_context():
    model = DSVLModel.from_name("dsvl-micro-siglip")
    with pytest.raises(ValueError, match="exceeds the context"):
        model.generate(input_ids=torch.ones(1, 500, dtype=torch.long), max_new_tokens=100)


# ----------------------------------------------------------------------------------------- hygiene
def test_no_hard_coded_cuda_in_the_package():
    package = Path(__file__).resolve().parents[1] / "dsvl_lab"
    offenders = [str(p) for p in package.rglob("*.py") if re.search(r"\.cuda\(\)", p.read_text())]
    assert offenders == []


def test_the_model_layer_imports_nothing_above_it():
    """model/ sits on config alone: importing it loads neither the interop (convert) nor the foundation
    (Lightning, the data pipeline); the foundation weights are dsvl_lab.foundation.from_foundation."""
    code = "import sys, dsvl_lab.model; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    above = ("dsvl_lab.convert", "dsvl_lab.foundation", "dsvl_lab.processor", "dsvl_lab.data", "dsvl_lab.training",
             "lightning")
    assert [name for name in loaded if name.startswith(above)] == []
    assert not hasattr(DSVLModel, "from_foundation")


def test_num_params_trainable_only():
    model = DSVLModel.from_name("dsvl-micro-hybrid")
    total = model.num_params()
    model.vision_model.requires_grad_(False)
    assert model.num_params(trainable_only=True) == total - sum(p.numel() for p in model.vision_model.parameters())


# ============================================================================ initialisation
def test_written_out_initialisation_draws_exactly_pytorchs_defaults():
    """model/init.py builds layers with skip_init and draws their weights itself: the same numbers
    (and the same random-number stream afterwards) as nn.Linear / nn.Conv2d / nn.Embedding would."""
    from torch import nn

    from dsvl_lab.model.init import conv2d, embedding, linear

    def built(make):
        torch.manual_seed(0)
        layer = make()
        return [p.detach().clone() for p in layer.parameters()], torch.rand(3)

    pairs = [(lambda: linear(12, 5), lambda: nn.Linear(12, 5)),
             (lambda: linear(12, 5, bias=False), lambda: nn.Linear(12, 5, bias=False)),
             (lambda: conv2d(3, 4, kernel_size=3, padding=1), lambda: nn.Conv2d(3, 4, kernel_size=3, padding=1)),
             (lambda: embedding(10, 6), lambda: nn.Embedding(10, 6))]
    for ours, pytorch in pairs:
        (a, after_a), (b, after_b) = built(ours), built(pytorch)
        assert all(torch.equal(x, y) for x, y in zip(a, b)) and torch.equal(after_a, after_b)


def test_initialisation_follows_the_documented_rules():
    torch.manual_seed(0)
    model = DSVLModel.from_name("dsvl-tiny-hybrid")
    q = model.language_model.model.layers[0].self_attn.q_proj.weight
    assert q.abs().max() <= 1 / q.shape[1] ** 0.5  # U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    embed = model.language_model.model.embed_tokens.weight
    assert abs(embed.std().item() - 1.0) < 0.02  # N(0, 1)
    assert torch.equal(model.language_model.model.norm.weight, torch.ones_like(model.language_model.model.norm.weight))
