"""The language / multimodal mixture: ratios, modality warm-up, modality grouping."""
from __future__ import annotations

import numpy as np
import pytest

from dsvl_lab.data.mixing import BLOCK, ModalityPlan, WarmupSchedule


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.7, 1.0])
@pytest.mark.parametrize("grouped", [True, False])
def test_measured_mixture_over_10000_draws_is_within_one_point(ratio, grouped):
    plan = ModalityPlan(WarmupSchedule(ratio), seed=5, group_by_modality=grouped, batch_size=8)
    share = np.mean([plan.is_text(draw) for draw in range(10_000)])
    assert abs(share - ratio) <= 0.01, f"measured {share:.4f} for ratio {ratio}"


@pytest.mark.parametrize("kind", ["linear", "step"])
def test_warmup_is_followed_step_by_step(kind):
    schedule = WarmupSchedule(target=0.3, steps=4000, kind=kind, stairs=4)
    plan = ModalityPlan(schedule, seed=2)
    draws = np.array([plan.is_text(d) for d in range(6000)])
    expected = np.array([schedule(d) for d in range(6000)])
    # At every block boundary the text count is within one draw of the schedule's integral
    # (inside a block the positions are shuffled, so the gap there is bounded by the block size).
    gap = np.abs(np.cumsum(draws) - np.cumsum(expected))
    assert gap[BLOCK - 1::BLOCK].max() <= 1.0 + 1e-9
    assert gap.max() <= BLOCK
    # And window by window the share follows the ramp.
    for start in range(0, 6000, 400):
        window = slice(start, start + 400)
        assert abs(draws[window].mean() - expected[window].mean()) <= 2 / 400 + 1e-9
    assert schedule(0) == 1.0 and schedule(4000) == 0.3


def test_step_warmup_has_stairs():
    schedule = WarmupSchedule(target=0.6, steps=100, kind="step", stairs=4)
    assert [schedule(s) for s in (0, 24, 25, 49, 50, 75, 99, 100)] == [1.0, 1.0, 0.9, 0.9, 0.8, 0.7, 0.7, 0.6]


def test_grouped_batches_are_single_modality_and_ungrouped_mix():
    grouped = ModalityPlan(WarmupSchedule(0.5), seed=1, group_by_modality=True, batch_size=8)
    mixed = ModalityPlan(WarmupSchedule(0.5), seed=1, group_by_modality=False, batch_size=8)
    for step in range(50):
        assert len(set(grouped.step_modalities(step, 8))) == 1
    assert any(len(set(mixed.step_modalities(step, 8))) == 2 for step in range(50))


def test_plan_is_a_pure_function_of_seed_and_draw():
    a = ModalityPlan(WarmupSchedule(0.7, 300), seed=9)
    b = ModalityPlan(WarmupSchedule(0.7, 300), seed=9)
    order = list(range(2000))
    forward = [a.is_text(d) for d in order]
    backward = [b.is_text(d) for d in reversed(order)][::-1]  # any query order, same answers
    assert forward == backward
    other = ModalityPlan(WarmupSchedule(0.7, 300), seed=10)
    assert forward != [other.is_text(d) for d in order]
    assert BLOCK > 1


@pytest.mark.parametrize("bad", [dict(target=1.5), dict(target=0.5, kind="cosine"), dict(target=0.5, steps=-1)])
def test_bad_schedules_fail_clearly(bad):
    with pytest.raises(ValueError):
        WarmupSchedule(**bad)
