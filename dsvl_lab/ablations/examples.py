"""Held-out questions that one arm answers and another does not, with the pictures each arm saw.

A table says *how often* the hybrid beats SigLIP-only on fine detail; these examples say *where*:
the fine answer sits in a texture the 64 px view averages away (see ``dsvl_lab.data.tasks``).

    pairs = contrast_examples({"siglip": siglip_model, "hybrid": hybrid_model}, "siglip", "hybrid", "screen")
    plot_contrast(pairs, low_size=64)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.stage_data import world_image_size
from ..inspection.images import high_res_view, low_res_view
from ..metrics.vl_eval import eval_set, option_choices
from ..processor import DSVLProcessor


@dataclass
class Contrast:
    sample: object           # the task sample (image, question, options, answer)
    answers: dict[str, str]  # arm -> the option it chose


@torch.no_grad()
def contrast_examples(models: dict, wrong: str, right: str, family: str, detail: str = "fine", n: int = 40,
                      first: int = 0, prompt_format: str = "chat") -> list[Contrast]:
    """Held-out questions (the sweep's evaluation set for seed 0 when ``first=0``) that ``wrong`` misses
    and ``right`` answers; each model picks its option by answer loss, as in the study."""
    size = world_image_size(models[right].config)
    samples = eval_set(family, detail, n, size, first)
    choices = {}
    for arm, model in models.items():
        model.eval()
        device = next(model.parameters()).device
        choices[arm] = option_choices(model, DSVLProcessor.from_config(model.config), samples, prompt_format, device)
    found = []
    for index, sample in enumerate(samples):
        answer = sample.qa[0].answer
        if choices[wrong][index] != answer and choices[right][index] == answer:
            found.append(Contrast(sample, {arm: choices[arm][index] for arm in models}))
    return found


def plot_contrast(examples: list[Contrast], low_size: int, panel: float = 2.4):
    """Per example: the high-res image (what SAM sees) above the low-res view (what SigLIP sees)."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, max(1, len(examples)), figsize=(panel * max(1, len(examples)), 2 * panel + 0.9),
                                squeeze=False)
    for column, example in enumerate(examples):
        qa = example.sample.qa[0]
        axes[0][column].imshow(high_res_view(example.sample.image))
        # the antialiased resize overshoots [0, 1] by a hair at sharp edges
        axes[1][column].imshow(low_res_view(example.sample.image, low_size).clip(0, 1), interpolation="nearest")
        said = ", ".join(f"{arm}: {choice}" for arm, choice in example.answers.items())
        axes[0][column].set_title(f"{example.sample.family}: {qa.question}\nanswer {qa.answer} | {said}", fontsize=7)
        axes[1][column].set_title(f"the {low_size} px view", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    figure.tight_layout()
    return figure
