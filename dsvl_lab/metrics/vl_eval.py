"""Multimodal evaluation on fixed, held-out task samples: exact match and option perplexity.

Paper: generative benchmarks are scored by exact answers, and, because small models follow
instructions poorly before SFT, the authors also scored multiple choice by perplexity (docs/deepseek_vl_facts.md 4.6:
"multi-choice PPL": compute the likelihood of each option and pick the best). Both are here:

- ``exact_match``: greedy generation, compared with the answer after normalisation;
- ``option_accuracy``: each option scored as the answer's continuation (mean loss per token),
  the lowest wins; chance is 1 / number of options.

Both read one pass over each question's prompt (image tokens and question, up to the answer): the
image is encoded once, the prompt is run once into a KV cache, and only the tokens after it are
run per option, on a copy of that cache; greedy answers continue from the same cache. The
options of a question share everything up to the answer (``encode_with_answer`` equals
``prompt_only`` followed by the answer), so this gives the losses of scoring each full row, at a
fraction of the cost: the rows are mostly image tokens.

Evaluation samples use seeds at and above 2**62, which training never draws (``stage_data``).
Two prompt formats match the stages: ``"plain"`` (``Question: q Answer:``, stages 1-2) and
``"chat"`` (the chat template, stage 3).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from ..constants import IGNORE_INDEX, PROMPT_FORMATS
from ..data.stage_data import QA_PROMPT, chat_conversation, eval_seed, plain_example, qa_example, world_image_size
from ..data.sample_cache import SampleKey, cached_sample
from ..model.llm import KVCache
from ..processor import DSVLProcessor, EncodedSample


def eval_set(family: str, detail: str, n: int, image_size: int, first: int = 0) -> list:
    """``n`` fixed evaluation samples of one family and detail level, from evaluation index ``first``.

    A sweep gives each seed its own block of questions (``first = seed * EVAL_BLOCK``), so seeds
    sample the evaluation set too while the arms of one seed answer the very same questions. Read
    from the shared sample cache when ``DSVL_LAB_SAMPLE_CACHE`` names one (``data/sample_cache.py``),
    and kept in memory for the process: the three stages of a pipeline evaluate the same questions.
    """
    return list(_eval_samples(family, detail, n, image_size, first))


@functools.lru_cache(maxsize=16)  # one evaluation's family x detail sets (10 by default), with room
def _eval_samples(family: str, detail: str, n: int, image_size: int, first: int) -> tuple:
    return tuple(cached_sample(family, eval_seed(first + i), detail=detail, image_size=image_size) for i in range(n))


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


@dataclass
class PromptCache:
    """A batch of questions run once up to where the answer starts."""

    prompts: list[EncodedSample]  # each question's prompt, tokenised
    logits: torch.Tensor          # [B, vocab]: the prediction of each answer's first token
    past: KVCache                 # keys and values of every prompt position, per layer
    attention_mask: torch.Tensor  # [B, T]: 0 on the left padding


def run_prompts(model, processor: DSVLProcessor, samples: list, prompt_format: str, device) -> PromptCache:
    """Encode the images and run the prompts of ``samples`` (left-padded) once, keeping the cache."""
    prompts = [prompt_only(processor, sample, prompt_format) for sample in samples]
    batch = processor.pad_left(prompts)
    input_ids, attention_mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    image_embeds = model.encode_images(processor.process_images([s.image for s in samples]).to(device))  # [B, g*g, n]
    logits, past = model.prefill(model.embed_inputs(input_ids, image_embeds=image_embeds), attention_mask)
    return PromptCache(prompts, logits, past, attention_mask)


def answer_tails(processor: DSVLProcessor, sample, prompt: EncodedSample, option: str,
                 prompt_format: str) -> tuple[list[int], list[int]]:
    """The tokens after the prompt when ``option`` is the answer (the answer and its EOS), and their labels."""
    full = encode_with_answer(processor, sample, option, prompt_format)
    start = len(prompt.input_ids)
    if full.input_ids[:start] != prompt.input_ids or any(label != IGNORE_INDEX for label in full.labels[:start]):
        raise RuntimeError(f"the {prompt_format!r} prompt is not a prefix of its answered row for option {option!r}:"
                           f" the options cannot share one prompt pass (check encode_with_answer and prompt_only)")
    return full.input_ids[start:], full.labels[start:]


def option_losses(model, processor: DSVLProcessor, samples: list, cache: PromptCache, prompt_format: str,
                  rows_per_batch: int = 64) -> list[float]:
    """Mean loss per supervised answer token of every (sample, option) row, in order, from the cache.

    Each row runs only its answer tokens, on a copy of its question's cached keys and values; the
    logits that predict answer token j are the prompt's last position's for j = 0, and the answer's
    position j - 1 after that (the shift a causal LM's loss makes).
    """
    rows = [(i, *answer_tails(processor, sample, cache.prompts[i], option, prompt_format))
            for i, sample in enumerate(samples) for option in sample.qa[0].options]
    device = cache.logits.device
    losses: list[float] = []
    for chunk in chunks(rows, rows_per_batch):
        index = torch.tensor([i for i, _, _ in chunk], device=device)
        width = max(len(ids) for _, ids, _ in chunk)
        ids = torch.full((len(chunk), width), processor.pad_token_id, dtype=torch.long)  # right padding:
        labels = torch.full((len(chunk), width), IGNORE_INDEX, dtype=torch.long)       # no real token sees it
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        for row, (_, tail_ids, tail_labels) in enumerate(chunk):
            ids[row, :len(tail_ids)], labels[row, :len(tail_ids)] = torch.tensor(tail_ids), torch.tensor(tail_labels)
            mask[row, :len(tail_ids)] = 1
        ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
        past = [(key[index], value[index]) for key, value in cache.past]  # [rows, heads, T, head_dim] each
        attention_mask = torch.cat([cache.attention_mask[index], mask], dim=1)  # [rows, T + width]
        hidden, _ = model.language_model.model(model.language_model.embed(ids), attention_mask,
                                               past_key_values=past)  # [rows, width, n]
        logits = torch.cat([cache.logits[index][:, None], model.language_model.lm_head(hidden[:, :-1])], dim=1)
        token_losses = torch.nn.functional.cross_entropy(  # rows of [rows * width, vocab]: the fast layout
            logits.float().flatten(0, 1), labels.clamp(min=0).flatten(), reduction="none").view(labels.shape)
        supervised = (labels != IGNORE_INDEX).float()
        losses += ((token_losses * supervised).sum(1) / supervised.sum(1).clamp(min=1)).tolist()
    return losses


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


def lowest_loss_options(samples: list, losses: list[float]) -> list[str]:
    """Each sample's option of lowest loss; ``losses`` holds every sample's options in order."""
    chosen, position = [], 0
    for sample in samples:
        options = list(sample.qa[0].options)
        scores = losses[position:position + len(options)]
        chosen.append(options[min(range(len(options)), key=scores.__getitem__)])
        position += len(options)
    return chosen


def answer_questions(model, processor: DSVLProcessor, samples: list, prompt_format: str, device,
                     max_new_tokens: int = 0, batch_size: int = 16) -> tuple[list[str], list[str]]:
    """(the option each sample's first question is answered with, the greedy answers or [] when
    ``max_new_tokens`` is 0), from one pass over each batch of prompts."""
    chosen, answers = [], []
    for chunk in chunks(samples, batch_size):
        cache = run_prompts(model, processor, chunk, prompt_format, device)
        chosen += lowest_loss_options(chunk, option_losses(model, processor, chunk, cache, prompt_format))
        if max_new_tokens:
            tokens = model.generate_from_cache(cache.logits, cache.past, cache.attention_mask, max_new_tokens)
            answers += [processor.decode(row) for row in tokens]
    return chosen, answers


def option_choices(model, processor: DSVLProcessor, samples: list, prompt_format: str, device,
                   batch_size: int = 16) -> list[str]:
    """The option each sample's first question is answered with: the one of lowest answer loss."""
    return answer_questions(model, processor, samples, prompt_format, device, batch_size=batch_size)[0]


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
    chosen, answers = answer_questions(model, processor, samples, prompt_format, device,
                                       max_new_tokens if generate else 0)
    option_right = sum(choice == sample.qa[0].answer for choice, sample in zip(chosen, samples))
    chance = sum(1 / len(sample.qa[0].options) for sample in samples)
    exact = float("nan")
    if generate:
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
