"""Resolving one run: a study's dotted overrides (base, then arm) applied to the default stages -> a :class:`RunPlan`.

:func:`resolve_run` sets each key (:func:`set_dotted`), gives every stage the run's seed (the
pairing), checks that the stages continue one another (:func:`check_chain`) and, for ``--smoke``,
shrinks everything to seconds (:func:`smoke_version`).
"""
from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

from ...config import DSVLConfig, variant_name
from ...data.stage_data import OMITTED_AT_DEFAULT
from ...training.run import SMOKE_STEPS, has_foundation
from ...training.spec import SPEC_OMITTED_AT_DEFAULT, STAGE_NAMES, StageSpec, stage_spec
from .errors import SweepConfigError, suggest
from .parts import Evaluation
from .precision import resolve_precision
from .run_plan import RunPlan


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
    """Set each field a mapping names (``evaluation: {...}``, ``stages.X.data: {...}``), the others untouched."""
    if not isinstance(values, dict):
        raise SweepConfigError(f"{key} must be a mapping of fields, got {values!r}")
    for name, value in values.items():
        set_dotted(target, str(name), value, f"{key}.{name}")


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
    for size in ("-tiny-", "-small-", "-1.3b-", "-7b-"):
        preset = preset.replace(size, "-micro-", 1)
    for stage in stages.values():
        stage.update(steps=SMOKE_STEPS, warmup_steps=1)
        stage["data"].update(batch_size=4, warmup_steps=min(stage["data"]["warmup_steps"], 1))
        if stage["starts_from"] == "foundation" and not has_foundation(preset):
            stage["starts_from"] = "random"
    return preset, stages, {**evaluation, "samples": 2, "language": False, "generate": False}
