"""Miniature language-model pretraining: the stand-in for DeepSeek-LLM.

Paper: DeepSeek-VL initialises its language model from DeepSeek-LLM (docs/deepseek_vl_facts.md
section 2.1), a LLaMA-style decoder pretrained on 2T tokens of text. Ours is next-token prediction
on the training split of the workbench's text corpus (Python's own documentation,
:mod:`dsvl_lab.data.corpus`) plus the task texts (captions, questions and answers of train-seed
samples), so the later stages meet words they know. The held-out split is never trained on; it is
what the quality figures read.

    dsvl-lab pretrain lm --preset dsvl-tiny-hybrid --out runs/lm-tiny
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import lightning as L
import numpy as np
import torch

from ..config import LLMConfig
from ..data.corpus import evaluation_texts, train_texts
from ..data.lm_eval import evaluate_language, perplexity
from ..data.tokenizer import task_texts
from ..model.dsvl import causal_lm_loss
from ..model.llm import LanguageModel
from .curves import log_curve
from .recipe import Recipe
from .step_data import StepDataModule, step_rng

RECIPES = {
    # tiny: about 14 passes over the 0.42M-token stream; the held-out curve in the model card shows the
    # over-fitting (docs/lab_log.md, "Step times").
    "tiny": Recipe(steps=1500, batch_size=16, lr=2e-3, warmup_steps=100, val_every=150, weight_decay=0.1,
                   extra={"seq_len": 256, "task_samples": 200}),
    # small: sized by its step time (docs/lab_log.md, "Step times").
    "small": Recipe(steps=700, batch_size=16, lr=1e-3, warmup_steps=50, val_every=100, weight_decay=0.1,
                    extra={"seq_len": 256, "task_samples": 200}),
}


def token_stream(processor, task_samples: int) -> np.ndarray:
    """The corpus train split, then the task texts, as one stream of token ids (EOS between documents)."""
    texts = train_texts() + (task_texts(task_samples) if task_samples else [])
    ids: list[int] = []
    for text in texts:
        ids += processor.encode_text(text, add_bos=False, add_eos=True)
    return np.asarray(ids, dtype=np.int64)


class TextWindows(StepDataModule):
    """Batch k: ``batch_size`` windows of the stream at random places (a function of k), BOS first."""

    def __init__(self, recipe: Recipe, processor) -> None:
        super().__init__(recipe)
        self.processor = processor
        self.tokens: np.ndarray | None = None

    def prepare_pool(self) -> None:
        self.tokens = token_stream(self.processor, self.recipe.extra.get("task_samples", 0))

    def train_batch(self, step: int) -> dict[str, Any]:
        length = self.recipe.extra["seq_len"] - 1
        starts = step_rng(self.recipe.seed, step).integers(0, len(self.tokens) - length, self.recipe.batch_size)
        windows = np.stack([self.tokens[s:s + length] for s in starts])  # [B, T-1]
        bos = np.full((len(starts), 1), self.processor.bos_token_id)
        return {"input_ids": torch.from_numpy(np.concatenate([bos, windows], axis=1))}  # [B, T]


class LMPretraining(L.LightningModule):
    """Next-token prediction with the workbench's own ``LanguageModel`` (the part that ships)."""

    def __init__(self, llm: dict[str, Any], recipe: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.recipe = Recipe(**recipe)
        self.language_model = LanguageModel(LLMConfig(**llm))

    def loss(self, input_ids: torch.Tensor) -> torch.Tensor:
        logits, _ = self.language_model(self.language_model.embed(input_ids))  # [B, T, vocab]
        return causal_lm_loss(logits, input_ids)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch["input_ids"])
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return self.recipe.optimizer(self.language_model)


class HeldOutPerplexity(L.Callback):
    """A learning-curve point every ``every`` steps: perplexity on a fixed slice of held-out text."""

    def __init__(self, processor, every: int, max_documents: int = 30) -> None:
        self.processor, self.every = processor, every
        self.texts = evaluation_texts()[:max_documents]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every and step != trainer.max_steps:
            return
        value = perplexity(TextOnly(pl_module.language_model), self.processor, self.texts)
        log_curve(trainer, "curve/heldout_perplexity", value)


def evaluate(language_model: LanguageModel, processor, n_cloze: int = 200) -> dict[str, float]:
    """The model card's figures: held-out perplexity vs unigram, word cloze and ending cloze vs chance."""
    figures = evaluate_language(TextOnly(language_model), processor, n_cloze=n_cloze)
    figures["unigram_ratio"] = figures["unigram_perplexity"] / figures["perplexity"]
    figures["cloze_points_above_chance"] = 100 * (figures["cloze_accuracy"] - figures["cloze_chance"])
    return figures


class TextOnly(torch.nn.Module):
    """The ``model(input_ids=..., attention_mask=...).logits`` interface lm_eval expects, around a bare LM."""

    def __init__(self, language_model: LanguageModel) -> None:
        super().__init__()
        self.language_model = language_model
        self.config = SimpleNamespace(llm=language_model.config)  # lm_eval reads config.llm.max_position_embeddings

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: Any):
        logits, _ = self.language_model(self.language_model.embed(input_ids), attention_mask)
        return _Logits(logits)


@dataclass
class _Logits:
    logits: torch.Tensor

