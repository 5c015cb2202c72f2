"""``DSVLDataModule``: the LightningDataModule that owns the data mixture of a stage.

It serves, step by step, batches that are all-text or all-image (modality grouping) or mixed,
with a language share that follows the modality warm-up schedule. Its state (the next step and
the counts of text and image samples consumed) is saved in Lightning checkpoints, and a resumed
run continues with exactly the batches an uninterrupted run would have seen.

    >>> dm = DSVLDataModule("dsvl-micro-hybrid", "stage2_joint", total_steps=100)   # doctest: +SKIP
    >>> dm.setup("fit"); batch = next(iter(dm.train_dataloader()))                  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from ..config import DSVLConfig
from ..processor import DSVLProcessor
from .corpus import evaluation_texts
from .sample_cache import SampleKey
from .sources import SourceMixture
from .stage_data import (EVAL_SEED_BASE, STAGE_DATA_PRESETS, StageBatches, StageData, TextStream, image_draw_keys,
                         world_image_size)

BOOKKEEPING_KEYS = ("n_text", "n_image", "step", "source_counts", "bad_samples")
PROBLEMS_KEPT = 20  # messages of skipped rows kept in the state (every skip is counted by reason)
AUTO_WORKERS = "auto"  # num_workers chosen by the machine: see loader_workers


class RemainingSteps(torch.utils.data.Sampler):
    """Yields the step indexes still to run, from the data module's ``next_step`` to ``total - 1``.

    The start is read when iteration begins (after Lightning restored a checkpoint), and the length
    is the whole run, so Lightning's own count of batches done in the epoch stays consistent.
    """

    def __init__(self, owner, total: int) -> None:  # owner: anything with a ``next_step``
        self.owner, self.total = owner, total

    def __iter__(self):
        return iter(range(self.owner.next_step, self.total))

    def __len__(self) -> int:
        return self.total


def resolve_stage_data(stage_data: StageData | str, **overrides: Any) -> StageData:
    if isinstance(stage_data, str):
        if stage_data not in STAGE_DATA_PRESETS:
            raise ValueError(f"unknown stage data {stage_data!r}; presets: {sorted(STAGE_DATA_PRESETS)}")
        stage_data = STAGE_DATA_PRESETS[stage_data]
    return dataclasses.replace(stage_data, **overrides) if overrides else stage_data


def validation_data(data: StageData) -> tuple[StageData, StageData]:
    """The stage data of the fixed validation batches: all-text and all-image, from evaluation seeds."""
    text_data = dataclasses.replace(data, language_ratio=1.0, warmup_steps=0, group_by_modality=True,
                                    seed=EVAL_SEED_BASE)
    return text_data, dataclasses.replace(text_data, language_ratio=0.0)


def stage_sample_keys(config: DSVLConfig, data: StageData, total_steps: int, val_batches: int = 2,
                      world_size: int = 1) -> set[SampleKey]:
    """Every task sample a ``DSVLDataModule`` with these arguments draws, training and validation
    batches: what to pre-render into the sample cache (``sample_cache.build``) for one stage."""
    size = data.task_image_size or world_image_size(config)
    return (image_draw_keys(data, total_steps, size, world_size)
            | image_draw_keys(validation_data(data)[1], val_batches, size))


def loader_workers(num_workers: int | str) -> int:
    """``num_workers`` itself, or for ``"auto"``: 1 on a machine with a GPU, 0 on a CPU-only one.

    On a GPU the worker builds the next batch while the device computes. On a CPU the model's threads
    already use every core, so a worker only takes turns with them (OpenMP's threads then wait for
    the one it displaced) and adds the batch's trip between processes. Measured on the 2-core CPU in
    one sitting: stage 3 of the demo reached 0.87 of its model step alone with no worker, 0.84 with a
    low-priority worker and 0.78 with a plain one (``benchmarks/stage_throughput.py``).
    """
    if num_workers == AUTO_WORKERS:
        return 1 if torch.cuda.is_available() else 0
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be a whole number >= 0 or {AUTO_WORKERS!r}, got {num_workers!r}")
    return num_workers


class DSVLDataModule(L.LightningDataModule):
    """Batches for one stage of one model preset.

    Args:
        config: a DSVLConfig or preset name (image size, tokens per image, special tokens).
        stage_data: a StageData or the name of a stage preset (``stage1_adaptor``, ``stage2_joint``,
            ``stage3_sft``); keyword ``overrides`` replace its fields (``language_ratio=0.3``,
            ``warmup_steps=50``, ``group_by_modality=False``, ``batch_size=8``, ...).
        total_steps: how many training batches the run takes.
        num_workers: DataLoader workers, or ``"auto"`` (:func:`loader_workers`: 0 on a CPU, 1 with a GPU);
            batches do not depend on the worker count.
        val_batches: fixed held-out batches per modality for validation losses.
    """

    def __init__(self, config: DSVLConfig | str, stage_data: StageData | str = "stage2_joint", total_steps: int = 1000,
                 num_workers: int | str = 0, val_batches: int = 2, processor: DSVLProcessor | None = None,
                 **overrides: Any) -> None:
        super().__init__()
        self.config = DSVLConfig.from_name(config) if isinstance(config, str) else config
        self.data = resolve_stage_data(stage_data, **overrides)
        self.total_steps = total_steps
        self.num_workers = loader_workers(num_workers)  # resolved once: a bad value fails before anything is built
        self.val_batches = val_batches
        self.processor = processor
        self.next_step = 0
        self.seen = {"text": 0, "image": 0}
        self.source_seen: dict[str, int] = {}  # samples drawn from each source (stage.data.sources)
        self.bad_samples: dict[str, int] = {}  # skipped rows by reason (on_bad_sample="skip")
        self.bad_examples: list[str] = []      # the first PROBLEMS_KEPT messages, each naming file:line
        self._train: StageBatches | None = None
        self._validation: list[dict] | None = None  # built once: the loader and the FLOP counter both read it

    # ------------------------------------------------------------------ set-up
    def setup(self, stage: str | None = None) -> None:
        if self._train is not None:
            return
        if self.processor is None:
            self.processor = DSVLProcessor.from_config(self.config)
        text = None
        if (self.data.language_ratio > 0 or self.data.warmup_steps > 0) and self.data.uses_built_in_text:
            text = TextStream(self.processor, self.data.training_texts())  # stage.data.text_source's train split
        rank, world_size = self.distributed_place()
        self._train = StageBatches(self.data, self.processor, text, self.total_steps, world_image_size(self.config),
                                   rank, world_size)

    def distributed_place(self) -> tuple[int, int]:
        """(rank, world size) of this process; (0, 1) outside a distributed trainer."""
        trainer = self.trainer
        if trainer is None or trainer.world_size == 1:
            return 0, 1
        if trainer._accelerator_connector.use_distributed_sampler:
            raise ValueError("DSVLDataModule splits each step across ranks itself: create the Trainer with "
                             "use_distributed_sampler=False (configs/trainer/*.yaml and dsvl-lab pipeline do)")
        return trainer.global_rank, trainer.world_size

    @property
    def train_batches(self) -> StageBatches:
        if self._train is None:
            self.setup("fit")
        return self._train

    # ------------------------------------------------------------------ loaders
    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_batches, batch_size=None, sampler=RemainingSteps(self, self.total_steps),
                          num_workers=self.num_workers, persistent_workers=False)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.validation_batches(), batch_size=None)  # a list of ready batches

    def validation_batches(self) -> list[dict]:
        """Fixed held-out batches: text from the held-out split, images from evaluation seeds."""
        if self._validation is not None:
            return self._validation
        train = self.train_batches  # also makes sure set-up ran (processor, task image size)
        text_data, image_data = validation_data(self.data)
        if not self.data.sources:
            sources = [StageBatches(text_data, train.processor, TextStream(train.processor, evaluation_texts()),
                                    self.val_batches, train.task_image_size),
                       StageBatches(image_data, train.processor, None, self.val_batches, train.task_image_size)]
            self._validation = [source[i] for source in sources for i in range(self.val_batches)]
            return self._validation
        # User sources: validation reads only their held-out rows (the "eval" split), indexed once.
        opened = {source.label: source for source in train.mixture.sources}
        mixture = SourceMixture(self.data.sources, EVAL_SEED_BASE, "eval", opened)
        held_out_text = TextStream(train.processor, evaluation_texts()) if self.data.uses_built_in_text else None
        self._validation = []
        for modality, data, text in (("text", text_data, held_out_text), ("image", image_data, None)):
            if mixture.has(modality):
                source = StageBatches(data, train.processor, text, self.val_batches, train.task_image_size,
                                      split="eval", mixture=mixture)
                self._validation += [source[i] for i in range(self.val_batches)]
        return self._validation

    # ------------------------------------------------------------------ bookkeeping and resume
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Count what the trainer actually consumes (not what workers prefetched)."""
        if self.trainer is not None and self.trainer.training and isinstance(batch, dict) and "step" in batch:
            self.next_step = int(batch["step"]) + 1
            self.seen["text"] += int(batch["n_text"])
            self.seen["image"] += int(batch["n_image"])
            self.count_sources(batch)
        return batch

    def count_sources(self, batch: dict) -> None:
        """Add a batch's per-source counts and skipped rows (user sources only) to the run's totals."""
        for label, count in batch.get("source_counts", {}).items():
            self.source_seen[label] = self.source_seen.get(label, 0) + int(count)
        for bad in batch.get("bad_samples", []):
            self.bad_samples[bad["reason"]] = self.bad_samples.get(bad["reason"], 0) + 1
            if len(self.bad_examples) < PROBLEMS_KEPT:
                self.bad_examples.append(bad["message"])

    def language_share_seen(self) -> float:
        total = self.seen["text"] + self.seen["image"]
        return self.seen["text"] / total if total else float("nan")

    def state_dict(self) -> dict[str, Any]:
        return {"next_step": self.next_step, "seen": dict(self.seen), "data": self.data.to_dict(),
                "source_seen": dict(self.source_seen), "bad_samples": dict(self.bad_samples),
                "bad_examples": list(self.bad_examples)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("data", {})
        changed = sorted(k for k, v in saved.items() if k in ("seed", "language_ratio", "warmup_steps", "warmup_kind",
                                                             "group_by_modality", "batch_size", "text_source",
                                                             "sources")
                         and _comparable(getattr(self.data, k) if k != "sources" else self.data.to_dict()[k])
                         != _comparable(v))
        if changed:
            raise ValueError(f"cannot resume: the checkpoint's data mixture differs in {changed}; "
                             f"resume with the same stage data, or start a new run")
        self.next_step = int(state["next_step"])
        self.seen = dict(state["seen"])
        self.source_seen = dict(state.get("source_seen", {}))
        self.bad_samples = dict(state.get("bad_samples", {}))
        self.bad_examples = list(state.get("bad_examples", []))


def _comparable(value: Any) -> Any:
    """Lists and tuples alike (a checkpoint's YAML / pickle may hold either)."""
    if isinstance(value, (list, tuple)):
        return tuple(_comparable(item) for item in value)
    if isinstance(value, dict):
        return {key: _comparable(item) for key, item in value.items()}
    return value


class MixtureLogger(L.Callback):
    """Logs the language / multimodal samples consumed so far, so a run can prove its mixture.

    Logged every training step: ``data/text_seen``, ``data/image_seen``, ``data/language_share_seen``
    and the share the schedule asked for at that step, ``data/language_share_target``.
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        dm = trainer.datamodule
        if not isinstance(dm, DSVLDataModule):
            return
        step = dm.next_step - 1
        pl_module.log_dict({
            "data/text_seen": float(dm.seen["text"]),
            "data/image_seen": float(dm.seen["image"]),
            "data/language_share_seen": dm.language_share_seen(),
            "data/language_share_target": dm.data.schedule(step),
            **{f"data/source/{label}": float(count) for label, count in dm.source_seen.items()},
            **({"data/bad_samples": float(sum(dm.bad_samples.values()))} if dm.data.sources else {}),
        }, on_step=True, on_epoch=False)
