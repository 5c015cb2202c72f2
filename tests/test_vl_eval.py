"""Multimodal evaluation: fixed held-out sets, option perplexity, exact match."""
from __future__ import annotations

import pytest
import torch

from dsvl_lab.constants import IGNORE_INDEX
from dsvl_lab.data.stage_data import EVAL_SEED_BASE
from dsvl_lab.metrics.vl_eval import (answer_questions, answer_tails, encode_with_answer, eval_set, evaluate_vl,
                                      normalize, option_choices, option_losses, prompt_only, run_prompts)
from dsvl_lab.model import DSVLModel
from dsvl_lab.processor import DSVLProcessor


def test_eval_sets_are_fixed_and_use_held_out_seeds():
    first = eval_set("scene", "fine", 3, 64)
    again = eval_set("scene", "fine", 3, 64)
    assert [s.image.tobytes() for s in first] == [s.image.tobytes() for s in again]
    assert all(s.seed >= EVAL_SEED_BASE for s in first)


def test_answer_encoding_supervises_only_the_answer():
    model = DSVLModel.from_name("dsvl-micro-siglip")
    processor = DSVLProcessor.from_config(model.config)
    sample = eval_set("screen", "coarse", 1, 64)[0]
    for prompt_format in ("plain", "chat"):
        encoded = encode_with_answer(processor, sample, sample.qa[0].answer, prompt_format)
        supervised = processor.decode([i for i in encoded.labels if i >= 0])
        assert normalize(supervised) == normalize(sample.qa[0].answer)


def test_scores_are_fractions_with_the_right_chance_level():
    torch.manual_seed(0)
    model = DSVLModel.from_name("dsvl-micro-hybrid")
    processor = DSVLProcessor.from_config(model.config)
    results = evaluate_vl(model, processor, families=("scene", "chart"), details=("coarse",), n=4)
    assert set(results) == {"scene/coarse", "chart/coarse"}
    for score in results.values():
        assert 0 <= score["option_accuracy"] <= 1 and 0 <= score["exact_match"] <= 1
        assert 0 < score["chance"] < 1 and score["n"] == 4
    assert model.training  # the evaluation restores the mode it found


def batch_of(processor, encoded, device) -> dict:
    batch = processor.pad_left(encoded)
    batch["pixel_values"] = processor.process_images([image for e in encoded for image in e.images])
    return {k: v.to(device) for k, v in batch.items()}


def whole_row_losses(model, batch: dict) -> torch.Tensor:
    """The reference: mean loss over each row's supervised tokens, the whole row (image, prompt,
    answer) run through the model at once. [B]"""
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
    mask = (labels != IGNORE_INDEX).float()
    return (losses * mask).sum(1) / mask.sum(1).clamp(min=1)


@pytest.mark.parametrize("prompt_format", ["plain", "chat"])
def test_one_prompt_pass_equals_scoring_whole_rows(prompt_format):
    """Options scored on a copy of their question's cached prompt give the losses of whole rows
    scored one question at a time; greedy answers from that cache equal ``generate`` on one prompt;
    batching (left padding, several questions, uneven option lengths) changes neither."""
    torch.manual_seed(0)
    model = DSVLModel.from_name("dsvl-micro-hybrid").eval()
    processor = DSVLProcessor.from_config(model.config)
    samples = eval_set("chart", "coarse", 3, 64) + eval_set("ocr", "fine", 3, 64) + eval_set("scene", "coarse", 2, 64)
    with torch.no_grad():
        reference, alone, single = [], [], []
        for sample in samples:
            options = list(sample.qa[0].options)
            rows = [encode_with_answer(processor, sample, option, prompt_format) for option in options]
            losses = whole_row_losses(model, batch_of(processor, rows, "cpu"))
            reference += losses.tolist()
            alone.append(options[int(losses.argmin())])
            prompt = batch_of(processor, [prompt_only(processor, sample, prompt_format)], "cpu")
            del prompt["labels"]
            single.append(processor.decode(model.generate(**prompt, max_new_tokens=4)[0]))
        cache = run_prompts(model, processor, samples, prompt_format, "cpu")
        cached = option_losses(model, processor, samples, cache, prompt_format, rows_per_batch=5)
        assert torch.allclose(torch.tensor(cached), torch.tensor(reference), atol=1e-5)
        chosen, answers = answer_questions(model, processor, samples, prompt_format, "cpu", 4, batch_size=3)
        assert chosen == alone and answers == single
        assert option_choices(model, processor, samples, prompt_format, "cpu") == alone


def test_a_prompt_that_is_not_a_prefix_is_refused():
    model = DSVLModel.from_name("dsvl-micro-siglip")
    processor = DSVLProcessor.from_config(model.config)
    sample = eval_set("screen", "coarse", 1, 64)[0]
    wrong = prompt_only(processor, eval_set("chart", "coarse", 1, 64)[0], "plain")
    with pytest.raises(RuntimeError, match="not a prefix"):
        answer_tails(processor, sample, wrong, sample.qa[0].answer, "plain")


def test_eval_sets_are_kept_in_memory_but_returned_as_fresh_lists():
    first = eval_set("doc", "coarse", 2, 64)
    first.clear()
    again = eval_set("doc", "coarse", 2, 64)
    assert len(again) == 2 and again[0] is eval_set("doc", "coarse", 2, 64)[0]
