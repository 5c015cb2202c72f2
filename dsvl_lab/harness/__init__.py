"""The training harness every run of the workbench goes through: foundation pretraining and the stages.

- :mod:`.schedule`: the learning-rate multiplier of an optimizer step (warm-up, then cosine / step /
  constant) and the per-step scheduler built on it;
- :mod:`.optim`: AdamW parameter groups (matrices decay, vectors do not) and the optimizer answer
  ``configure_optimizers`` returns;
- :mod:`.trainer`: the Trainer factory (bf16 autocast, CSV log, ``checkpoints/last.ckpt``) and the
  resumable fit (continue from ``last.ckpt``, after checking it was trained by this very run);
- :mod:`.precision`: the precision of a run, ``auto`` resolved by timing bf16 against fp32 here.

It sits below ``foundation`` and ``training`` (both import it; it imports neither), so a change to
how runs train is made once and holds for both.
"""
from .optim import adamw_with_schedule, decay_groups
from .precision import PRECISIONS, fast_bf16, measure_peak_flops, resolve_precision
from .schedule import lr_factor, lr_scheduler
from .trainer import (DEFAULT_PRECISION, autocast_for, fit_resumable, keep_last, last_checkpoint, make_trainer,
                      resume_point, run_loggers)

__all__ = ["DEFAULT_PRECISION", "PRECISIONS", "adamw_with_schedule", "autocast_for", "decay_groups", "fast_bf16",
           "fit_resumable", "keep_last", "last_checkpoint", "lr_factor", "lr_scheduler", "make_trainer",
           "measure_peak_flops",
           "resolve_precision", "resume_point", "run_loggers"]
