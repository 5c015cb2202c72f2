"""Multimodal evaluation: fixed held-out sets, option perplexity, exact match."""
from __future__ import annotations

import torch

from dsvl_lab.data.stage_data import EVAL_SEED_BASE
from dsvl_lab.metrics.vl_eval import encode_with_answer, eval_set, evaluate_vl, normalize
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


def test_batched_scoring_equals_one_question_at_a_time():
    """Options of all samples scored in shared batches (image encoded once) give the same losses and
    answers as each sample alone, and batched greedy answers equal single-prompt ones."""
    from dsvl_lab.metrics.vl_eval import batch_of, greedy_answers, mean_answer_loss, option_choices

    torch.manual_seed(0)
    model = DSVLModel.from_name("dsvl-micro-hybrid").eval()
    processor = DSVLProcessor.from_config(model.config)
    samples = eval_set("chart", "coarse", 3, 64) + eval_set("ocr", "coarse", 3, 64)
    alone = []
    with torch.no_grad():
        for sample in samples:
            options = list(sample.qa[0].options)
            batch = batch_of(processor, [encode_with_answer(processor, sample, o, "chat") for o in options], "cpu")
            alone.append(options[int(mean_answer_loss(model, batch).argmin())])
        assert option_choices(model, processor, samples, "chat", "cpu", rows_per_batch=5) == alone
        single = [greedy_answers(model, processor, [s], "chat", "cpu", 4)[0] for s in samples]
        assert greedy_answers(model, processor, samples, "chat", "cpu", 4) == single
