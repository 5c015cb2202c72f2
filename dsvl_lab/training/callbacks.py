"""Callbacks of a stage run: freeze audit, evaluations, NaN guard, throughput / MFU, hand-off export.

- ``FreezeAudit``: prints trainable vs frozen parameters per component at the start, and at the end
  proves that no frozen weight changed (tensor checksums before and after), or fails the run.
- ``StageEvaluation``: every N steps and at the end, the language-retention evaluation (held-out
  perplexity, cloze accuracy) and the multimodal one (per-family option accuracy, exact match).
- ``NonFiniteGuard``: stops at the first NaN / inf loss or gradient, before the optimizer step, with
  a message naming the step; the last checkpoint on disk is the last good one.
- ``FlopsThroughput``: Lightning's ThroughputMonitor, with the FLOPs of a batch measured once with
  torch's FLOP counter and, on a CPU (where Lightning knows no peak), a peak measured by a matmul.
- ``StageExport``: writes the stage's hand-off folder (weights, config, ``stage.json``).
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ThroughputMonitor
from torch.nn.utils import get_total_norm

from ..artifacts import tensor_checksum
from ..config import DSVLConfig
from ..data.lm_eval import heldout_perplexity, language_retention
from ..harness import measure_peak_flops
from ..metrics.flops import step_flops
from ..metrics.vl_eval import evaluate_vl
from ..processor import DSVLProcessor
from .handoff import write_stage_output
from .module import DSVLLitModule, group_of, group_sizes
from .spec import StageSpec


# ============================================================================ freeze audit
def group_checksums(model: torch.nn.Module, frozen_only: bool = True) -> dict[str, str]:
    states: dict[str, dict[str, torch.Tensor]] = {}
    for name, param in model.named_parameters():
        if not (frozen_only and param.requires_grad):
            states.setdefault(group_of(name), {})[name] = param.detach()
    return {group: tensor_checksum(state) for group, state in states.items()}


def freeze_table(model: torch.nn.Module) -> str:
    rows = [("component", "trainable", "frozen", "mode")]
    for group, counts in group_sizes(model).items():
        state = "train" if counts["trainable"] else "frozen (eval)"
        rows.append((group, f"{counts['trainable']:,}", f"{counts['frozen']:,}", state))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) if i in (0, 3) else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(row, widths))) for row in rows)


class FrozenWeightsChanged(RuntimeError):
    pass


class FreezeAudit(L.Callback):
    """Table of trainable vs frozen parameters per component at the start; proof at the end."""

    def __init__(self, verbose: bool = True) -> None:
        self.verbose = verbose
        self.before: dict[str, str] = {}
        self.report: dict = {}

    def on_fit_start(self, trainer, pl_module: DSVLLitModule) -> None:
        self.before = group_checksums(pl_module.model)
        self.report = {"groups": group_sizes(pl_module.model)}
        if self.verbose and trainer.is_global_zero:
            print(f"\n[{pl_module.spec.name}] trainable vs frozen parameters\n{freeze_table(pl_module.model)}")

    def on_fit_end(self, trainer, pl_module: DSVLLitModule) -> None:
        after = group_checksums(pl_module.model)
        changed = sorted(g for g in self.before if after.get(g) != self.before[g])
        self.report["frozen_unchanged"] = not changed
        self.report["frozen_checksums"] = after
        if changed:
            raise FrozenWeightsChanged(f"frozen weights changed during {pl_module.spec.name}: {', '.join(changed)}")
        if self.verbose and trainer.is_global_zero:
            print(f"[{pl_module.spec.name}] frozen weights unchanged: {', '.join(sorted(after)) or 'none frozen'} "
                  f"(tensor checksums equal before and after)")


# ============================================================================ evaluations
def evaluate_stage(module: DSVLLitModule, n_samples: int, details=("coarse", "fine"), language: bool = True,
                   generate: bool = True) -> dict:
    """Multimodal per-family scores plus language retention, in the stage's prompt format."""
    processor = DSVLProcessor.from_config(module.model.config)
    result = {"vl": evaluate_vl(module.model, processor, details=details, n=n_samples,
                                prompt_format=module.spec.prompt_format, generate=generate)}
    if language:
        result["language"] = language_retention(module.model, processor)
    return result


def flat_metrics(result: dict) -> dict[str, float]:
    """``eval/<family>_<detail>/option_accuracy`` ... and ``eval/text_perplexity``, ``eval/cloze_accuracy``."""
    flat = {}
    for key, score in result["vl"].items():
        family, detail = key.split("/")
        for metric in ("option_accuracy", "exact_match"):
            flat[f"eval/{family}_{detail}/{metric}"] = float(score[metric])
    if "language" in result:
        flat["eval/text_perplexity"] = float(result["language"]["perplexity"])
        flat["eval/cloze_accuracy"] = float(result["language"]["cloze_accuracy"])
    return flat


class StageEvaluation(L.Callback):
    """Language retention and multimodal evaluation every ``every_n_steps`` (0: at the end only)."""

    def __init__(self, every_n_steps: int = 0, n_samples: int = 20, details=("coarse", "fine"),
                 language: bool = True, generate: bool = True) -> None:
        self.every_n_steps, self.n_samples, self.details = every_n_steps, n_samples, tuple(details)
        self.language, self.generate = language, generate
        self.history: list[dict] = []  # {"step": k, "result": {...}}
        self.final: dict | None = None

    def _evaluate(self, trainer, pl_module: DSVLLitModule) -> dict:
        with torch.no_grad(), trainer.precision_plugin.forward_context():
            result = evaluate_stage(pl_module, self.n_samples, self.details, self.language, self.generate)
        self.history.append({"step": trainer.global_step, "result": result})
        return result

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0 and step < trainer.max_steps:
            self._log(trainer, self._evaluate(trainer, pl_module))

    def on_train_end(self, trainer, pl_module) -> None:
        self.final = self._evaluate(trainer, pl_module)
        self._log(trainer, self.final)

    def on_fit_end(self, trainer, pl_module) -> None:
        # A run resumed from a checkpoint already at its last step trains nothing and skips
        # on_train_end; the stage still needs its evaluation for the hand-off card and the report.
        if self.final is None:
            self.final = self._evaluate(trainer, pl_module)

    @staticmethod
    def _log(trainer, result: dict) -> None:
        # Straight to the loggers, once: self.log() would repeat the values on every later row.
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(flat_metrics(result), step=trainer.global_step)


class LanguageCurve(L.Callback):
    """The LLM's held-out perplexity at step 0 and every ``every`` steps: the language curve of the
    ratio and warm-up studies (paper Fig. 4 and 9 track Pile-test over stage 2 the same way).

    The same measure as the end point (``lm_eval.heldout_perplexity``: the whole held-out split), logged as
    ``lang/perplexity``; it reads no training data and changes no weight.
    """

    def __init__(self, every: int) -> None:
        self.every = every

    def on_train_start(self, trainer, pl_module: DSVLLitModule) -> None:
        if trainer.global_step == 0:  # a resumed run has its start point already
            self._measure(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every == 0:
            self._measure(trainer, pl_module)

    def _measure(self, trainer, pl_module: DSVLLitModule) -> None:
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad(), trainer.precision_plugin.forward_context():
            value = heldout_perplexity(pl_module.model, DSVLProcessor.from_config(pl_module.model.config))
        pl_module.train(was_training)  # DSVLLitModule.train keeps the frozen parts in eval
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics({"lang/perplexity": value}, step=trainer.global_step)


# ============================================================================ NaN / inf guard
class NonFiniteLoss(FloatingPointError):
    pass


class NonFiniteGuard(L.Callback):
    """Stop before a non-finite loss or gradient reaches the weights.

    Runs before the optimizer step, so the weights (and every checkpoint written so far) are still
    the last good ones. The message names the step and the last checkpoint.
    """

    def __init__(self, checkpoint_dir: str | Path | None = None) -> None:
        self.checkpoint_dir = checkpoint_dir

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        loss = trainer.callback_metrics.get("train/loss")
        bad_loss = loss is not None and not torch.isfinite(loss).all()
        named_grads = [(n, p.grad) for n, p in pl_module.named_parameters() if p.grad is not None]
        # The total norm is finite exactly when every gradient element is (or it overflows, above
        # ~1e19 in fp32, which is no healthy step either). One reading pass and one device sync: about
        # 5x cheaper than an isfinite tensor per gradient (2.5 against 13 ms a step at tiny size).
        # The names are looked up only when something is wrong.
        grads_finite = not named_grads or bool(torch.isfinite(get_total_norm([g for _, g in named_grads])))
        bad_grads = [] if grads_finite else [n for n, g in named_grads if not torch.isfinite(g).all()]
        if bad_loss or not grads_finite:
            what = (f"the loss is {float(loss)}" if bad_loss
                    else f"gradients of {len(bad_grads)} tensors are not finite (e.g. {bad_grads[0]})" if bad_grads
                    else "the total gradient norm overflows")
            last = Path(self.checkpoint_dir) / "last.ckpt" if self.checkpoint_dir else None
            kept = (f"the last good checkpoint is {last}" if last is not None and last.is_file()
                    else "no checkpoint was written before it")
            raise NonFiniteLoss(f"step {trainer.global_step} of {pl_module.spec.name}: {what}; training stopped before "
                                f"this step changed any weight; {kept}. Lower the learning rate or check the data.")


# ============================================================================ throughput and MFU
def batch_flops(config: DSVLConfig, spec: StageSpec, batch: dict) -> int:
    """FLOPs of one training step (forward + backward) on ``batch`` of a ``config`` model in the stage
    ``spec``: the analytic count of ``dsvl_lab.metrics.flops`` for the stage's trainable groups, equal
    to torch's FlopCounterMode on the meta device (tests/test_accounting.py). Counting it costs
    nothing; running FlopCounterMode on a real batch cost several seconds per stage
    (benchmarks/README.md, ``profile_stage.py``)."""
    sequences, length = batch["input_ids"].shape
    with_images = int(batch.get("n_image", sequences))  # a mixed batch holds image and text samples
    pixels = batch.get("pixel_values")
    per_sample = pixels.shape[0] // with_images if with_images and pixels is not None else 0
    parts = [(with_images, per_sample), (sequences - with_images, 0)]  # [(sequences, images each)]
    return sum(step_flops(config, spec, n, length, images)["total"] for n, images in parts if n)


class FlopsThroughput(ThroughputMonitor):
    """Samples/s, tokens/s, FLOP/s and MFU, with the FLOPs of a step measured once per modality.

    Batches are modality-grouped, so a text step and an image step cost different FLOPs; the value
    Lightning reads (``flops_per_batch``) is their mix at the stage's language ratio.
    """

    def __init__(self, peak_flops: float | None = None, **kwargs) -> None:
        super().__init__(batch_size_fn=lambda batch: int(batch["input_ids"].shape[0]),
                         length_fn=lambda batch: int(batch["input_ids"].numel()), **kwargs)
        self.peak_flops = peak_flops

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if self.available_flops is None and trainer.strategy.root_device.type == "cpu":
            # the peak of the dtype the matmuls run in: bf16 under bf16 autocast, else fp32
            dtype = torch.bfloat16 if str(trainer.precision).startswith("bf16") else torch.float32
            self.available_flops = int(self.peak_flops or measure_peak_flops(dtype))
            for throughput in self._throughputs.values():
                throughput.available_flops = self.available_flops

    def on_fit_start(self, trainer, pl_module: DSVLLitModule) -> None:
        # The data module's fixed validation batches hold one text and one image batch of the stage's shapes.
        datamodule = trainer.datamodule
        text_share = datamodule.data.language_ratio
        shares = {"text": text_share, "image": 1 - text_share}
        flops = {}
        for batch in datamodule.validation_batches():
            modality = "image" if int(batch["n_image"]) else "text"
            if modality not in flops and shares[modality] > 0:
                flops[modality] = batch_flops(pl_module.config, pl_module.spec, batch)
        pl_module.flops_per_batch = int(text_share * flops.get("text", 0) + (1 - text_share) * flops.get("image", 0))
        pl_module.flops_per_modality = flops


# ============================================================================ hand-off export
class StageExport(L.Callback):
    """At the end of the stage, write ``out/model`` (weights, config, stage.json) for the next stage."""

    def __init__(self, out: str | Path, evaluation: StageEvaluation | None = None,
                 audit: FreezeAudit | None = None) -> None:
        self.out, self.evaluation, self.audit = Path(out), evaluation, audit
        self.folder: Path | None = None

    def on_fit_end(self, trainer, pl_module: DSVLLitModule) -> None:
        if not trainer.is_global_zero:
            return
        extra = {"spec": pl_module.spec.to_dict(), "start": str(pl_module.start) if pl_module.start else None,
                 "world_size": trainer.world_size, "strategy": type(trainer.strategy).__name__,
                 "freeze_audit": self.audit.report if self.audit else None}
        self.folder = write_stage_output(pl_module.model, self.out, pl_module.spec.name, pl_module.preset,
                                         trainer.global_step, self.evaluation.final if self.evaluation else None, extra)
