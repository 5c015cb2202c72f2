"""Multimodal evaluation on fixed, held-out task samples: exact match and option perplexity.

Paper: generative benchmarks are scored by exact answers, and, because small models follow
instructions poorly before SFT, the authors also scored multiple choice by perplexity (docs/deepseek_vl_facts.md 4.6:
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

from ..constants import IGNORE_INDEX, PROMPT_FORMATS
from ..data.stage_data import QA_PROMPT, chat_conversation, eval_seed, plain_example, qa_example, world_image_size
from ..data.sample_cache import SampleKey, cached_sample
from ..processor import DSVLProcessor, EncodedSample


def eval_set(family: str, detail: str, n: int, image_size: int, first: int = 0) -> list:
    """``n`` fixed evaluation samples of one family and detail level, from evaluation index ``first``.

    A sweep gives each seed its own block of questions (``first = seed * EVAL_BLOCK``), so seeds
    sample the evaluation set too while the arms of one seed answer the very same questions. Read
    from the shared sample cache when ``DSVL_LAB_SAMPLE_CACHE`` names one (``data/sample_cache.py``).
    """
    return [cached_sample(family, eval_seed(first + i), detail=detail, image_size=image_size) for i in range(n)]


def eval_sample_keys(families, details, n: int, image_size: int, first: int = 0) -> set[SampleKey]:
    """The samples ``evaluate_vl`` with these arguments reads: what to pre-render into the sample cache."""
    return {SampleKey(family, detail, image_size, eval_seed(first + i))
            for family in families for detail in details for i in range(n)}


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


def mean_answer_loss(model, batch: dict, image_embeds: torch.Tensor | None = None) -> torch.Tensor:
    """Mean next-token loss over each row's supervised tokens: [B].

    ``image_embeds`` [rows' images, g*g, n], when given, replaces encoding ``pixel_values`` again
    (the options of one question share one image).
    """
    if image_embeds is None:
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    else:
        embeds = model.embed_inputs(batch["input_ids"], image_embeds=image_embeds)
        logits = model(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits
    logits = logits[:, :-1].float()
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


def chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def option_choices(model, processor: DSVLProcessor, samples: list, prompt_format: str, device,
                   rows_per_batch: int = 32) -> list[str]:
    """The option each sample's first question is answered with: the one of lowest answer loss.

    Every image is encoded once; all (sample, option) rows are scored in batches of ``rows_per_batch``.
    """
    pixels = processor.process_images([sample.image for sample in samples]).to(device)
    image_embeds = torch.cat([model.encode_images(chunk) for chunk in pixels.split(16)])  # [N, g*g, n]
    rows = [(i, option) for i, sample in enumerate(samples) for option in sample.qa[0].options]
    losses: list[float] = []
    for chunk in chunks(rows, rows_per_batch):
        encoded = [encode_with_answer(processor, samples[i], option, prompt_format) for i, option in chunk]
        batch = {k: v.to(device) for k, v in processor.pad_left(encoded).items()}
        losses += mean_answer_loss(model, batch, image_embeds[[i for i, _ in chunk]]).tolist()
    chosen, position = [], 0
    for sample in samples:
        options = list(sample.qa[0].options)
        scores = losses[position:position + len(options)]
        chosen.append(options[min(range(len(options)), key=scores.__getitem__)])
        position += len(options)
    return chosen


def greedy_answers(model, processor: DSVLProcessor, samples: list, prompt_format: str, device,
                   max_new_tokens: int, batch_size: int = 16) -> list[str]:
    """Greedy answers to each sample's first question, prompts batched with left padding."""
    answers = []
    for chunk in chunks(samples, batch_size):
        prompt = batch_of(processor, [prompt_only(processor, sample, prompt_format) for sample in chunk], device)
        del prompt["labels"]
        tokens = model.generate(**prompt, max_new_tokens=max_new_tokens)
        answers += [processor.decode(row) for row in tokens]
    return answers


@torch.no_grad()
def score_samples(model, processor: DSVLProcessor, samples: list, prompt_format: str = "chat",
                  max_new_tokens: int = 8, generate: bool = True) -> VLScore:
    """Exact-match and option accuracy of the first question of each sample."""
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, got {prompt_format!r}")
    if not samples:
        return VLScore(float("nan"), float("nan"), float("nan"), 0)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    chosen = option_choices(model, processor, samples, prompt_format, device)
    option_right = sum(choice == sample.qa[0].answer for choice, sample in zip(chosen, samples))
    chance = sum(1 / len(sample.qa[0].options) for sample in samples)
    exact = float("nan")
    if generate:
        answers = greedy_answers(model, processor, samples, prompt_format, device, max_new_tokens)
        exact = sum(normalize(a) == normalize(s.qa[0].answer) for a, s in zip(answers, samples)) / len(samples)
    model.train(was_training)
    n = len(samples)
    return VLScore(exact, option_right / n, chance / n, n)


def evaluate_vl(model, processor: DSVLProcessor, families=("chart", "ocr", "doc", "screen", "scene"),
                details=("coarse", "fine"), n: int = 20, image_size: int | None = None, prompt_format: str = "chat",
                generate: bool = True, first: int = 0) -> dict[str, dict[str, float]]:
    """Scores per ``family/detail`` on fixed held-out samples, e.g. ``{"chart/coarse": {...}}``."""
    size = image_size or world_image_size(model.config)
    results = {}
    for family in families:
        for detail in details:
            score = score_samples(model, processor, eval_set(family, detail, n, size, first), prompt_format,
                                  generate=generate)
            results[f"{family}/{detail}"] = vars(score)
    return results
