"""Checkpoints written atomically in the run folder itself: a kill or a full disk keeps the last one.

Lightning's ``TorchCheckpointIO`` serialises to memory and then writes through an fsspec
"transaction"; on a local disk that transaction writes a temporary file in the *system* temp folder
and then ``shutil.move``s it over ``last.ckpt``. Across file systems (``/tmp`` is often tmpfs, run
folders are often network disks) that move is a copy onto the target, so a kill or a full disk in
the middle leaves ``last.ckpt`` cut short, and the previous good checkpoint is gone.

:class:`AtomicCheckpointIO` writes the bytes to a temporary file *beside* the target, flushes them to
disk, and renames it over the target (``dsvl_lab.atomic.atomic_write``): a reader, or a resume after
a crash, sees the previous checkpoint or the new one, never half of one.

Every trainer the workbench builds uses it (``plugins=[AtomicCheckpointIO()]``).
"""
from __future__ import annotations

import os
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from .atomic import atomic_write


def save_and_sync(checkpoint: dict[str, Any], tmp: str) -> None:
    with open(tmp, "wb") as handle:
        torch.save(checkpoint, handle)
        handle.flush()
        os.fsync(handle.fileno())  # the bytes are on disk before the rename makes them "the" checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose save is temp-file-beside-the-target + fsync + rename."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        atomic_write(path, lambda tmp: save_and_sync(checkpoint, tmp))
