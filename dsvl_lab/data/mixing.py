"""Language / multimodal mixing: the language ratio, modality warm-up and modality grouping.

Paper (section 3.2.2, 4.4-4.5; docs/deepseek_vl_facts.md sections 4.4-4.5):
- stage 2 trains on about 70% language-only data to keep the LLM's language ability;
- *modality warm-up*: the language share starts at 1.0 and falls to the target, so the LLM is not
  hit by a wall of image tokens at step 0 (the ramp's shape and length are not given in the paper:
  UNVERIFIED, so both a linear and a step-wise ramp are offered here);
- *modality grouping*: each global step uses one modality only (a batch is all text or all
  image+text), which the paper reports as 20% more efficient at no loss in quality.

Exactness and resumption. Which modality draw number ``d`` gets is a pure function of
(seed, d, schedule): draws are cut into blocks of ``BLOCK`` consecutive draws, the number of text
draws in a block is set by the cumulative expected share (a Bresenham-style quota, so over any
prefix the text count is within one of the expected count), and their positions inside the block
are shuffled with a generator seeded by (seed, block). No hidden state means a resumed run sees
exactly the draws an uninterrupted run would have seen; the only state is a counter.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

BLOCK = 16
WARMUP_KINDS = ("none", "linear", "step")


@dataclass(frozen=True)
class WarmupSchedule:
    """The language share of the data at each training step.

    ``kind="linear"`` falls from 1.0 to ``target`` evenly over ``steps``; ``kind="step"`` falls in
    ``stairs`` equal stairs; ``kind="none"`` (or ``steps=0``) is ``target`` from the start.

        >>> s = WarmupSchedule(target=0.7, steps=100, kind="linear")
        >>> s(0), s(50), s(100)
        (1.0, 0.85, 0.7)
    """

    target: float
    steps: int = 0
    kind: str = "linear"
    stairs: int = 4

    def __post_init__(self) -> None:
        if not 0.0 <= self.target <= 1.0:
            raise ValueError(f"language_ratio must be in [0, 1], got {self.target}")
        if self.kind not in WARMUP_KINDS:
            raise ValueError(f"warm-up kind must be one of {WARMUP_KINDS}, got {self.kind!r}")
        if self.steps < 0 or self.stairs < 1:
            raise ValueError("warm-up steps must be >= 0 and stairs >= 1")

    def __call__(self, step: int) -> float:
        if self.kind == "none" or self.steps == 0 or step >= self.steps:
            return self.target
        progress = step / self.steps  # 0 .. 1
        if self.kind == "step":
            progress = math.floor(progress * self.stairs) / self.stairs
        return round(1.0 - (1.0 - self.target) * progress, 12)


class ModalityPlan:
    """Decides, for every draw, whether it is language-only ("text") or multimodal ("image").

    A draw is one batch when ``group_by_modality`` (the paper's modality grouping) and one sample
    otherwise; ``batch_size`` converts draws to steps for the schedule.
    """

    def __init__(self, schedule: WarmupSchedule, seed: int = 0, group_by_modality: bool = True,
                 batch_size: int = 1) -> None:
        self.schedule = schedule
        self.seed = seed
        self.group_by_modality = group_by_modality
        self.draws_per_step = 1 if group_by_modality else batch_size
        # Cumulative expected text draws at each draw index inside the warm-up; linear after it.
        warmup_draws = schedule.steps * self.draws_per_step if schedule.kind != "none" else 0
        shares = np.array([schedule(d // self.draws_per_step) for d in range(warmup_draws)], dtype=np.float64)
        self._cumulative = np.concatenate([[0.0], np.cumsum(shares)])
        self._offset = random.Random(f"{seed}-offset").random()  # where the quota rounding falls

    def expected_text(self, draws: int) -> float:
        """Expected number of text draws among the first ``draws``."""
        warmup = len(self._cumulative) - 1
        if draws <= warmup:
            return float(self._cumulative[draws])
        return float(self._cumulative[warmup]) + (draws - warmup) * self.schedule.target

    def _text_quota(self, block: int) -> int:
        start, end = block * BLOCK, (block + 1) * BLOCK
        return math.floor(self.expected_text(end) + self._offset) - math.floor(self.expected_text(start) + self._offset)

    def is_text(self, draw: int) -> bool:
        block, position = divmod(draw, BLOCK)
        return position in _text_positions(self.seed, block, self._text_quota(block))

    def modality(self, draw: int) -> str:
        return "text" if self.is_text(draw) else "image"

    def text_before(self, draw: int) -> int:
        """How many of draws 0 .. draw-1 are text, without visiting them.

        The quotas of whole blocks telescope (each is a difference of floors), so the blocks before
        ``draw``'s hold ``floor(E(start) + offset) - floor(E(0) + offset)`` text draws.
        """
        block, position = divmod(draw, BLOCK)
        whole_blocks = (math.floor(self.expected_text(block * BLOCK) + self._offset)
                        - math.floor(self.expected_text(0) + self._offset))
        inside = _text_positions(self.seed, block, self._text_quota(block))
        return whole_blocks + sum(1 for p in inside if p < position)

    def rank(self, draw: int) -> int:
        """The number of earlier draws of the same modality: this draw is the rank-th of its kind."""
        before = self.text_before(draw)
        return before if self.is_text(draw) else draw - before

    def sample_rank(self, step: int, slot: int, width: int) -> int:
        """The rank of sample ``slot`` of step ``step`` among all samples of its modality (``width``: the
        global batch). With grouping a draw is a whole batch, so ranks advance ``width`` a draw."""
        if self.group_by_modality:
            return self.rank(step) * width + slot
        return self.rank(step * width + slot)

    def step_modalities(self, step: int, batch_size: int) -> list[str]:
        """Modalities of the samples of one batch (all equal when grouping by modality)."""
        if self.group_by_modality:
            return [self.modality(step)] * batch_size
        return [self.modality(step * batch_size + i) for i in range(batch_size)]


@lru_cache(maxsize=4096)
def _text_positions(seed: int, block: int, quota: int) -> frozenset[int]:
    rng = random.Random(f"{seed}-block-{block}")
    return frozenset(rng.sample(range(BLOCK), quota))


def draw_seed(seed: int, step: int, slot: int, stream: str) -> int:
    """A 62-bit seed for one sample, a pure function of its place in the run (stable across runs)."""
    return random.Random(f"{seed}-{stream}-{step}-{slot}").getrandbits(62)
