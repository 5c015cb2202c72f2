"""One run of a study, fully resolved (:class:`RunPlan`), and the hashes that name its folders.

A run's folder name is its arm, its seed and a short hash of everything that decides its result
(:meth:`RunPlan.resolved`); a stage training's folder is named by :meth:`RunPlan.prefix_key`, the
hash of the preset and the stages up to it, so arms that share earlier stages share their training.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ...training.spec import StageSpec
from .parts import Evaluation

EVAL_BLOCK = 10_000  # seed s answers evaluation questions s * EVAL_BLOCK ... (disjoint blocks)


@dataclass
class RunPlan:
    """One run of a study, fully resolved: what trains, in which stages, and how it is measured."""

    study: str
    arm: str
    seed: int
    preset: str
    stages: list[StageSpec]
    evaluation: Evaluation
    precision: str = "32-true"

    def resolved(self) -> dict:
        """Everything that decides the run's result, as plain JSON (hashed for the folder name)."""
        return json.loads(json.dumps({"preset": self.preset, "seed": self.seed, "precision": self.precision,
                                      "stages": [s.to_dict() for s in self.stages],
                                      "evaluation": dataclasses.asdict(self.evaluation)}))

    @property
    def hash(self) -> str:
        return short_hash(self.resolved())

    @property
    def name(self) -> str:
        """The run's folder: arm, seed and a short hash of its resolved spec."""
        return f"{self.arm}-s{self.seed}-{self.hash}"

    def prefix_key(self, k: int) -> str:
        """The identity of stage ``k``'s output: the preset and stages 0..k (not the evaluation)."""
        return short_hash({"preset": self.preset, "precision": self.precision,
                           "stages": [s.to_dict() for s in self.stages[:k + 1]]})

    @property
    def evaluated_stages(self) -> tuple[str, ...]:
        return self.evaluation.after or (self.stages[-1].name,)


def short_hash(data: Any) -> str:
    """8 hex digits of the SHA-256 of ``data`` as sorted JSON: the same data, the same folder name."""
    text = json.dumps(json.loads(json.dumps(data)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]
