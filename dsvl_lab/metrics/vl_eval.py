"""Multimodal evaluation on fixed, held-out task samples: exact match and option perplexity.

Paper: generative benchmarks are scored by exact answers, and, because small models follow
instructions poorly before SFT, the authors also scored multiple choice by perplexity (facts 4.6:
"multi-choice PPL": compute the likelihood of each option and pick the best). Both are here:

- ``exact_match``: greedy generation, compared with the answer after normalisation;
- ``option_accuracy``: each option scored as the answer's continuation (mean loss per token),
  the lowest wins; chance is 1 / number of options.

Evaluation samples use seeds at and above 2**62, which training never draws (``stage_data``).
Two prompt formats match the stages: ``"plain"`` (``Question: q Answer:``, stages 1-2) and
``"chat"`` (the chat template, stage 3).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.stage_data import (IGNORE_INDEX, QA_PROMPT, chat_conversation, eval_seed, plain_example,
                               qa_example)
from ..processor import DSVLProcessor, EncodedSample

PROMPT_FORMATS = ("plain", "chat")


def eval_set(family: str, detail: str, n: int, image_size: int) -> list:
    """``n`` fixed evaluation samples of one family and detail level."""
    from ..data.tasks import generate_sample

    return [generate_sample(family, eval_seed(i), detail=detail, image_size=image_size) for i in range(n)]


def encode_with_answer(processor: DSVLProcessor, sample, answer: str, prompt_format: str) -> EncodedSample:
    """The first question of ``sample`` with ``answer`` as the reply; labels only on the reply."""
    if prompt_format == "chat":
        conversation = chat_conversation(sample)[:1] + [{"role": "assistant", "content": answer}]
        return processor.encode_conversation(conversation)
    return qa_example(processor, sample, 0, answer)


def prompt_only(processor: DSVLProcessor, sample, prompt_format: str) -> EncodedSample:
    """The first question of ``sample`` as a generation prompt, in the format the model was trained on."""
    if prompt_format == "chat":
        return processor.encode_conversation(chat_conversation(sample)[:1], add_generation_prompt=True)
    return plain_example(processor, QA_PROMPT.format(question=sample.qa[0].question), None, sample.image)


def batch_of(processor: DSVLProcessor, encoded: list[EncodedSample], device) -> dict:
    batch = processor.pad_left(encoded)
    batch["pixel_values"] = processor.process_images([image for e in encoded for image in e.images])
    return {k: v.to(device) for k, v in batch.items()}


def mean_answer_loss(model, batch: dict) -> torch.Tensor:
    """Mean next-token loss over each row's supervised tokens: [B]."""
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
    mask = (labels != IGNORE_INDEX).float()
    return (losses * mask).sum(1) / mask.sum(1).clamp(min=1)


def normalize(text: str) -> str:
    return " ".join(text.strip().lower().rstrip(".").split())


@dataclass
class VLScore:
    exact_match: float
    option_accuracy: float
    chance: float
    n: int


@torch.no_grad()
def score_samples(model, processor: DSVLProcessor, samples: list, prompt_format: str = "chat",
                  max_new_tokens: int = 8, generate: bool = True) -> VLScore:
    """Exact-match and option accuracy of the first question of each sample."""
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, got {prompt_format!r}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    exact, chosen_right, chance = 0, 0, 0.0
    for sample in samples:
        qa = sample.qa[0]
        options = list(qa.options)
        losses = mean_answer_loss(model, batch_of(processor, [encode_with_answer(processor, sample, o, prompt_format)
                                                              for o in options], device))
        chosen_right += options[int(losses.argmin())] == qa.answer
        chance += 1 / len(options)
        if generate:
            prompt = batch_of(processor, [prompt_only(processor, sample, prompt_format)], device)
            del prompt["labels"]
            tokens = model.generate(**prompt, max_new_tokens=max_new_tokens)
            exact += normalize(processor.decode(tokens[0])) == normalize(qa.answer)
    model.train(was_training)
    n = max(len(samples), 1)
    return VLScore(exact / n if generate else float("nan"), chosen_right / n, chance / n, len(samples))


def evaluate_vl(model, processor: DSVLProcessor, families=("chart", "ocr", "doc", "screen", "scene"),
                details=("coarse", "fine"), n: int = 20, image_size: int | None = None, prompt_format: str = "chat",
                generate: bool = True) -> dict[str, dict[str, float]]:
    """Scores per ``family/detail`` on fixed held-out samples, e.g. ``{"chart/coarse": {...}}``."""
    from ..data.stage_data import world_image_size

    size = image_size or world_image_size(model.config)
    results = {}
    for family in families:
        for detail in details:
            score = score_samples(model, processor, eval_set(family, detail, n, size), prompt_format,
                                  generate=generate)
            results[f"{family}/{detail}"] = vars(score)
    return results
