"""Notebook 01's helpers: shape traces (real and meta device), parameters, views, token strip, attention."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from dsvl_lab.config import DSVLConfig  # noqa: E402
from dsvl_lab.inspection.attention_plots import plot_attention  # noqa: E402
from dsvl_lab.inspection.images import hybrid_views, plot_views  # noqa: E402
from dsvl_lab.inspection.parameters import param_breakdown, plot_param_breakdown  # noqa: E402
from dsvl_lab.inspection.shapes import (  # noqa: E402
    KEY_INPUTS, KEY_MODULES, collapse_repeats, format_traces, name_matcher, trace_release, trace_shapes,
)
from dsvl_lab.inspection.tokens import image_token_span, plot_token_labels, token_spans  # noqa: E402
from dsvl_lab.model import DSVLModel  # noqa: E402
from dsvl_lab.processor import DSVLProcessor  # noqa: E402


def prompt(config: DSVLConfig, text_tokens: int = 6) -> dict:
    """One image at position 2 of a sequence with ``text_tokens`` text tokens."""
    ids = torch.randint(10, 100, (1, config.num_image_tokens + text_tokens))
    ids[0, 2:2 + config.num_image_tokens] = config.image_token_id
    return dict(input_ids=ids, pixel_values=torch.rand(1, 3, config.image_size, config.image_size))


@pytest.fixture(scope="module")
def micro():
    torch.manual_seed(0)
    return DSVLModel.from_name("dsvl-micro-hybrid").eval()


def test_name_matcher_star_stays_within_one_part():
    match = name_matcher(["vision_model.high.blocks.*", "aligner.**"])
    assert match("vision_model.high.blocks.3")
    assert not match("vision_model.high.blocks.3.attn")
    assert match("aligner.layers.1")
    assert not match("aligner")
    assert name_matcher(None)("anything.at.all")


def test_trace_follows_the_hybrid_token_budget(micro):
    config = micro.config
    g, n = config.token_grid, config.num_image_tokens
    trace = trace_shapes(micro, include=KEY_MODULES, inputs_of=KEY_INPUTS, **prompt(config))
    shapes = dict(trace)
    assert trace[0][0] == "language_model.model.embed_tokens"  # forward embeds the text first
    assert shapes["vision_model.high.downsamples (input)"] == (1, config.sam.neck_channels, 4 * g, 4 * g)
    assert shapes["vision_model.high"] == (1, n, config.sam.output_channels)
    assert shapes["vision_model.low (input)"] == (1, 3, config.siglip.image_size, config.siglip.image_size)
    assert shapes["aligner"] == (1, n, config.llm.hidden_size)
    assert shapes["language_model.lm_head"] == (1, n + 6, config.llm.vocab_size)
    names = [name for name, _ in trace]
    assert names.count("vision_model.high.downsamples.1") == 2  # main and HD branch
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in micro.modules())  # hooks removed


def test_every_module_is_traced_by_default(micro):
    trace = trace_shapes(micro.vision_model, pixel_values=torch.rand(1, 3, 64, 64))
    assert trace[-1] == ("low", (1, 16, 32))
    assert ("high.neck.0", (1, 16, 8, 8)) in trace
    assert ("high.blocks.0.attn.qkv", (9, 3, 3, 96)) in trace  # 8x8 grid padded to 9x9 = nine windows of 3x3


def test_meta_trace_matches_the_real_forward(micro):
    real = trace_shapes(micro, include=KEY_MODULES, inputs_of=KEY_INPUTS, **prompt(micro.config, 5))
    meta = trace_release("dsvl-micro-hybrid", text_tokens=5, include=KEY_MODULES, inputs_of=KEY_INPUTS)
    assert meta == real


def test_release_trace_and_table():
    release = trace_release("dsvl-7b", text_tokens=8, include=KEY_MODULES, inputs_of=KEY_INPUTS)
    shapes = dict(release)
    assert shapes["vision_model.high.downsamples (input)"] == (1, 256, 96, 96)
    assert shapes["vision_model.high"] == (1, 576, 1024)
    assert shapes["vision_model.low"] == (1, 576, 1024)
    assert shapes["aligner"] == (1, 576, 4096)
    assert shapes["language_model.lm_head"] == (1, 584, 102400)
    rows = {generic: count for generic, _, _, count in collapse_repeats(release)}
    assert rows["vision_model.high.blocks.*"] == 12 and rows["language_model.model.layers.*"] == 30
    table = format_traces({"micro": trace_release("dsvl-micro-hybrid", include=KEY_MODULES), "7b": release})
    line = next(row for row in table.splitlines() if row.startswith("vision_model.low.blocks.*"))
    assert "x2" in line and "[1, 576, 1024] x24" in line
    assert "vision_model.high.downsamples (input)" in table and " - " in table  # micro has no (input) rows


def test_param_breakdown_matches_the_released_count():
    parts = param_breakdown("dsvl-7b")
    assert sum(parts.values()) == 7_331_390_721
    assert parts["aligner"] == 20_979_712
    assert param_breakdown("dsvl-1.3b")["vision_model.high"] == 0
    plt.close(plot_param_breakdown({"dsvl-1.3b": param_breakdown("dsvl-1.3b"), "dsvl-7b": parts}))


def test_hybrid_views_match_the_processor():
    config = DSVLConfig.from_name("dsvl-micro-hybrid")
    photo = Image.new("RGB", (40, 30), (200, 10, 10))
    high, low = hybrid_views(photo, config)
    assert high.shape == (3, 64, 64) and low.shape == (3, 32, 32)
    assert torch.equal(high, DSVLProcessor.from_config(config).preprocess_image(photo))
    with pytest.raises(ValueError, match="not a hybrid"):
        hybrid_views(photo, DSVLConfig.from_name("dsvl-micro-siglip"))
    plt.close(plot_views({"photo": photo, "high": high, "low": low}, crop=(0.1, 0.2, 0.5, 0.6)))


def test_token_spans_collapse_image_runs_and_mark_labels():
    config = DSVLConfig.from_name("dsvl-micro-hybrid")
    processor = DSVLProcessor.from_config(config)
    conversation = [{"role": "user", "content": "<image_placeholder>Hi", "images": [Image.new("RGB", (8, 8))]},
                    {"role": "assistant", "content": "yes"}]
    batch = processor(conversation)
    spans = token_spans(processor, batch["input_ids"][0], batch["labels"][0])
    assert spans[0] == ("<bos>", "prompt")
    assert (f"<image x{config.num_image_tokens}>", "image") in spans
    assert spans[-1] == ("<eos>", "supervised")
    assert "".join(text for text, kind in spans if kind == "supervised") == "·yes<eos>"
    plt.close(plot_token_labels(spans))
    assert image_token_span(batch["input_ids"][0], config.image_token_id)[1] - \
        image_token_span(batch["input_ids"][0], config.image_token_id)[0] == config.num_image_tokens
    assert image_token_span([5, 6], config.image_token_id) == (0, 0)


def test_plot_attention_returns_a_figure():
    weights = torch.softmax(torch.randn(10, 10).masked_fill(torch.ones(10, 10).triu(1).bool(), float("-inf")), -1)
    fig = plot_attention(weights, (2, 6), title="t")
    assert fig.axes
    plt.close(fig)
