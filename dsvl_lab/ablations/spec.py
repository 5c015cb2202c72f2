"""A study as data: ``sweep.yaml`` -> validated arms x seeds -> one resolved ``RunPlan`` per run.

A study's YAML names a *base* (what every arm runs), *arms* (what each changes), *seeds*, the
*baseline* arm the others are compared with, and the *claims* the study tests::

    study: encoder
    base:
      preset: dsvl-tiny-hybrid
      evaluation.samples: 40
    arms:
      siglip: {preset: dsvl-tiny-siglip}
      hybrid: {}
    seeds: [0, 1, 2]
    baseline: siglip
    claims:
      - {arm: hybrid, metric: mean/fine, direction: greater}

Base and arms are *dotted overrides*, applied in that order:

=================================  ==================================================================
key                                what it sets
=================================  ==================================================================
``preset``                         the model preset (``dsvl-lab presets``)
``model.<config field>``           a field of the preset's ``DSVLConfig`` (``model.aligner.depth: 3``,
                                   checked by ``DSVLConfig.replace``):
                                   the run's preset becomes a *variant* ``name[aligner.depth=3]``
``stages``                         which stages run, in order (default: the paper's three)
``stages.<stage>.<field>``         a ``StageSpec`` field, ``data.`` for its ``StageData``
                                   (``stages.stage2_joint.data.language_ratio: 0.1``)
``evaluation.<field>``             a field of :class:`Evaluation`
``precision``                      Lightning precision of training and evaluation: ``32-true``,
                                   ``bf16-mixed``, or ``auto`` (default: bf16 on a GPU or a CPU with fast
                                   bf16 matmuls, else fp32; resolved when the sweep is planned)
=================================  ==================================================================

Everything is checked before anything runs: an unknown key is named with the closest valid one,
and every arm's stages are built (so ``StageSpec`` / ``StageData`` check their values).

Pairing: a run's seed is every stage's ``data.seed`` (the data order and, since ``run_stage`` seeds
everything from it, the initialisation of what trains) and picks the run's block of held-out
evaluation questions (:data:`EVAL_BLOCK`), so two arms of one seed differ only by what the arms set.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import DSVLConfig, did_you_mean, shown, type_name, variant_name
from ..data.stage_data import OMITTED_AT_DEFAULT
from ..errors import InputError
from ..training.run import SMOKE_STEPS
from ..training.spec import (SPEC_OMITTED_AT_DEFAULT, STAGE_NAMES, StageConfigError, StageSpec, is_int, is_number,
                             stage_spec)

EVAL_BLOCK = 10_000  # seed s answers evaluation questions s * EVAL_BLOCK ... (disjoint blocks)
DIRECTIONS = ("greater", "less")
TOP_KEYS = ("study", "question", "base", "arms", "seeds", "baseline", "claims", "curves", "measures", "trends",
            "fractions", "smoke", "slurm")
STATS = ("max", "min", "mean", "last", "rise", "throughput")
TREND_DIRECTIONS = ("increasing", "decreasing")


class SweepConfigError(InputError):
    """A bad sweep.yaml, found before anything runs; names the file, the key and the fix."""


# ============================================================================ the pieces of a study
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
        from ..data.tasks import FAMILIES

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
    text = json.dumps(json.loads(json.dumps(data)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


# ============================================================================ the study
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
        from ..yaml_files import read_yaml

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


# ============================================================================ resolving one run
def resolve_run(study: str, arm: str, overrides: dict[str, Any], seed: int, smoke: bool = False) -> RunPlan:
    """Apply ``overrides`` (base then arm) to the defaults and return the run's plan."""
    preset = overrides.get("preset", "dsvl-tiny-hybrid")
    if not isinstance(preset, str):
        raise SweepConfigError(f"preset must be a preset name, got {preset!r}")
    model_overrides = {key[len("model."):]: value for key, value in overrides.items() if key.startswith("model.")}
    preset = variant_name(preset, model_overrides)
    names = list(overrides.get("stages", STAGE_NAMES))
    stage_dicts = {name: json.loads(json.dumps(stage_spec(name).to_dict())) for name in names}
    for name, stage in stage_dicts.items():  # to_dict leaves these out at their default; an arm may still set them
        stage_dicts[name] = {**SPEC_OMITTED_AT_DEFAULT, **stage, "data": {**OMITTED_AT_DEFAULT, **stage["data"]}}
    evaluation = dataclasses.asdict(Evaluation())
    for key, value in overrides.items():
        if key in ("preset", "stages", "precision") or key.startswith("model."):
            continue
        head, _, rest = key.partition(".")
        if head == "evaluation":
            set_dotted(evaluation, rest, value, key) if rest else merge_into(evaluation, value, key)
        elif head == "stages":
            stage, _, field_path = rest.partition(".")
            if stage not in stage_dicts:
                raise SweepConfigError(f"unknown key {key!r}: stage {stage!r} does not run in this arm; "
                                       f"its stages are {names}{suggest(stage, names)}")
            set_dotted(stage_dicts[stage], field_path, value, key)
        else:
            raise SweepConfigError(f"unknown key {key!r}: keys start with preset, model., stages or evaluation."
                                   f"{suggest(head, ('preset', 'model', 'stages', 'evaluation'))}")
    for stage in stage_dicts.values():
        stage["data"]["seed"] = seed  # the pairing: same seed, same data order and initialisation
    if smoke:
        preset, stage_dicts, evaluation = smoke_version(preset, stage_dicts, evaluation)
    stages = [StageSpec(**stage_dicts[name]) for name in names]
    check_chain(stages)
    precision = resolve_precision(overrides.get("precision", "auto"))
    plan = RunPlan(study, arm, seed, preset, stages, Evaluation(**evaluation), precision)
    DSVLConfig.from_name(plan.preset)  # an unknown preset or a bad variant fails here
    for stage in plan.evaluated_stages:
        if stage not in names:
            raise SweepConfigError(f"evaluation.after names {stage!r}, which does not run; stages are {names}")
    return plan


PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "auto")


def resolve_precision(precision: str) -> str:
    """``auto``: bf16 autocast where bf16 matmuls are fast (GPUs; CPUs with AMX / AVX-512 BF16), else fp32.

    Measured on a 2-core AMD EPYC without bf16 instructions (2026-11-30): a 1024^2 matmul runs at
    140 GFLOP/s in fp32 and 0.9 GFLOP/s in bf16, so bf16-mixed training is about 20x slower there.
    """
    if precision not in PRECISIONS:
        raise SweepConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    return "bf16-mixed" if fast_bf16() else "32-true"


def fast_bf16() -> bool:
    import time

    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    seconds = {}
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.randn(256, 256, dtype=dtype)
        a @ a
        start = time.perf_counter()
        for _ in range(3):
            a @ a
        seconds[dtype] = time.perf_counter() - start
    return seconds[torch.bfloat16] < 2 * seconds[torch.float32]


def set_dotted(target: dict, path: str, value: Any, key: str) -> None:
    """``target[a][b] = value`` for ``path = "a.b"``; an unknown field is named with the closest one."""
    *parents, leaf = path.split(".")
    for part in parents:
        if not isinstance(target.get(part), dict):
            raise SweepConfigError(f"unknown key {key!r}: no field {part!r} here{suggest(part, list(target))}")
        target = target[part]
    if leaf not in target:
        raise SweepConfigError(f"unknown key {key!r}: no field {leaf!r}{suggest(leaf, list(target))}")
    if isinstance(target[leaf], dict) and isinstance(value, dict) and leaf == "data":
        merge_into(target[leaf], value, key)  # stages.X.data: {...} changes the fields it names
    else:
        target[leaf] = copy.deepcopy(value)


def merge_into(target: dict, values: Any, key: str) -> None:
    if not isinstance(values, dict):
        raise SweepConfigError(f"{key} must be a mapping of fields, got {values!r}")
    for name, value in values.items():
        set_dotted(target, str(name), value, f"{key}.{name}")


def suggest(word: str, options) -> str:
    """The closest valid key, else the list of valid ones."""
    return did_you_mean(word, options) or f"; valid: {', '.join(map(str, options))}"


def check_chain(stages: list[StageSpec]) -> None:
    """The first stage starts from foundation / random weights; each later one continues the one before."""
    if not stages:
        raise SweepConfigError("stages lists no stage")
    if stages[0].starts_from not in ("foundation", "random"):
        raise SweepConfigError(f"stages.{stages[0].name}.starts_from is {stages[0].starts_from!r}, but it is the "
                               f"first stage: set it to foundation or random")
    for before, stage in zip(stages, stages[1:]):
        if stage.starts_from != before.name:
            raise SweepConfigError(f"stages.{stage.name}.starts_from is {stage.starts_from!r}, but the stage before "
                                   f"it is {before.name}: set stages.{stage.name}.starts_from: {before.name}")


def smoke_version(preset: str, stages: dict[str, dict], evaluation: dict) -> tuple[str, dict, dict]:
    """The machinery in seconds: micro presets, 3 steps of batch 4 a stage, 2 questions, no text eval."""
    from ..training.run import has_foundation

    for size in ("-tiny-", "-small-", "-1.3b-", "-7b-"):
        preset = preset.replace(size, "-micro-", 1)
    for stage in stages.values():
        stage.update(steps=SMOKE_STEPS, warmup_steps=1)
        stage["data"].update(batch_size=4, warmup_steps=min(stage["data"]["warmup_steps"], 1))
        if stage["starts_from"] == "foundation" and not has_foundation(preset):
            stage["starts_from"] = "random"
    return preset, stages, {**evaluation, "samples": 2, "language": False, "generate": False}
