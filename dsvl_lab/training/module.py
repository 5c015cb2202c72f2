"""``DSVLLitModule``: one LightningModule that runs any stage of the DeepSeek-VL recipe.

The stage is data (:class:`~dsvl_lab.training.spec.StageSpec`); this module turns it into
behaviour:

- the **freeze policy**: parameters outside the stage's groups get ``requires_grad=False`` and
  their modules stay in eval mode even while the rest trains. No backward runs through a frozen
  prefix: the vision towers' inputs are pixels, which need no gradient, so autograd records
  nothing inside a frozen tower (stage 1 and 2 pay for SAM and SigLIP forward passes only). In
  stage 1 the frozen LLM still carries gradients back to the adaptor: it is a suffix, not a prefix;
- **parameter groups**: one AdamW group per trainable component (its own learning rate), split
  into matrices (weight decay) and vectors (none), so the optimizer never holds a frozen tensor
  (``dsvl_lab.harness.decay_groups``, as foundation pretraining splits them);
- the **schedule**: warm-up, then cosine / step / constant, stepped every optimizer step
  (``dsvl_lab.harness.lr_factor``, the one schedule of every run);
- **losses**: ``train/loss`` (and ``train/loss_text`` / ``train/loss_vl`` by the batch's modality;
  batches are modality-grouped), ``val/loss_text`` and ``val/loss_vl`` on fixed held-out batches.

Where the weights come from is the stage's ``starts_from``: the shipped foundation parts, a random
initialisation, or the output folder of the previous stage, which :mod:`.handoff` checks first.
The original authors never released training code; this is our reading of the paper.
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch import nn

from ..config import DSVLConfig
from ..foundation import from_foundation
from ..foundation.recipe import size_of
from ..harness import adamw_with_schedule, decay_groups
from ..model import DSVLModel
from .handoff import check_stage_output, load_stage_output
from .spec import GROUPS, StageSpec, as_stage_spec

MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values", "labels")


def batch_loss(model: DSVLModel, batch: dict) -> torch.Tensor:
    """Forward and loss of one batch: the model's next-token loss (labels -100 on prompts and image
    tokens are skipped, and the output head runs only where a label supervises: ``loss_only``).
    ``training_step`` and the step written out in :mod:`.step` both use it."""
    return model(**{key: batch[key] for key in MODEL_INPUTS if key in batch}, loss_only=True).loss


def group_of(parameter_name: str) -> str:
    """The component group a parameter belongs to (every parameter of DSVLModel has exactly one)."""
    for group, prefixes in GROUPS.items():
        if any(parameter_name.startswith(prefix) for prefix in prefixes):
            return group
    raise KeyError(f"parameter {parameter_name!r} belongs to no group in GROUPS")


def group_sizes(model: nn.Module) -> dict[str, dict[str, int]]:
    """Trainable and frozen parameter counts per group present in the model."""
    sizes: dict[str, dict[str, int]] = {}
    for name, param in model.named_parameters():
        counts = sizes.setdefault(group_of(name), {"trainable": 0, "frozen": 0})
        counts["trainable" if param.requires_grad else "frozen"] += param.numel()
    return sizes


def apply_freeze(model: nn.Module, trainable: tuple[str, ...]) -> None:
    """``requires_grad`` on exactly the parameters of the trainable groups."""
    for name, param in model.named_parameters():
        param.requires_grad_(group_of(name) in trainable)


def frozen_modules(model: nn.Module) -> list[nn.Module]:
    """The outermost submodules whose parameters are all frozen (they stay in eval mode)."""
    found: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            found.append(module)
            return
        for child in module.children():
            visit(child)

    visit(model)
    return found


def build_model(preset: str, spec: StageSpec, start: str | Path | None) -> DSVLModel:
    """The stage's starting weights: foundation, random, or the previous stage's checked output."""
    if spec.starts_from == "foundation":
        return from_foundation(preset)
    if spec.starts_from == "random":
        return DSVLModel.from_name(preset)
    return load_stage_output(start, expected_stage=spec.starts_from, preset=preset, receiving=spec.name)


class DSVLLitModule(L.LightningModule):
    """Runs one stage of DeepSeek-VL training on one model preset.

    Args:
        preset: the model preset (``dsvl-tiny-hybrid``, ``dsvl-7b``, ...); see ``dsvl-lab presets``.
        stage: a StageSpec, or the name of a stage preset (``stage1_adaptor``, ``stage2_joint``,
            ``stage3_sft``) at ``scale``.
        scale: for a stage given by name: ``mini`` (CPU minutes), ``paper-7b`` or ``paper-1.3b``.
        start: the previous stage's output folder, when the stage continues one (``starts_from``).
    """

    def __init__(self, preset: str = "dsvl-tiny-hybrid", stage: StageSpec | str = "stage1_adaptor",
                 scale: str = "mini", start: str | None = None) -> None:
        super().__init__()
        self.spec = as_stage_spec(stage, scale)
        self.preset = preset
        self.config = DSVLConfig.from_name(preset)  # an unknown preset fails here, before anything trains
        self.start = start
        if self.spec.starts_from == "foundation":
            size_of(preset)  # presets without shipped foundation parts fail here, saying which have them
        elif self.spec.starts_from != "random":
            check_stage_output(start, self.spec.starts_from, preset, self.spec.name)  # fail early, not after set-up
        self.save_hyperparameters({"preset": preset, "stage": self.spec.to_dict(), "start": start})
        self.model: DSVLModel | None = None
        self._frozen: list[nn.Module] = []

    # ------------------------------------------------------------------ the model and its freeze policy
    def configure_model(self) -> None:
        """Build the model once (Lightning calls this inside the strategy's context, e.g. FSDP)."""
        if self.model is not None:
            return
        self.model = build_model(self.preset, self.spec, self.start)
        apply_freeze(self.model, self.spec.trainable)
        self._frozen = frozen_modules(self.model)
        self.train(self.training)

    def train(self, mode: bool = True):
        """Lightning switches everything to train mode after each validation; frozen parts stay in eval."""
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def trainable_groups(self) -> list[str]:
        present = {group_of(name) for name, _ in self.model.named_parameters()}
        return [group for group in self.spec.trainable if group in present]

    # ------------------------------------------------------------------ steps
    def forward(self, batch: dict) -> torch.Tensor:
        """The batch's loss (:func:`batch_loss`; the whole step written out is in :mod:`.step`)."""
        return batch_loss(self.model, batch)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self(batch)
        modality = "vl" if int(batch.get("n_image", 1)) > 0 else "text"
        self.log("train/loss", loss, prog_bar=True)
        self.log(f"train/loss_{modality}", loss)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        modality = "vl" if int(batch.get("n_image", 1)) > 0 else "text"
        self.log(f"val/loss_{modality}", self(batch), on_epoch=True, batch_size=int(batch["input_ids"].shape[0]))

    # ------------------------------------------------------------------ optimizer
    def parameter_groups(self) -> list[dict]:
        """One AdamW group per trainable component and kind (``<component>/matrices`` decay; vectors do not)."""
        groups = []
        for group in self.trainable_groups():
            members = [(n, p) for n, p in self.model.named_parameters() if group_of(n) == group]
            groups += decay_groups(members, self.spec.weight_decay, self.spec.lr_of(group), name=group)
        return groups

    def configure_optimizers(self):
        spec = self.spec
        return adamw_with_schedule(self.parameter_groups(), spec.steps, spec.betas, spec.eps, **spec.schedule_shape())

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """The stage owns its clipping (paper: 1.0 in every stage); a Trainer value, if set, wins."""
        value = gradient_clip_val if gradient_clip_val is not None else self.spec.grad_clip
        if value:
            self.clip_gradients(optimizer, gradient_clip_val=value,
                                gradient_clip_algorithm=gradient_clip_algorithm or "norm")
