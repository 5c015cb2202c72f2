"""The Trainer of every run, and fitting that resumes from ``out/checkpoints/last.ckpt``.

A run writes into one folder ``out``: ``logs/metrics.csv`` (and ``logs/tensorboard`` when asked and
installed) and ``checkpoints/last.ckpt``, replaced by rename every few steps so a kill keeps the
previous one. Running the same command again continues from it, after ``run_folder.check_resume``
has made sure the checkpoint is intact and was trained with the same hyper-parameters.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import torch

from ..checkpoint_io import AtomicCheckpointIO
from ..run_folder import check_resume


def autocast_for(precision: str, device: str = "cpu"):
    """The autocast Lightning's ``precision`` puts around each forward (``bf16-mixed`` / ``16-mixed``);
    none for ``32-true``. Code that reruns a forward outside the Trainer uses it to match training."""
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    return torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None)


# The foundation recipes' precision (their shipped cards): bf16 autocast, several times faster than fp32 on
# CPUs with AMX / AVX-512 BF16 (docs/miniature_sizing.md). Stages default to "auto" (precision.py) instead.
DEFAULT_PRECISION = "bf16-mixed"


def last_checkpoint(out: Path) -> Path:
    """Where a run in ``out`` keeps the checkpoint it resumes from."""
    return Path(out) / "checkpoints" / "last.ckpt"


def keep_last(out: Path, every: int, steps: int) -> L.Callback:
    """Lightning's ModelCheckpoint writing only ``last.ckpt``, every ``every`` steps (at most the run's length)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    return ModelCheckpoint(dirpath=Path(out) / "checkpoints", save_last=True, save_top_k=0,
                           every_n_train_steps=max(1, min(every, steps)))


def run_loggers(out: Path, tensorboard: bool = True) -> list:
    """CSV always (``out/logs/metrics.csv``); TensorBoard as well when asked and installed."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers = [CSVLogger(out, name="logs", version="")]
    if tensorboard and (importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX")):
        loggers.append(TensorBoardLogger(out, name="logs", version="tensorboard"))
    return loggers


def make_trainer(out: Path, steps: int, callbacks: Sequence[L.Callback] = (), checkpoint_every: int = 50,
                 progress: bool = True, tensorboard: bool = True, **options: Any) -> L.Trainer:
    """A one-epoch trainer of ``steps`` steps on one device: bf16 autocast, logs and ``last.ckpt`` in ``out``.

    ``options`` are Trainer arguments that override these (``precision``, ``gradient_clip_val``,
    validation settings, ...).
    """
    settings = dict(max_steps=steps, max_epochs=1, accelerator="auto", devices=1, precision=DEFAULT_PRECISION,
                    logger=run_loggers(out, tensorboard),
                    callbacks=[keep_last(out, checkpoint_every, steps), *callbacks],
                    plugins=[AtomicCheckpointIO()],  # last.ckpt replaced by rename: a kill keeps the previous one
                    enable_progress_bar=progress, enable_model_summary=False, log_every_n_steps=10,
                    num_sanity_val_steps=0)
    settings.update(options)
    return L.Trainer(**settings)


def resume_point(out: Path, asked: dict[str, Any], fresh_hint: str,
                 normalise: dict[str, Callable[[Any], Any]] | None = None) -> Path | None:
    """``out``'s ``last.ckpt`` if there is one to resume, else None.

    A checkpoint that is damaged, or was trained with other hyper-parameters than ``asked`` (what
    the module saves with ``save_hyperparameters``), is refused with the differing keys and
    ``fresh_hint`` (how to start afresh). Call it before building anything costly: a refusal is then free.
    """
    last = last_checkpoint(out)
    if not last.is_file():
        return None
    check_resume(last, asked, fresh_hint=fresh_hint, normalise=normalise)
    return last


def fit_resumable(trainer: L.Trainer, module: L.LightningModule, data: L.LightningDataModule,
                  resume: Path | None) -> bool:
    """Fit, continuing from ``resume`` (a checked ``resume_point``) when there is one. Returns True if it resumed.

    The data modules of both kinds of run save the next step in the checkpoint, so a resumed run
    sees the batches it would have seen and ends with the weights of an uninterrupted one.
    """
    trainer.fit(module, datamodule=data, ckpt_path=str(resume) if resume is not None else None)
    return resume is not None
