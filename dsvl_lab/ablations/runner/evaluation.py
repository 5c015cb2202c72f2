"""Measuring a trained stage: held-out option accuracy per family and detail, and language retention.

Each seed answers its own block of held-out questions (``first = seed * EVAL_BLOCK``), under the
autocast the run trained with; language retention is reported as a change from the foundation LM
the run started from.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from ...artifacts import read_metrics
from ...data.lm_eval import language_retention
from ...foundation.recipe import FoundationError
from ...foundation.run import from_foundation
from ...harness import autocast_for
from ...metrics.vl_eval import evaluate_vl
from ...processor import DSVLProcessor
from ...training.handoff import load_stage_output, model_folder, stage_card
from ..spec import EVAL_BLOCK
from .folders import read_json


def evaluate_stage_output(folder: Path, stage: str, preset: str, evaluation: dict, seed: int,
                          precision: str = "32-true") -> dict[str, float]:
    """Option accuracy per ``family/detail``, their means per detail, and language retention."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_stage_output(folder, stage, preset, receiving="evaluation").to(device).eval()  # checksum checked
    processor = DSVLProcessor.from_config(model.config)
    prompt_format = stage_card(model_folder(folder))["spec"]["prompt_format"]
    with torch.no_grad(), autocast_for(precision, device):  # as the run trained
        scores = evaluate_vl(model, processor, families=evaluation["families"], details=evaluation["details"],
                             n=evaluation["samples"], prompt_format=prompt_format,
                             generate=evaluation["generate"], first=seed * EVAL_BLOCK)
        language = language_retention(model, processor) if evaluation["language"] else {}
    metrics: dict[str, float] = {}
    for key, score in scores.items():
        metrics[key] = score["option_accuracy"]
        metrics[f"{key}/chance"] = score["chance"]
        if evaluation["generate"]:
            metrics[f"{key}/exact_match"] = score["exact_match"]
    for detail in evaluation["details"]:
        cells = [metrics[f"{family}/{detail}"] for family in evaluation["families"]]
        metrics[f"mean/{detail}"] = sum(cells) / len(cells)
    if language:
        metrics["text_perplexity"] = language["perplexity"]
        metrics["cloze_accuracy"] = language["cloze_accuracy"]
        reference = foundation_language(preset, precision, device)
        if reference:  # language retention as a change from the LM the run started with
            metrics["text_perplexity_rise"] = language["perplexity"] / reference["perplexity"] - 1
            metrics["cloze_change"] = language["cloze_accuracy"] - reference["cloze_accuracy"]
    return {key: round(float(value), 6) for key, value in metrics.items()}


@functools.lru_cache(maxsize=4)
def foundation_language(preset: str, precision: str, device: str) -> dict | None:
    """Held-out perplexity and cloze of the shipped foundation LM a run of ``preset`` starts from (the
    LLM that stage 1 leaves frozen), measured as the runs are; None for presets without one (micro)."""
    try:
        model = from_foundation(preset).to(device).eval()
    except FoundationError:
        return None
    with torch.no_grad(), autocast_for(precision, device):
        return language_retention(model, DSVLProcessor.from_config(model.config))


def stage_summary(folder: Path) -> dict:
    """Steps, wall seconds (all invocations) and the logged curves (train/, val/ and lang/) of one stage, for curves
    and costs."""
    timing = read_json(folder / "timing.json") or {"invocations": []}
    rows = read_metrics(folder)
    curves: dict[str, list] = {}
    for row in rows:
        for key, value in row.items():
            if key.startswith(("train/", "val/", "lang/")) and key != "train/lr" and "step" in row:
                curves.setdefault(key, []).append([int(row["step"]), round(value, 5)])
    card = read_json(folder / "model" / "stage.json") or {}
    spec = card.get("spec", {})
    samples = spec.get("steps", 0) * spec.get("data", {}).get("batch_size", 0)  # trained samples, for throughput
    return {"folder": folder.name, "seconds": round(sum(i["seconds"] for i in timing["invocations"]), 1),
            "samples": samples, "curves": curves}
