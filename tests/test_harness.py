"""The one training harness (schedule, parameter groups, trainer, resume) and the artifacts module.

Foundation pretraining and the stages both train through ``dsvl_lab.harness``; these tests pin
what the two share, without training anything.
"""
from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from dsvl_lab.artifacts import read_card, read_metrics, tensor_checksum, write_card
from dsvl_lab.foundation import recipe_for
from dsvl_lab.harness import adamw_with_schedule, decay_groups, lr_factor, make_trainer, resume_point
from dsvl_lab.training.spec import stage_spec


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)  # a matrix and a vector
        self.norm = nn.LayerNorm(3)  # two vectors
        self.frozen = nn.Linear(3, 3)
        self.frozen.requires_grad_(False)


def test_groups_split_matrices_from_vectors_and_leave_frozen_tensors_out():
    model = Tiny()
    groups = decay_groups(model.named_parameters(), weight_decay=0.1, lr=1e-3, name="tiny")
    assert [g["name"] for g in groups] == ["tiny/matrices", "tiny/vectors"]
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert [len(g["params"]) for g in groups] == [1, 3]
    frozen = {id(p) for p in model.frozen.parameters()}
    assert not any(id(p) in frozen for g in groups for p in g["params"])
    assert "name" not in decay_groups(model.named_parameters(), 0.1, 1e-3)[0]  # unnamed without a component
    assert decay_groups(model.norm.named_parameters(), 0.1, 1e-3)[0]["weight_decay"] == 0.0  # no empty group


def test_foundation_recipes_and_cosine_stages_share_one_schedule():
    recipe = recipe_for("lm", "tiny", smoke=True)
    answer = recipe.optimizer(Tiny())
    optimizer, scheduler = answer["optimizer"], answer["lr_scheduler"]["scheduler"]
    seen = []
    for _ in range(recipe.steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # (no gradients: nothing moves) before the scheduler, as in training
        scheduler.step()
    factors = [lr_factor(k, recipe.steps, recipe.warmup_steps, "cosine", 0.1) for k in range(recipe.steps)]
    assert seen == [recipe.lr * f for f in factors]
    # A stage of the same shape gets the same multipliers from the same function.
    spec = stage_spec("stage1_adaptor").replace(steps=recipe.steps, warmup_steps=recipe.warmup_steps, min_lr_ratio=0.1)
    assert [spec.lr_factor(k) for k in range(recipe.steps)] == factors
    assert answer["lr_scheduler"]["interval"] == "step"


def test_schedule_kinds_after_the_warm_up():
    assert lr_factor(0, 100, warmup_steps=4) == 0.25 and lr_factor(3, 100, warmup_steps=4) == 1.0
    assert lr_factor(100, 100, kind="cosine", floor=0.2) == pytest.approx(0.2)
    assert lr_factor(50, 100, kind="cosine", floor=0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert [lr_factor(k, 10, kind="step", milestones=(0.5,), gamma=0.1) for k in (4, 5)] == [1.0, 0.1]
    assert lr_factor(7, 10, kind="constant") == 1.0
    assert all(type(lr_factor(k, 10, kind=kind)) is float for k in range(10) for kind in ("cosine", "step", "constant"))


def test_adamw_takes_each_groups_own_rate():
    groups = decay_groups(Tiny().named_parameters(), 0.05, lr=2e-3)
    optimizer = adamw_with_schedule(groups, steps=10, betas=(0.9, 0.95), warmup_steps=0)["optimizer"]
    assert [g["lr"] for g in optimizer.param_groups] == [2e-3, 2e-3]
    assert all(g["betas"] == (0.9, 0.95) and g["eps"] == 1e-8 for g in optimizer.param_groups)


def test_the_trainer_keeps_last_ckpt_and_takes_overrides(tmp_path):
    trainer = make_trainer(tmp_path, 7, checkpoint_every=3, progress=False, tensorboard=False,
                           precision="32-true", limit_val_batches=0)
    keep = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]
    assert len(keep) == 1 and keep[0].save_last and keep[0]._every_n_train_steps == 3
    assert [type(logger) for logger in trainer.loggers] == [CSVLogger]
    assert trainer.max_steps == 7 and trainer.limit_val_batches == 0
    assert resume_point(tmp_path, {}, fresh_hint="") is None  # nothing to resume yet


def test_cards_and_metrics_read_back_as_written(tmp_path):
    write_card(tmp_path, "lm", {"path": tmp_path, "betas": (0.9, 0.95)}, "# lm\n")
    assert read_card(tmp_path, "lm") == {"path": str(tmp_path), "betas": [0.9, 0.95]}
    assert (tmp_path / "lm.md").read_text() == "# lm\n"
    assert read_card(tmp_path, "stage") is None and read_metrics(tmp_path) == []
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "metrics.csv").write_text("step,train/loss\n0,2.5\n1,\n")
    assert read_metrics(tmp_path) == [{"step": 0.0, "train/loss": 2.5}, {"step": 1.0}]
    same = {"w": torch.ones(2)}
    assert tensor_checksum(same) == tensor_checksum({"w": torch.ones(2)}) != tensor_checksum({"w": torch.zeros(2)})


def test_precision_auto_resolves_to_what_this_machine_runs_fast_and_bad_names_are_refused():
    from dsvl_lab.harness import fast_bf16, resolve_precision

    assert resolve_precision("auto") == ("bf16-mixed" if fast_bf16() else "32-true")
    assert resolve_precision("32-true") == "32-true"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("bf16")


def test_timing_the_precision_leaves_the_global_rng_alone():
    """``resolve_precision("auto")`` and the MFU peak time matmuls between a run's seeding and its
    model's initialisation: drawing their matrices from the global RNG made the first run of a
    process initialise differently from the next one with the same seed."""
    from dsvl_lab.harness import fast_bf16, measure_peak_flops

    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    fast_bf16.cache_clear()
    fast_bf16()
    measure_peak_flops(torch.float32, size=64, repeats=1)
    assert torch.equal(torch.rand(3), expected)
