"""Step-indexed data for pretraining: batch ``k`` is a pure function of ``k`` and the recipe's seed.

That makes a run resumable by construction, like the stage data: the data module remembers the
next step, Lightning's ``last.ckpt`` holds it, and a resumed run draws the batches it would have drawn.
"""
from __future__ import annotations

import multiprocessing
import os
from dataclasses import asdict
from typing import Any, Callable, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data.datamodule import RemainingSteps
from .recipe import Recipe


class _Batches(Dataset):
    def __init__(self, make: Callable[[int], dict], steps: int) -> None:
        self.make, self.steps = make, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> dict:
        batch = self.make(step)
        batch["step"] = step
        return batch


class StepDataModule(L.LightningDataModule):
    """A data module whose training batch ``k`` is ``self.train_batch(k)``; subclasses define it.

    ``prepare_pool`` (once, in ``setup``) builds whatever fixed pool the batches index into.
    The next step is saved in checkpoints, so a resumed run sees the batches it would have seen.
    """

    def __init__(self, recipe: Recipe) -> None:
        super().__init__()
        self.recipe = recipe
        self.next_step = 0
        self._ready = False

    def prepare_pool(self) -> None:  # pragma: no cover - overridden
        pass

    def train_batch(self, step: int) -> dict:  # pragma: no cover - overridden
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if not self._ready:
            self.prepare_pool()
            self._ready = True

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Batches(self.train_batch, self.recipe.steps), batch_size=None,
                          sampler=RemainingSteps(self, self.recipe.steps))

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer is not None and self.trainer.training and isinstance(batch, dict) and "step" in batch:
            self.next_step = int(batch["step"]) + 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"next_step": self.next_step, "recipe": asdict(self.recipe)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # A checkpoint of another recipe never gets here: harness.resume_point refuses it first
        # (run_folder.check_resume).
        self.next_step = int(state["next_step"])


def step_rng(seed: int, step: int, stream: str = "batch") -> np.random.Generator:
    """The random numbers of one training step: a pure function of (seed, stream, step)."""
    return np.random.default_rng([seed, step, int.from_bytes(stream.encode()[:8].ljust(8, b"\0"), "little")])


def epoch_batch(seed: int, step: int, pool_size: int, batch_size: int) -> torch.Tensor:
    """Indexes into a fixed pool for one step: each epoch walks its own seeded permutation of the pool."""
    per_epoch = max(1, pool_size // batch_size)
    order = step_rng(seed, step // per_epoch, "epoch").permutation(pool_size)
    start = (step % per_epoch) * batch_size
    return torch.from_numpy(order[start:start + batch_size])


def to_pixels(images_uint8: torch.Tensor) -> torch.Tensor:
    """[N, S, S, 3] uint8 pool images -> [N, 3, S, S] float in [0, 1] (what the model's towers take)."""
    return images_uint8.permute(0, 3, 1, 2).float() / 255.0


def parallel_map(function: Callable, items: Sequence, workers: int | None = None, desc: str = "") -> list:
    """``[function(x) for x in items]`` in worker processes (generators are CPU-bound Python), in order.

    Spawned, not forked: a fork of a process that already ran torch threads can hang.
    """
    from tqdm.auto import tqdm

    workers = workers or min(len(os.sched_getaffinity(0)), 8)
    if workers <= 1 or len(items) < 32:
        return [function(x) for x in tqdm(items, desc=desc, leave=False)]
    chunk = max(1, len(items) // (workers * 16))
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return list(tqdm(pool.imap(function, items, chunksize=chunk), total=len(items), desc=desc, leave=False))
