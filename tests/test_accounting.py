"""The analytic FLOPs and memory (dsvl_lab/metrics/flops.py, memory.py) against measurement, at every
preset: FlopCounterMode on the meta device, and the peak of live tensor bytes of a real step (the
measuring tools, and what each one counts and leaves out, are in dsvl_lab/inspection/cost_check.py).
"""
from __future__ import annotations

import pytest
import torch

from dsvl_lab.config import DSVLConfig
from dsvl_lab.inspection.cost_check import (LiveTensorBytes, analytic_step, counted_step, measured_peak_bytes,
                                            meta_model)
from dsvl_lab.metrics.flops import PAPER_CLUSTERS, implied_mfu, paper_run, stage_flops
from dsvl_lab.metrics.memory import stage_memory
from dsvl_lab.training import STAGE_NAMES

FLOP_PRESETS = ["dsvl-micro-hybrid", "dsvl-micro-siglip", "dsvl-micro-sam", "dsvl-tiny-hybrid", "dsvl-small-hybrid",
                "dsvl-1.3b", "dsvl-7b"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread, as on a shared 2-core machine; the suite's setting comes back afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ============================================================================ FLOPs
def relative(a: float, b: float) -> float:
    return abs(a - b) / b if b else float(a != 0)


@pytest.fixture(scope="module", params=FLOP_PRESETS)
def preset_model(request):
    return meta_model(request.param)


def test_flops_match_flop_counter_in_every_stage(preset_model):
    config = preset_model.config
    batch, seq = 2, config.num_image_tokens + 40
    for stage in STAGE_NAMES:
        measured = counted_step(preset_model, stage, batch, seq)
        analytic = analytic_step(config, stage, batch, seq)
        for kind, a, m in zip(("forward", "backward"), analytic, measured):
            assert relative(a, m) < 0.02, f"{config.name} {stage} {kind}: analytic {a:.4e}, FlopCounterMode {m:.4e}"


@pytest.mark.parametrize("name, trainable, images", [
    ("dsvl-micro-hybrid", ("vision_model.high", "aligner"), 2),          # SAM's own blocks train: rel-pos grads
    ("dsvl-micro-hybrid[aligner.projector_type=low_high_shared_mlp_gelu]", ("vision_model.low", "aligner"), 1),
    ("dsvl-micro-hybrid[aligner.projector_type=low_high_separate_mlp_gelu,aligner.depth=3]", ("aligner",), 1),
    ("dsvl-micro-siglip[llm.num_kv_heads=2]", ("language_model",), 0),   # a text-only batch, grouped kv heads
])
def test_flops_follow_any_trainable_set(name, trainable, images):
    model = meta_model(name)
    seq = 2 * model.config.num_image_tokens + 9
    measured = counted_step(model, trainable, 3, seq, images)
    analytic = analytic_step(model.config, trainable, 3, seq, images)
    assert [relative(a, m) for a, m in zip(analytic, measured)] == [0.0, 0.0]


def test_frozen_prefix_costs_forward_only_and_a_crossed_module_its_activation_gradients():
    config = DSVLConfig.from_name("dsvl-7b")
    rows = {r.name: r for r in stage_flops(config, "stage1_adaptor", 1, 4096)}
    assert rows["SigLIP"].backward == 0 and rows["SAM global blocks"].backward == 0   # nothing trains before them
    assert rows["LLM layers"].backward_weight == 0 and rows["LLM layers"].backward_input > rows["LLM layers"].forward
    assert rows["lm_head"].backward_input == rows["lm_head"].forward                   # dx only: 1x forward
    stage2 = {r.name: r for r in stage_flops(config, "stage2_joint", 1, 4096)}
    assert stage2["lm_head"].backward == 2 * stage2["lm_head"].forward                 # dx and dW: 2x forward


def test_paper_runs_compare_with_the_papers_gpu_days():
    runs = {run.stage: run for run in paper_run("dsvl-7b")}
    stage2 = runs["stage2_joint"]
    assert (stage2.steps, stage2.batch, stage2.seq) == (42_000, 2304, 4096)
    six_n = 6 * 6.9e9 * 42_000 * 2304 * 4096  # the "6 N D" rule, N ~ 6.9B parameters the step multiplies by
    assert 1.0 < stage2.flops / six_n < 1.15   # plus attention's T x T products and the vision towers
    assert PAPER_CLUSTERS["dsvl-7b"].gpu_days == 2560 and PAPER_CLUSTERS["dsvl-1.3b"].gpu_days == 896
    assert 0.15 < implied_mfu(stage2.flops, 2560) < 0.40


# ============================================================================ memory
def test_live_tensor_bytes_counts_what_is_alive():
    with LiveTensorBytes() as mode:
        a = torch.ones(1000)            # 4000 bytes
        b = a * 2                       # 8000 alive
        del b                           # 4000
        c = a.view(10, 100)             # a view: no new storage
        a.mul_(3)                       # in place: nothing new
        del a, c
    assert (mode.peak, mode.current) == (8000, 0)


# bf16 matrix products run several times slower than fp32 on this CPU: the bf16 cases use the tiny preset.
@pytest.mark.parametrize("name, stage, batch, seq, precision, checkpointing", [
    ("dsvl-small-hybrid", "stage1_adaptor", 4, 256, "fp32", False),
    ("dsvl-small-hybrid", "stage2_joint", 4, 256, "fp32", False),
    ("dsvl-small-hybrid", "stage3_sft", 4, 256, "fp32", False),
    ("dsvl-small-hybrid", "stage2_joint", 4, 256, "fp32", True),
    ("dsvl-tiny-hybrid", "stage2_joint", 4, 128, "bf16-mixed", False),
    ("dsvl-tiny-hybrid", "stage3_sft", 4, 128, "bf16-mixed", True),
])
def test_memory_matches_a_measured_step(name, stage, batch, seq, precision, checkpointing):
    measured = measured_peak_bytes(name, stage, batch, seq, precision, checkpointing)
    estimate = stage_memory(DSVLConfig.from_name(name), stage, batch, seq, precision, checkpointing)
    assert relative(estimate.peak, measured) < 0.15, f"estimate {estimate.peak / 2**20:.1f} MiB, " \
                                                     f"measured {measured / 2**20:.1f} MiB"
    assert estimate.total >= measured  # the plain sum stays an upper bound


def test_memory_formulas_at_the_released_sizes():
    config = DSVLConfig.from_name("dsvl-7b")
    full = stage_memory(config, "stage2_joint", 1, 4096, "bf16-mixed")
    params = meta_model("dsvl-7b").num_params()
    assert full.optimizer == 2 * full.gradients and full.weights > 4 * params  # fp32 master + bf16 copies
    sharded = stage_memory(config, "stage2_joint", 1, 4096, "bf16-mixed", checkpointing=True, fsdp=8)
    assert sharded.optimizer == full.optimizer // 8
    assert sharded.activations < full.activations and sharded.peak < full.peak / 3
    with pytest.raises(ValueError, match="cannot hold"):
        stage_memory(config, "stage2_joint", 1, 100)
