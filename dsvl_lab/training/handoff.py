"""Stage hand-off: what a stage leaves behind, and the checks the next stage makes before using it.

A finished stage writes ``<stage folder>/model/``: the weights and config (``save_pretrained``,
loadable by ``DSVLModel.from_pretrained`` and ``dsvl-lab chat``) and ``stage.json``, the hand-off
card: which stage and preset made it, the model config, the steps it ran, its evaluation and the
tensor checksum of the weights. The receiving stage refuses, saying which:

- a folder that does not exist or holds no stage output (the previous stage is missing);
- the output of another stage than the one it continues (e.g. stage 3 given stage 1: stage 2 is missing);
- another model preset or a different config (shapes would not match);
- weights altered since they were written (checksum).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..artifacts import read_card, tensor_checksum, write_card
from ..config import DSVLConfig
from ..errors import InputError
from ..model import DSVLModel

CARD_NAME = "stage"  # the hand-off card: model/stage.json
CARD = f"{CARD_NAME}.json"


class HandoffError(InputError):
    """The checkpoint handed to a stage is not the one it must continue."""


def model_folder(path: str | Path) -> Path:
    """A stage folder (``runs/demo/stage2_joint``) or its ``model`` folder -> the model folder."""
    path = Path(path)
    return path / "model" if (path / "model").is_dir() else path


def stage_card(folder: Path) -> dict | None:
    """The hand-off card in a model folder (``stage.json``), or None if the folder holds none."""
    return read_card(folder, CARD_NAME)


def made_by(folder: str | Path, preset: str, spec: dict) -> bool:
    """Does the stage folder hold a finished hand-off of exactly this preset and stage spec?"""
    card = stage_card(model_folder(folder))
    return card is not None and card.get("preset") == preset and card.get("spec") == json.loads(json.dumps(spec))


def check_stage_output(start: str | Path | None, expected_stage: str, preset: str, receiving: str) -> dict:
    """Raise HandoffError unless ``start`` holds ``expected_stage``'s output for ``preset``; return its card."""
    if start is None:
        raise HandoffError(f"stage {receiving} continues stage {expected_stage}, but no checkpoint was given: "
                           f"pass the {expected_stage} output folder as start (dsvl-lab pipeline does this)")
    folder = model_folder(start)
    card = stage_card(folder) if folder.is_dir() else None
    if card is None:
        raise HandoffError(f"stage {receiving} continues stage {expected_stage}, but {start} holds no stage output "
                           f"(no model/{CARD}): the {expected_stage} stage is missing; run it first")
    if card["stage"] != expected_stage:
        raise HandoffError(f"stage {receiving} continues stage {expected_stage}, but {start} holds the output of "
                           f"{card['stage']}: the {expected_stage} stage is missing; run it on that output first")
    if card["preset"] != preset:
        raise HandoffError(f"{start} was trained with preset {card['preset']}, but this run uses {preset}: "
                           f"use the same preset in every stage")
    expected = json.loads(json.dumps(DSVLConfig.from_name(preset).to_dict()))  # tuples as JSON lists
    different = sorted(k for k in expected if card["config"].get(k) != expected[k])
    if different:
        raise HandoffError(f"{start} has a different model config than preset {preset} ({', '.join(different)}); "
                           f"it was made by another version of the preset: rerun the earlier stages")
    return card


def load_stage_output(start: str | Path, expected_stage: str, preset: str, receiving: str) -> DSVLModel:
    """The checked model of the previous stage (its weights' checksum must match the card)."""
    card = check_stage_output(start, expected_stage, preset, receiving)
    model = DSVLModel.from_pretrained(model_folder(start))
    if tensor_checksum(model.state_dict()) != card["tensor_sha256"]:
        raise HandoffError(f"the weights in {model_folder(start)} changed since stage {expected_stage} wrote them "
                           f"(tensor checksum differs from {CARD}); rerun stage {expected_stage}")
    return model


def write_stage_output(model: DSVLModel, folder: str | Path, stage: str, preset: str, steps: int,
                       evaluation: dict | None = None, extra: dict | None = None) -> Path:
    """Save the model and its hand-off card into ``folder/model`` (each file atomically)."""
    target = Path(folder) / "model"
    model.save_pretrained(target)
    card = {"stage": stage, "preset": preset, "steps": steps, "config": model.config.to_dict(),
            "tensor_sha256": tensor_checksum(model.state_dict()), "evaluation": evaluation or {}, **(extra or {})}
    write_card(target, CARD_NAME, card)
    return target
