"""The study: a parsed, validated ``sweep.yaml`` (:class:`SweepSpec`), expanded into arms x seeds of :class:`RunPlan`.

Checked in this order, before anything runs: the top-level keys, the shape of every section
(:func:`check_sections`), the seeds and the baseline, the claims, measures, trends and fractions
(:func:`entries`), and finally every run (:meth:`SweepSpec.runs`), so that every arm's stages are built.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...config import shown, type_name
from ...errors import InputError
from ...training.spec import StageConfigError, is_int, is_number
from ...yaml_files import read_yaml
from .errors import SweepConfigError, suggest
from .parts import Claim, Fraction, Measure, Trend
from .resolve import resolve_run
from .run_plan import RunPlan

TOP_KEYS = ("study", "question", "base", "arms", "seeds", "baseline", "claims", "curves", "measures", "trends",
            "fractions", "smoke", "slurm")


@dataclass
class SweepSpec:
    """A parsed, validated ``sweep.yaml``; :meth:`runs` expands it into arms x seeds."""

    study: str
    arms: dict[str, dict[str, Any]]
    seeds: list[int]
    baseline: str
    base: dict[str, Any] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    curves: list[str] = field(default_factory=list)
    measures: list[Measure] = field(default_factory=list)
    trends: list[Trend] = field(default_factory=list)
    fractions: list[Fraction] = field(default_factory=list)
    question: str = ""
    smoke: dict[str, Any] = field(default_factory=dict)
    slurm: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    source: dict[str, Any] = field(default_factory=dict)  # the mapping it was read from

    @classmethod
    def load(cls, path: str | Path) -> "SweepSpec":
        """Read and validate a sweep.yaml; every problem is a SweepConfigError naming the file and key."""
        path = Path(path)
        if not path.is_file():
            raise SweepConfigError("no such sweep file; studies live in ablations/<study>/sweep.yaml", source=path)
        return cls.from_dict(read_yaml(path, SweepConfigError), path)

    @classmethod
    def from_dict(cls, data: Any, path: Path | None = None) -> "SweepSpec":
        try:
            return cls._from_mapping(data, path)
        except InputError as error:  # keys are checked without the file; name it on the way out
            raise error.at(path) from None

    @classmethod
    def _from_mapping(cls, data: Any, path: Path | None) -> "SweepSpec":
        if not isinstance(data, dict):
            raise SweepConfigError(f"must be a mapping with study, arms, seeds and baseline, got {type_name(data)}")
        unknown = [key for key in data if key not in TOP_KEYS]
        if unknown:
            raise SweepConfigError(f"unknown top-level key{suggest(unknown[0], TOP_KEYS)}", key=str(unknown[0]))
        for key in ("study", "arms", "seeds", "baseline"):
            if key not in data:
                raise SweepConfigError("missing: every study sets it", key=key)
        check_sections(data)
        arms = data["arms"]
        seeds = data["seeds"]
        if not (isinstance(seeds, list) and seeds and all(is_int(s) and s >= 0 for s in seeds)
                and len(set(seeds)) == len(seeds)):
            raise SweepConfigError(f"must be a list of distinct integers >= 0, got {shown(seeds)}", key="seeds")
        if data["baseline"] not in arms:
            raise SweepConfigError(f"{data['baseline']!r} is not an arm; arms are {list(arms)}", key="baseline")
        claims = entries(data, "claims", Claim, ("arm", "metric"))
        measures = entries(data, "measures", Measure, ("name", "curve"))
        trends = entries(data, "trends", Trend, ("x", "metric"))
        fractions = entries(data, "fractions", Fraction, ("arm", "of", "metric"))
        for key, items, fields in (("claims", claims, ("arm", "against")), ("fractions", fractions, ("arm", "of"))):
            for index, item in enumerate(items):
                for name in fields:
                    if getattr(item, name) and getattr(item, name) not in arms:
                        raise SweepConfigError(f"{getattr(item, name)!r} is not an arm; arms are {list(arms)}",
                                               key=f"{key}[{index}].{name}")
        spec = cls(study=str(data["study"]), arms={str(k): dict(v or {}) for k, v in arms.items()},
                   seeds=list(seeds), baseline=str(data["baseline"]), base=dict(data.get("base") or {}),
                   claims=claims, curves=list(data.get("curves") or []), measures=measures, trends=trends,
                   fractions=fractions, question=str(data.get("question", "")),
                   smoke=dict(data.get("smoke") or {}), slurm=dict(data.get("slurm") or {}), path=path,
                   source=copy.deepcopy(data))
        for index, trend in enumerate(trends):
            for arm in spec.arms:
                value = spec.arm_value(arm, trend.x)
                if not is_number(value):
                    raise SweepConfigError(f"arm {arm!r} sets no number for {trend.x!r} (got {shown(value)}); "
                                           f"a trend needs every arm to set it", key=f"trends[{index}].x")
        spec.runs()  # validates every arm before anything runs
        return spec

    def arm_value(self, arm: str, key: str) -> Any:
        """The value an arm gives an override key: the arm's own, else the base's (None if neither sets it)."""
        return {**self.base, **self.arms[arm]}.get(key)

    # ------------------------------------------------------------------ expansion
    def runs(self, smoke: bool = False, seeds: list[int] | None = None) -> list[RunPlan]:
        """Every (arm, seed) as a resolved plan; ``smoke`` gives micro presets and a few steps;
        ``seeds`` picks some of the study's seeds (e.g. one seed first, the others later)."""
        study_seeds = self.smoke.get("seeds", self.seeds[:2]) if smoke else self.seeds
        unknown = sorted(set(seeds or []) - set(study_seeds))
        if unknown:
            raise SweepConfigError(f"seeds {unknown} are not seeds of study {self.study} ({study_seeds}); "
                                   f"add them to its sweep.yaml", source=self.path, key="seeds")
        seeds = [s for s in study_seeds if s in seeds] if seeds else study_seeds
        plans = []
        for arm, overrides in self.arms.items():
            for seed in seeds:
                plans.append(self.resolve(arm, {**self.base, **overrides}, seed, smoke))
        return plans

    def resolve(self, arm: str, overrides: dict[str, Any], seed: int, smoke: bool) -> RunPlan:
        try:
            return resolve_run(self.study, arm, overrides, seed, smoke)
        except (SweepConfigError, StageConfigError, ValueError, TypeError) as error:
            # str(error) names the override's own key (stages.stage2_joint.steps: ...)
            raise SweepConfigError(str(error), source=self.path, key=f"arms.{arm}") from None


def entries(data: dict, key: str, kind: type, required: tuple[str, ...]) -> list:
    """The list under ``key`` (claims, measures, trends, fractions) as ``kind`` objects, each checked."""
    found = []
    for index, entry in enumerate(data.get(key) or []):
        where = f"{key}[{index}]"
        if not isinstance(entry, dict):
            raise SweepConfigError(f"must be a mapping ({', '.join(required)}, ...), got {type_name(entry)}", key=where)
        known = [f.name for f in dataclasses.fields(kind)]
        for name in entry:
            if name not in known:
                raise SweepConfigError(f"unknown key{suggest(str(name), known)}", key=f"{where}.{name}")
        for name in required:
            if name not in entry:
                raise SweepConfigError(f"missing: every entry of {key} names it", key=f"{where}.{name}")
        try:
            found.append(kind(**entry))
        except SweepConfigError as error:
            raise SweepConfigError(error.problem, key=f"{where}.{error.key}") from None
    return found


def check_sections(data: dict) -> None:
    """The shape of a sweep.yaml's sections, before any value is used (types of the values come later)."""
    if not isinstance(data["study"], (str, int)) or isinstance(data["study"], bool):
        raise SweepConfigError(f"must be a name, got {shown(data['study'])}", key="study")
    if not isinstance(data["baseline"], str):
        raise SweepConfigError(f"must be the name of an arm, got {shown(data['baseline'])}", key="baseline")
    arms = data["arms"]
    if not isinstance(arms, dict) or not arms:
        raise SweepConfigError("must map arm names to overrides ({} for none)", key="arms")
    overrides = {f"arms.{name}": value for name, value in arms.items()}
    overrides["base"] = data.get("base")
    for where, value in overrides.items():
        if value is not None and not isinstance(value, dict):
            raise SweepConfigError(f"must be a mapping of overrides (key: value), got {type_name(value)}", key=where)
        for key in value or {}:
            if not isinstance(key, str):
                raise SweepConfigError(f"override keys are dotted names like stages.stage2_joint.steps, "
                                       f"got {shown(key)}", key=where)
        if value and "stages" in value and not (isinstance(value["stages"], list)
                                                and all(isinstance(n, str) for n in value["stages"])):
            raise SweepConfigError(f"must be a list of stage names, got {shown(value['stages'])}",
                                   key=f"{where}.stages")
    for key in ("claims", "curves", "measures", "trends", "fractions"):
        if data.get(key) is not None and not isinstance(data[key], list):
            raise SweepConfigError(f"must be a list, got {type_name(data[key])}", key=key)
    for index, curve in enumerate(data.get("curves") or []):
        if not (isinstance(curve, str) and ":" in curve):
            raise SweepConfigError(f"must be '<stage>:<metric>', got {shown(curve)}", key=f"curves[{index}]")
    for key in ("smoke", "slurm"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise SweepConfigError(f"must be a mapping, got {type_name(data[key])}", key=key)
    smoke = data.get("smoke") or {}
    for key in smoke:
        if key != "seeds":
            raise SweepConfigError(f"unknown key{suggest(str(key), ['seeds'])}", key=f"smoke.{key}")
    if "seeds" in smoke and not (isinstance(smoke["seeds"], list) and smoke["seeds"]
                                 and all(is_int(s) and s >= 0 for s in smoke["seeds"])):
        raise SweepConfigError(f"must be a list of integers >= 0, got {shown(smoke['seeds'])}", key="smoke.seeds")
    if not isinstance(data.get("question", ""), str):
        raise SweepConfigError(f"must be a string, got {shown(data['question'])}", key="question")
