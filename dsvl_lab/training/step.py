"""One training step, in the order it happens: what Lightning does for every stage, written out.

``DSVLLitModule`` hands most of a step to Lightning (the closure, backward, clipping, the optimizer and
the scheduler are the Trainer's), and the freeze and the parameter groups happen before the first
step, in ``configure_model`` and ``configure_optimizers``. Read together, a stage's training is:

1. **freeze**: ``requires_grad`` only on the stage's trainable groups; frozen modules in eval mode;
2. **parameter groups**: one AdamW group per trainable component, matrices with weight decay and
   vectors without (``dsvl_lab.harness.decay_groups``), each with the component's learning rate;
3. **forward** and **loss**: ``module.batch_loss``, the one forward ``DSVLLitModule.training_step`` uses;
4. **backward**; 5. **clip** the gradient norm (1.0 in every stage of the paper);
6. **optimizer step**; 7. **learning rate** for the next step (warm-up, then cosine / step / constant);
8. **zero** the gradients.

:func:`train_stage_by_hand` runs exactly this with no Trainer; a test checks on the micro preset that
it ends with the same weights as ``run_stage``, bit for bit in fp32 (under bf16 autocast the two
differ by rounding, about 1e-4 after four steps). Notebook 05 shows it.
"""
from __future__ import annotations

import lightning as L
import torch
from torch import nn

from ..data.datamodule import DSVLDataModule
from ..harness import DEFAULT_PRECISION, autocast_for
from ..model import DSVLModel
from .module import DSVLLitModule, batch_loss
from .spec import StageSpec, as_stage_spec


def training_step_by_hand(model: nn.Module, batch: dict, optimizer: torch.optim.Optimizer,
                          scheduler: torch.optim.lr_scheduler.LRScheduler, grad_clip: float,
                          precision: str = DEFAULT_PRECISION) -> float:
    """Steps 3-8 for one batch; returns the loss. ``precision``: the Trainer's (bf16 autocast by default)."""
    with autocast_for(precision):                                    # as Lightning wraps the forward
        loss = batch_loss(model, batch)                              # 3. forward and loss
    loss.backward()                                                  # 4. backward
    if grad_clip:                                                    # 5. clip the total gradient norm
        trainable = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(trainable, grad_clip)
    optimizer.step()                                                 # 6. AdamW update
    scheduler.step()                                                 # 7. the next step's learning rate
    optimizer.zero_grad(set_to_none=True)                            # 8. ready for the next batch
    return float(loss.detach())


def prepared_stage(preset: str, spec: StageSpec | str):
    """What a stage trains with, built in the order ``run_stage`` builds it, from random weights:
    (model, the stage's batches by step, AdamW, the learning-rate scheduler)."""
    spec = as_stage_spec(spec)
    L.seed_everything(spec.data.seed, workers=True, verbose=False)   # as run_stage seeds
    module = DSVLLitModule(preset, spec)  # builds the model, freeze and groups as a real run does
    data = DSVLDataModule(module.config, spec.data, total_steps=spec.steps, num_workers=0)
    batches = data.train_batches
    module.configure_model()                                         # 1. build, freeze
    module.train()                                                   # frozen parts stay in eval
    setup = module.configure_optimizers()                            # 2. parameter groups and schedule
    return module.model, batches, setup["optimizer"], setup["lr_scheduler"]["scheduler"]


def train_stage_by_hand(preset: str, spec: StageSpec | str, steps: int | None = None,
                        precision: str = DEFAULT_PRECISION) -> DSVLModel:
    """A stage that starts from random weights, trained with a plain loop: the same batches, freeze,
    groups, schedule and clipping as ``run_stage`` (no checkpoints, evaluation or logging)."""
    spec = as_stage_spec(spec)
    model, batches, optimizer, scheduler = prepared_stage(preset, spec)
    for step in range(spec.steps if steps is None else steps):
        training_step_by_hand(model, batches[step], optimizer, scheduler, spec.grad_clip, precision)
    return model
