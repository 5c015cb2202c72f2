"""``DSVLLitModule``: one LightningModule that runs any stage of the DeepSeek-VL recipe.

The stage is data (:class:`~dsvl_lab.training.spec.StageSpec`); this module turns it into
behaviour:

- the **freeze policy**: parameters outside the stage's groups get ``requires_grad=False`` and
  their modules stay in eval mode even while the rest trains. No backward runs through a frozen
  prefix: the vision towers' inputs are pixels, which need no gradient, so autograd records
  nothing inside a frozen tower (stage 1 and 2 pay for SAM and SigLIP forward passes only). In
  stage 1 the frozen LLM still carries gradients back to the adaptor: it is a suffix, not a prefix;
- **parameter groups**: one AdamW group per trainable component (its own learning rate), split
  into matrices (weight decay) and vectors (none), so the optimizer never holds a frozen tensor;
- the **schedule**: warm-up, then cosine / step / constant, stepped every optimizer step;
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
from ..model import DSVLModel
from .spec import GROUPS, StageSpec, as_stage_spec

MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values", "labels")


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
    from .handoff import load_stage_output

    if spec.starts_from == "foundation":
        return DSVLModel.from_foundation(preset)
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
            from ..foundation.common import size_of

            size_of(preset)  # presets without shipped foundation parts fail here, saying which have them
        elif self.spec.starts_from != "random":
            from .handoff import check_stage_output

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
        return self.model(**{k: batch[k] for k in MODEL_INPUTS if k in batch}).loss

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
        """One AdamW group per trainable component and kind (matrices decay; vectors do not)."""
        groups = []
        for group in self.trainable_groups():
            params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad and group_of(n) == group]
            for kind, decay in (("matrices", self.spec.weight_decay), ("vectors", 0.0)):
                chosen = [p for _, p in params if (p.ndim >= 2) == (kind == "matrices")]
                if chosen:
                    groups.append({"params": chosen, "lr": self.spec.lr_of(group), "weight_decay": decay,
                                   "name": f"{group}/{kind}"})
        return groups

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameter_groups(), betas=self.spec.betas, eps=self.spec.eps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.spec.lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """The stage owns its clipping (paper: 1.0 in every stage); a Trainer value, if set, wins."""
        value = gradient_clip_val if gradient_clip_val is not None else self.spec.grad_clip
        if value:
            self.clip_gradients(optimizer, gradient_clip_val=value, gradient_clip_algorithm=gradient_clip_algorithm or "norm")
