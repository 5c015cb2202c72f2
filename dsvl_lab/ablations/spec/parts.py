"""The pieces of a study: how a run is measured (:class:`Evaluation`) and what the study tests
(:class:`Claim`, :class:`Measure`, :class:`Trend`, :class:`Fraction`), each checked when it is made.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...config import shown
from ...data.tasks import FAMILIES
from ...training.spec import is_int, is_number
from .errors import SweepConfigError

DIRECTIONS = ("greater", "less")
STATS = ("max", "min", "mean", "last", "rise", "throughput")
TREND_DIRECTIONS = ("increasing", "decreasing")


@dataclass
class Evaluation:
    """How a run's end point is measured (``evaluation.*`` keys).

    ``samples`` held-out questions per family and detail (option accuracy: the paper's multiple-choice
    PPL); ``language``: held-out perplexity and word cloze as well; ``generate``: greedy exact match
    too (slower); ``after``: the stages whose output is evaluated (default: the last one).
    """

    samples: int = 40
    families: tuple[str, ...] = ("chart", "ocr", "doc", "screen", "scene")
    details: tuple[str, ...] = ("coarse", "fine")
    language: bool = True
    generate: bool = False
    after: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("families", "details", "after"):
            if not isinstance(getattr(self, name), (list, tuple)):
                raise SweepConfigError(f"must be a list, got {shown(getattr(self, name))}",
                                       key=f"evaluation.{name}")
        for name in ("language", "generate"):
            if not isinstance(getattr(self, name), bool):
                raise SweepConfigError(f"must be true or false, got {shown(getattr(self, name))}",
                                       key=f"evaluation.{name}")
        self.families, self.details, self.after = tuple(self.families), tuple(self.details), tuple(self.after)
        if not is_int(self.samples) or self.samples < 1:
            raise SweepConfigError(f"must be an integer >= 1, got {shown(self.samples)}", key="evaluation.samples")
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown:
            raise SweepConfigError(f"unknown {unknown}; choose from {FAMILIES}", key="evaluation.families")
        if any(detail not in ("coarse", "fine") for detail in self.details):
            raise SweepConfigError(f"must be coarse and/or fine, got {list(self.details)}", key="evaluation.details")


def check_strings(entry: Any, names: tuple[str, ...]) -> None:
    """Each named field of a claim, measure, trend or fraction is a string (YAML may give a number)."""
    for name in names:
        if not isinstance(getattr(entry, name), str):
            raise SweepConfigError(f"must be a string, got {shown(getattr(entry, name))}", key=name)


@dataclass
class Claim:
    """What the study tests: ``arm`` beats the baseline on ``metric`` in ``direction``.

    With a ``margin`` the claim is non-inferiority: the arm is no worse than the baseline by more
    than ``margin`` (supported when the paired interval lies above ``-margin`` for ``greater``).
    ``against`` compares with another arm instead of the baseline, e.g. the control arm that would
    expose a confound (the warm-up study's steady mix of the same total language).
    """

    arm: str
    metric: str
    direction: str = "greater"
    margin: float = 0.0
    stage: str = ""  # the evaluated stage; "" = the last
    text: str = ""
    against: str = ""  # "" = the study's baseline

    def __post_init__(self) -> None:
        check_strings(self, ("arm", "metric", "stage", "text", "against"))
        if self.against and self.against == self.arm:
            raise SweepConfigError(f"an arm cannot be compared with itself ({self.arm!r})", key="against")
        if self.direction not in DIRECTIONS:
            raise SweepConfigError(f"must be one of {DIRECTIONS}, got {shown(self.direction)}", key="direction")
        if not (is_number(self.margin) and self.margin >= 0):
            raise SweepConfigError(f"must be a number >= 0, got {shown(self.margin)}", key="margin")


@dataclass
class Measure:
    """A number read off a logged curve of each run, then compared across arms like any metric.

    ``max`` / ``min`` / ``mean`` / ``last`` of ``curve`` (``<stage>:<metric>``) over the logged steps in
    ``steps`` (``[first, last]``, both included; all steps when empty); ``rise``: that maximum minus the
    curve's first logged point (its start), e.g. the modality warm-up study's "early spike" of the
    held-out perplexity in the first 50 steps of stage 2. ``throughput``: the stage's training samples
    per wall second (``<stage>:samples/s``; ``steps`` is ignored), e.g. the modality grouping study's speed.
    """

    name: str
    curve: str
    stat: str = "max"
    steps: tuple[int, ...] = ()
    text: str = ""

    def __post_init__(self) -> None:
        check_strings(self, ("name", "curve", "text"))
        if ":" not in self.curve:
            raise SweepConfigError(f"must be '<stage>:<metric>', got {shown(self.curve)}", key="curve")
        if self.stat not in STATS:
            raise SweepConfigError(f"must be one of {STATS}, got {shown(self.stat)}", key="stat")
        if not (isinstance(self.steps, (list, tuple)) and len(self.steps) in (0, 2)
                and all(is_int(s) and s >= 0 for s in self.steps)):
            raise SweepConfigError(f"must be [first, last] step numbers, got {shown(self.steps)}", key="steps")
        self.steps = tuple(self.steps)

    @property
    def stage(self) -> str:
        return self.curve.partition(":")[0]


@dataclass
class Trend:
    """A dose-response claim across arms: ``metric`` rises (or falls) with a numeric setting ``x``.

    ``x`` is an override key every arm sets (in ``base`` or the arm), e.g.
    ``stages.stage2_joint.data.language_ratio``. The test is Spearman's rank correlation of the arms'
    mean ``metric`` with ``x``: supported when it reaches ``min_rho`` in ``direction``.
    """

    x: str
    metric: str
    direction: str = "increasing"
    min_rho: float = 0.9
    stage: str = ""
    text: str = ""

    def __post_init__(self) -> None:
        check_strings(self, ("x", "metric", "stage", "text"))
        if self.direction not in TREND_DIRECTIONS:
            raise SweepConfigError(f"must be one of {TREND_DIRECTIONS}, got {shown(self.direction)}", key="direction")
        if not (is_number(self.min_rho) and 0 < self.min_rho <= 1):
            raise SweepConfigError(f"must be a number in (0, 1], got {shown(self.min_rho)}", key="min_rho")


@dataclass
class Fraction:
    """How much of arm ``of``'s gain above chance arm ``arm`` keeps on ``metric``:
    (arm - chance) / (of - chance), per seed and as a ratio of the means."""

    arm: str
    of: str
    metric: str
    stage: str = ""
    text: str = ""

    def __post_init__(self) -> None:
        check_strings(self, ("arm", "of", "metric", "stage", "text"))
