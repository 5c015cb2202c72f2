"""Attention inspection: capture, traces, renderers, the explorer and the trace command (headless)."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from dsvl_lab.cli import main  # noqa: E402
from dsvl_lab.config import DSVLConfig  # noqa: E402
from dsvl_lab.inspection import attention_plots as render  # noqa: E402
from dsvl_lab.inspection.attention_capture import (  # noqa: E402
    AttentionCapture, CaptureBudgetError, resolve_layers,
)
from dsvl_lab.inspection.attention_trace import (  # noqa: E402
    AttentionTrace, trace_task, window_location, windowed_full_matrix, windows_per_side,
)
from dsvl_lab.inspection.model_tables import meta_model  # noqa: E402
from dsvl_lab.model import DSVLModel  # noqa: E402
from dsvl_lab.model.sam import window_partition  # noqa: E402


def batch_for(config: DSVLConfig, text_tokens: int = 6, seed: int = 0) -> dict:
    """One image after BOS, then random text."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, 100, (1, config.num_image_tokens + text_tokens), generator=generator)
    ids[0, 1:1 + config.num_image_tokens] = config.image_token_id
    pixels = torch.rand(1, 3, config.image_size, config.image_size, generator=generator)
    return dict(input_ids=ids, pixel_values=pixels)


@pytest.fixture(scope="module")
def micro():
    torch.manual_seed(0)
    return DSVLModel.from_name("dsvl-micro-hybrid").eval()


@pytest.fixture(scope="module")
def trace(micro):
    return trace_task(micro, "chart", seed=3, answer="Q2")


# ============================================================================ capture
def test_capture_shapes_for_each_component(micro):
    config = micro.config
    batch = batch_for(config)
    seq = batch["input_ids"].shape[1]
    with torch.no_grad(), AttentionCapture(micro, dtype=torch.float32) as capture:
        micro(**batch)
    got = {key: tuple(t.shape) for key, t in capture.attentions.items()}
    sam, siglip, llm = config.sam, config.siglip, config.llm
    windows = windows_per_side(sam.grid, sam.window_size) ** 2  # 8x8 grid, windows of 3 -> padded 9x9 -> 9
    expected = {f"llm.{i}": (1, llm.num_heads, seq, seq) for i in range(llm.num_layers)}
    expected |= {f"siglip.{i}": (1, siglip.num_heads, siglip.grid**2, siglip.grid**2) for i in range(siglip.depth)}
    for i in range(sam.depth):
        expected[f"sam.{i}"] = ((1, sam.num_heads, sam.grid**2, sam.grid**2) if i in sam.global_attn_indexes
                                else (windows, sam.num_heads, sam.window_size**2, sam.window_size**2))
    assert got == expected


def test_rows_of_every_captured_attention_sum_to_one(micro):
    with torch.no_grad(), AttentionCapture(micro, dtype=torch.float32) as capture:
        micro(**batch_for(micro.config))
    for key, weights in capture.attentions.items():
        assert torch.allclose(weights.sum(-1), torch.ones(()), atol=1e-5), key
        assert (weights >= 0).all(), key


def test_fp16_copies_on_cpu_rows_sum_to_one(trace):
    for key, weights in trace.attentions.items():
        assert weights.dtype == torch.float16 and weights.device.type == "cpu"
        assert torch.allclose(weights.float().sum(-1), torch.ones(()), atol=2e-3), key


def test_only_asked_layers_record_and_switches_reset(micro):
    layers = micro.attention_layers()
    with torch.no_grad(), AttentionCapture(micro, components=("sam", "llm"), layers={"sam": [1], "llm": [-1]},
                                           heads=[1]) as capture:
        on = {name for name, layer in layers.items() if layer.record_attention}
        micro(**batch_for(micro.config))
    assert on == {"vision_model.high.blocks.1.attn", "language_model.model.layers.1.self_attn"}
    assert sorted(capture.attentions) == ["llm.1", "sam.1"]
    assert all(t.shape[1] == 1 for t in capture.attentions.values())
    assert not any(layer.record_attention or layer.attention_weights is not None for layer in layers.values())


def test_head_selection_keeps_those_heads(micro):
    batch = batch_for(micro.config)
    with torch.no_grad(), AttentionCapture(micro, components=("llm",)) as every:
        micro(**batch)
    with torch.no_grad(), AttentionCapture(micro, components=("llm",), heads=[2, 0]) as some:
        micro(**batch)
    assert torch.equal(some.attentions["llm.0"], every.attentions["llm.0"][:, [0, 2]])


def test_capture_off_leaves_outputs_bit_identical(micro):
    batch = batch_for(micro.config)
    with torch.no_grad():
        before = micro(**batch).logits
        with AttentionCapture(micro):
            during = micro(**batch).logits
        after = micro(**batch).logits
    assert torch.equal(before, after)
    assert torch.allclose(before, during, atol=1e-4)  # the explicit softmax differs from the fused kernel in rounding


def test_bad_arguments_are_named(micro):
    with pytest.raises(ValueError, match="layers 0..1"):
        AttentionCapture(micro, components=("llm",), layers=[5])
    with pytest.raises(ValueError, match="heads 0..3"):
        AttentionCapture(micro, components=("llm",), heads=[7])
    with pytest.raises(ValueError, match="unknown component"):
        AttentionCapture(micro, components=("clip",))
    siglip_only = DSVLModel.from_name("dsvl-micro-siglip")
    with pytest.raises(ValueError, match="no sam tower"):
        AttentionCapture(siglip_only, components=("sam",))


# ============================================================================ the memory budget
def test_over_budget_capture_raises_the_needed_memory_before_running(micro):
    capture = AttentionCapture(micro, budget_gb=1e-6)
    need = capture.estimate(seq_len=batch_for(micro.config)["input_ids"].shape[1])
    with pytest.raises(CaptureBudgetError, match=r"needs about .* over the budget of .*fewer layers") as error:
        with torch.no_grad(), capture:
            micro(**batch_for(micro.config))
    assert f"{need['total'] / 1024:.2f} KB" in str(error.value)
    assert not any(capture.calls.values())  # refused before any layer ran
    assert not any(layer.record_attention for layer in micro.attention_layers().values())


def test_layer_guard_refuses_when_the_model_is_not_called_directly(micro):
    """generate() and a tower called alone bypass the model-level check; each layer checks itself."""
    with pytest.raises(CaptureBudgetError, match="sam"):
        with torch.no_grad(), AttentionCapture(micro, components=("sam",), budget_gb=1e-6):
            micro.vision_model(torch.rand(1, 3, 64, 64))


def test_real_size_sam_needs_layer_and_head_selection():
    """dsvl-7b's SAM global blocks: 12 heads x 4096 x 4096 per layer; on the meta device, no memory used."""
    model = meta_model(DSVLConfig.from_name("dsvl-7b")).to(torch.bfloat16)
    everything = AttentionCapture(model, components=("sam",), budget_gb=2.0)
    with pytest.raises(CaptureBudgetError, match="GB"):
        everything.check_budget(seq_len=600, num_images=1)
    global_bytes = 12 * 4096 * 4096 * 2
    assert everything.estimate(600)["kept"] > 4 * global_bytes  # four global blocks alone
    one = AttentionCapture(model, components=("sam",), layers=[2], heads=[0], budget_gb=2.0)
    one.check_budget(seq_len=600, num_images=1)
    assert one.estimate(600)["kept"] == 4096 * 4096 * 2
    assert one.estimate(600)["working"] == 12 * 4096 * 4096 * (4 + 2 * 2)  # the explicit softmax over all heads


def test_resolve_layers_marks_sam_windows():
    specs = resolve_layers(DSVLConfig.from_name("dsvl-tiny-hybrid"), ("sam",))
    assert [(s.key, s.window) for s in specs] == [("sam.0", 6), ("sam.1", 0), ("sam.2", 6), ("sam.3", 0)]


# ============================================================================ SAM windows
@pytest.mark.parametrize("grid,window", [(8, 3), (16, 6), (64, 14), (6, 6)])
def test_window_location_agrees_with_window_partition(grid, window):
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    coords = torch.stack([rows, cols], dim=-1)[None].float() + 1  # [1, G, G, 2]; +1 so padding (0) is visible
    windows, _ = window_partition(coords, window)  # [nW, w, w, 2]
    flat = windows.reshape(windows.shape[0], window * window, 2)
    for row in range(grid):
        for col in range(grid):
            index, position = window_location(row, col, grid, window)
            assert flat[index, position].tolist() == [row + 1, col + 1]


def test_windowed_attention_is_zero_outside_the_patch_window(trace):
    grid, window = trace.sam_grid, trace.sam_window
    assert trace.is_windowed("sam.0") and not trace.is_windowed("sam.1")
    for patch in range(grid * grid):
        row, col = divmod(patch, grid)
        attention = trace.patch_map("sam.0", 0, patch)  # [G, G]
        same_window = torch.zeros(grid, grid, dtype=torch.bool)
        same_window[row // window * window:(row // window + 1) * window,
                    col // window * window:(col // window + 1) * window] = True
        assert attention[~same_window].abs().max() == 0
        assert attention[same_window].min() > 0
        padded = (row // window + 1) * window > grid or (col // window + 1) * window > grid
        total = float(attention.sum())  # keys in the padding are not patches: their share is missing
        assert total < 1 - 1e-3 if padded else abs(total - 1) < 2e-3
    full = windowed_full_matrix(trace.head_weights("sam.0", 0), grid, window)
    assert torch.equal(full[grid + 1].reshape(grid, grid), trace.patch_map("sam.0", 0, grid + 1))


def test_global_attention_covers_the_whole_grid(trace):
    attention = trace.patch_map("sam.1", "mean", 0)
    assert attention.shape == (trace.sam_grid, trace.sam_grid) and (attention > 0).all()


# ============================================================================ the trace
def test_trace_segments_labels_and_geometry(trace, micro):
    order = [s for i, s in enumerate(trace.segments) if i == 0 or trace.segments[i - 1] != s]
    assert order == ["system", "user", "image", "user", "answer"]
    assert trace.tokens[0] == "<bos>" and trace.tokens[-1] == "<eos>"
    assert len(trace.image_positions) == micro.config.num_image_tokens
    assert trace.tokens[trace.image_positions[-1]] == "<img 3,3>"
    assert "".join(trace.tokens[i] for i in trace.positions("answer")).strip() == "Q2<eos>"
    assert trace.image.shape == (64, 64, 3) and trace.image.dtype == np.uint8
    assert (trace.image_grid, trace.sam_grid, trace.sam_window, trace.sam_global_blocks) == (4, 8, 3, (1, 3))
    assert trace.meta["prompt"] == "Which quarter's bar is hatched?" and trace.meta["family"] == "chart"


def test_trace_round_trips_through_save_and_load(trace, tmp_path):
    path = trace.save(tmp_path / "t.safetensors")
    loaded = AttentionTrace.load(path)
    assert sorted(loaded.attentions) == sorted(trace.attentions)
    assert all(torch.equal(loaded.attentions[k], v) and loaded.attentions[k].dtype == v.dtype
               for k, v in trace.attentions.items())
    assert np.array_equal(loaded.image, trace.image)
    for name in ("heads", "tokens", "segments", "input_ids", "image_grid", "sam_grid", "sam_window",
                 "sam_global_blocks", "meta"):
        assert getattr(loaded, name) == getattr(trace, name), name


def test_load_names_the_problem(tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(FileNotFoundError, match="dsvl-lab trace"):
        AttentionTrace.load(tmp_path / "missing.safetensors")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "weights.safetensors"))
    with pytest.raises(ValueError, match="not an attention trace"):
        AttentionTrace.load(tmp_path / "weights.safetensors")


def test_aggregations(trace):
    weights = trace.attentions["llm.1"][0].float()  # [H, T, T]
    assert torch.allclose(trace.head_weights("llm.1", "mean")[0], weights.mean(0))
    assert torch.equal(trace.head_weights("llm.1", "max")[0], weights.amax(0))
    assert torch.equal(trace.head_weights("llm.1", 2)[0], weights[2])
    keys, heads, mass = trace.image_mass()
    assert keys == ["llm.0", "llm.1"] and heads == [0, 1, 2, 3] and mass.shape == (2, 4)
    answer, image = trace.positions("answer"), trace.image_positions
    assert mass[1, 2] == pytest.approx(float(weights[2][answer][:, image].sum(-1).mean()), abs=1e-6)
    assert ((mass > 0) & (mass < 1)).all()
    entropy = trace.entropy("siglip.0", 0)
    assert entropy.shape == (1, 16) and (entropy <= math.log(16) + 1e-3).all() and (entropy > 0).all()
    heat = trace.token_to_image("llm.1", "mean", "answer")
    assert heat.shape == (4, 4) and float(heat.sum()) == pytest.approx(float(mass[1].mean()), abs=1e-3)


def test_rollout_is_opt_in_and_row_stochastic(trace, micro):
    for component in ("llm", "siglip", "sam"):
        rollout = trace.rollout(component)
        assert torch.allclose(rollout.sum(-1), torch.ones(()), atol=1e-4), component
    partial = trace_task(micro, "chart", seed=3, answer="Q2", components=("llm",), layers=[0])
    with pytest.raises(ValueError, match="needs all 2 layers"):
        partial.rollout("llm")


# ============================================================================ static figures and HTML
def test_renderers_draw_every_view(trace):
    figures = [
        render.plot_token_to_image(trace, "llm.1", 0, trace.positions("answer")[0], norm="log"),
        render.plot_token_to_image(trace, "rollout"),
        render.plot_patch_attention(trace, "sam.0", "max", 0),
        render.plot_patch_attention(trace, "sam.1"),
        render.plot_patch_attention(trace, "siglip.1", norm="clip 99%"),
        render.plot_image_mass(trace),
        render.plot_token_matrix(trace, "llm.0"),
    ]
    sizes = {len(render.figure_png(fig)) > 1000 for fig in figures}
    assert sizes == {True}
    with pytest.raises(ValueError, match="unknown normalisation"):
        render.make_norm(np.ones(3), "sqrt")


def test_to_html_is_self_contained(trace, tmp_path):
    page = trace.to_html(tmp_path / "t.html").read_text()
    assert page.count("data:image/png;base64,") == 5
    assert "<script" not in page and "http" not in page


# ============================================================================ the explorer
def test_each_explorer_control_changes_the_image(trace):
    from dsvl_lab.inspection import AttentionExplorer

    explorer = AttentionExplorer(trace)
    assert explorer.png.startswith(b"\x89PNG")
    changes = [("head", 1), ("layer", "llm.1"), ("query", trace.positions("answer")[0]), ("colormap", "viridis"),
               ("normalisation", "log"), ("overlay", 0.25), ("view", "token × token"), ("component", "sam"),
               ("layer", "sam.1"), ("query", 0)]
    controls = {c.description: c for c in explorer.controls}
    for name, value in changes:
        before = explorer.png
        controls[name].value = value
        assert explorer.state()[name] == value
        assert explorer.png != before, name
    assert explorer.image.layout.width == "600px" and explorer.image.layout.height == "460px"


def test_explorer_from_trace_and_compare(trace, tmp_path):
    from PIL import Image
    import io

    from dsvl_lab.inspection import AttentionExplorer

    path = trace.save(tmp_path / "t.safetensors")
    explorer = AttentionExplorer.from_trace(path)
    explorer.component.value = "siglip"
    twin = explorer.compare(trace)
    assert twin.state() == explorer.state()
    assert Image.open(io.BytesIO(twin.png)).size == (1200, 460)
    before = twin.png
    twin.head.value = "max"
    assert twin.png != before


def test_explorer_traces_a_model(micro):
    from dsvl_lab.inspection import AttentionExplorer

    explorer = AttentionExplorer(micro, components=("llm",), answer="Q2")
    assert explorer.trace.components == ["llm"] and explorer.png
    with pytest.raises(TypeError, match="DSVLModel, an AttentionTrace or a trace file"):
        AttentionExplorer(42)


# ============================================================================ the command
def test_trace_command_writes_a_loadable_file(tmp_path, capsys):
    out = tmp_path / "micro.safetensors"
    assert main(["trace", "--preset", "dsvl-micro-hybrid", "--family", "ocr", "--components", "llm,sam",
                 "--layers", "sam:1,llm:-1", "--heads", "0,1", "--out", str(out),
                 "--html", str(tmp_path / "m.html")]) == 0
    loaded = AttentionTrace.load(out)
    assert loaded.layers() == ["llm.1", "sam.1"] and loaded.heads["llm.1"] == [0, 1]
    assert loaded.meta["family"] == "ocr" and "random weights" in loaded.meta["source"]
    assert "wrote" in capsys.readouterr().out and (tmp_path / "m.html").is_file()


def test_trace_command_errors(tmp_path, capsys):
    assert main(["trace", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "exactly one of --model" in capsys.readouterr().err
    assert main(["trace", "--preset", "dsvl-micro-hybrid", "--layers", "a", "--out", str(tmp_path / "x")]) == 2
    assert main(["trace", "--preset", "dsvl-micro-hybrid", "--budget-gb", "1e-6", "--out", str(tmp_path / "x")]) == 2
    assert "over the budget" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_shipped_foundation_trace_source_is_reproducible():
    """The foundation model's aligner is fresh: the shipped-trace loader seeds it, leaving the global RNG alone."""
    from dsvl_lab.inspection.shipped_traces import load_source

    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first, second = (load_source("foundation:dsvl-tiny-hybrid") for _ in range(2))
    assert torch.equal(torch.random.get_rng_state(), before)
    for (name, a), (_, b) in zip(first.aligner.named_parameters(), second.aligner.named_parameters()):
        assert torch.equal(a, b), name
