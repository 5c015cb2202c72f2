"""Running stages: one stage as one resumable Lightning run, and the three-stage pipeline.

    >>> from dsvl_lab.training import run_pipeline                       # doctest: +SKIP
    >>> report = run_pipeline("dsvl-tiny-hybrid", "runs/demo")             # doctest: +SKIP

``runs/demo/`` then holds one folder per stage (``stage1_adaptor/``, ``stage2_joint/``,
``stage3_sft/``), each with ``logs/`` (CSV, TensorBoard when installed), ``checkpoints/last.ckpt``
(the same command resumes from it) and ``model/`` (the hand-off to the next stage), plus
``report.json`` and ``report.md``, rewritten after every stage.
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import lightning as L

from ..artifacts import read_metrics
from ..config import DSVLConfig
from ..data.datamodule import DSVLDataModule, MixtureLogger, stage_sample_keys
from ..data.sample_cache import AUTO, CACHE_FOLDER, build, named_in_env, open_cache, resolve_root
from ..data.stage_data import world_image_size
from ..data.tasks import DETAILS, FAMILIES
from ..foundation.recipe import FoundationError, size_of
from ..harness import fit_resumable, make_trainer, resolve_precision, resume_point
from ..metrics.vl_eval import eval_sample_keys
from ..run_folder import owned
from .callbacks import FlopsThroughput, FreezeAudit, LanguageCurve, NonFiniteGuard, StageEvaluation, StageExport
from .handoff import made_by
from .module import DSVLLitModule
from .report import write_report
from .spec import STAGE_NAMES, StageSpec, as_stage_spec, stage_spec

SMOKE_STEPS = 3
# held-out questions per family and detail: with 20, one run to the next moves a family by 0.1-0.2
DEMO_EVAL_SAMPLES = 40


@dataclass
class StageRun:
    """What one stage run produced."""

    name: str
    folder: Path
    model_folder: Path
    steps: int
    seconds: float
    resumed: bool
    evaluation: dict | None
    freeze_audit: dict
    throughput: dict = field(default_factory=dict)
    precision: str = ""


def stage_callbacks(out: Path, spec: StageSpec, eval_every: int, eval_samples: int,
                    language_eval: bool = True, throughput: bool = True) -> dict[str, L.Callback]:
    """The stage's own callbacks, by name; ``last.ckpt`` is the harness's (``make_trainer`` / ``keep_last``)."""
    audit = FreezeAudit()
    # eval_samples=0: no evaluation in the stage (a sweep evaluates the runs' end points itself).
    evaluation = StageEvaluation(eval_every, eval_samples, language=language_eval) if eval_samples else None
    callbacks = {
        "audit": audit,
        "guard": NonFiniteGuard(out / "checkpoints"),
        "mixture": MixtureLogger(),
        **({"evaluation": evaluation} if evaluation else {}),
        "export": StageExport(out, evaluation, audit),
    }
    if throughput:
        callbacks["throughput"] = FlopsThroughput()
    if spec.language_every:
        callbacks["language_curve"] = LanguageCurve(spec.language_every)
    return callbacks


def run_stage(preset: str, spec: StageSpec | str, out: str | Path, start: str | Path | None = None,
              progress: bool = True, eval_every: int = 0, eval_samples: int = 20, checkpoint_every: int = 50,
              extra_callbacks: Sequence[L.Callback] = (), language_eval: bool = True, throughput: bool = True,
              num_workers: int | str = "auto", **trainer_options) -> StageRun:
    """Train one stage into ``out``; resumes from ``out/checkpoints/last.ckpt`` when it exists.

    ``out`` is owned by this process while it trains (``dsvl_lab.run_folder.owned``); a checkpoint
    there is checked before anything is built: intact, and trained with this very preset, spec and
    start, else the run is refused with the differing keys.
    """
    spec = as_stage_spec(spec)
    out = Path(out)
    with owned(out):
        return train_stage_in(out, preset, spec, start, progress, eval_every, eval_samples, checkpoint_every,
                              extra_callbacks, language_eval, throughput, num_workers, **trainer_options)


def start_key(start: str | Path | None) -> str | None:
    """The start as an absolute path, so a resume from another working directory still matches."""
    return str(Path(start).resolve()) if start else None


def train_stage_in(out: Path, preset: str, spec: StageSpec, start, progress: bool, eval_every: int,
                   eval_samples: int, checkpoint_every: int, extra_callbacks: Sequence[L.Callback],
                   language_eval: bool, throughput: bool, num_workers: int | str, val_every: int | None = None,
                   **trainer_options) -> StageRun:
    """Train the stage with the harness (trainer, resumable fit); ``trainer_options`` override Trainer arguments."""
    asked = {"preset": preset, "stage": spec.to_dict(), "start": start_key(start)}  # the module's hparams
    resume = resume_point(out, asked, fresh_hint=f"delete {out} to train this stage afresh, or write to another folder",
                          normalise={"start": start_key})  # before anything is built: a refusal costs nothing
    # The fresh parts (the aligner in stage 1) and everything else random start from the stage's seed,
    # so the same command gives the same weights (on CPU, with the same thread count).
    L.seed_everything(spec.data.seed, workers=True, verbose=False)
    module = DSVLLitModule(preset, spec, start=str(start) if start else None)  # checks the hand-off first
    data = DSVLDataModule(module.config, spec.data, total_steps=spec.steps, num_workers=num_workers)
    callbacks = stage_callbacks(out, spec, eval_every, eval_samples, language_eval, throughput)
    # "auto" (the default): bf16 autocast where bf16 matmuls are fast, else fp32 (harness/precision.py)
    trainer_options["precision"] = resolve_precision(trainer_options.get("precision", "auto"))
    validation = {"val_check_interval": min(val_every or max(1, spec.steps // 4), spec.steps),
                  "check_val_every_n_epoch": None,
                  "use_distributed_sampler": False}  # DSVLDataModule splits each step across ranks itself
    trainer = make_trainer(out, spec.steps, [*callbacks.values(), *extra_callbacks], checkpoint_every, progress,
                           **{**validation, **trainer_options})
    started = time.perf_counter()
    resumed = fit_resumable(trainer, module, data, resume)
    export: StageExport = callbacks["export"]
    return StageRun(spec.name, out, export.folder or out / "model", trainer.global_step, time.perf_counter() - started,
                    resumed, callbacks["evaluation"].final if "evaluation" in callbacks else None,
                    callbacks["audit"].report, throughput_summary(out, module), trainer_options["precision"])


def throughput_summary(out: Path, module: DSVLLitModule) -> dict:
    """FLOPs per batch and the last window's samples/s, FLOP/s and MFU (from the CSV log)."""
    summary: dict = {"flops_per_batch": getattr(module, "flops_per_batch", None)}
    rows = [row for row in read_metrics(out) if "train/device/mfu" in row]
    if rows:  # ThroughputMonitor logs train/device/{samples,flops}_per_sec and train/device/mfu
        summary.update({key.removeprefix("train/device/"): rows[-1][key]
                        for key in ("train/device/samples_per_sec", "train/device/flops_per_sec", "train/device/mfu")})
    return summary


# ============================================================================ the pipeline
def pipeline_specs(preset: str, smoke: bool = False, scale: str = "mini") -> list[StageSpec]:
    """The three stages in order; ``smoke`` shortens each to a few steps."""
    specs = [stage_spec(name, scale) for name in STAGE_NAMES]
    if not has_foundation(preset):  # micro presets (tests) and real sizes: stage 1 starts from random weights
        specs[0] = specs[0].replace(starts_from="random")
    if smoke:
        specs = [spec.replace(steps=SMOKE_STEPS, warmup_steps=1,
                              data={"warmup_steps": min(spec.data.warmup_steps, 1), "batch_size": 4})
                 for spec in specs]
    return specs


def pipeline_sample_keys(preset: str, smoke: bool = False, eval_samples: int | None = None,
                         stages: Sequence[StageSpec] | None = None) -> set:
    """The task samples ``run_pipeline`` draws (training and validation batches, the stages' evaluation
    sets), found without building a model: what the pipeline and ``dsvl-lab data cache --preset`` pre-render."""
    config = DSVLConfig.from_name(preset)
    keys = set()
    for spec in (stages if stages is not None else pipeline_specs(preset, smoke)):
        keys |= stage_sample_keys(config, spec.data, spec.steps)
    n = eval_samples or (2 if smoke else DEMO_EVAL_SAMPLES)
    return keys | eval_sample_keys(FAMILIES, DETAILS, n, world_image_size(config))


def has_foundation(preset: str) -> bool:
    try:
        size_of(preset)
        return True
    except FoundationError:
        return False


def run_pipeline(preset: str, out: str | Path, smoke: bool = False, progress: bool = True,
                 eval_samples: int | None = None, stages: Sequence[StageSpec] | None = None,
                 sample_cache: str | Path | None = AUTO, **stage_options) -> dict:
    """Stages 1 -> 2 -> 3, each continuing the previous one's checked output; the report after each.

    ``out`` is owned by this process meanwhile: a second pipeline on the same folder is refused.
    ``sample_cache``: the folder of rendered task samples the stages draw from (``data/sample_cache.py``),
    rendered first, on every core, with a progress bar; ``"auto"``: ``DSVL_LAB_SAMPLE_CACHE`` when set,
    else ``sample-cache`` beside ``out`` (``runs/sample-cache`` for ``runs/demo``); None or ``"off"``: none.
    The cache never changes what a stage sees, only how long drawing it takes.
    """
    specs = list(stages) if stages is not None else pipeline_specs(preset, smoke)
    cache = resolve_root(sample_cache, Path(out).resolve().parent / CACHE_FOLDER)
    with owned(out), named_in_env(cache):
        if cache is not None:
            stats = build(open_cache(str(cache)), pipeline_sample_keys(preset, smoke, eval_samples, specs),
                          workers=os.cpu_count() or 1, progress=progress)
            print(f"sample cache {cache}: {stats['samples']} samples, {stats['present']} already there, "
                  f"{stats['rendered']} rendered")
        return pipeline_in(preset, Path(out), smoke, progress, eval_samples, specs, **stage_options)


def pipeline_in(preset: str, out: Path, smoke: bool, progress: bool, eval_samples: int | None,
                specs: Sequence[StageSpec], **stage_options) -> dict:
    eval_samples = eval_samples or (2 if smoke else DEMO_EVAL_SAMPLES)
    report = {"preset": preset, "smoke": smoke, "stages": []}
    earlier = earlier_entries(out)  # read before this run rewrites report.json
    previous: Path | None = None
    for spec in specs:
        finished = finished_stage(out / spec.name, spec, preset, earlier)
        if finished is not None:
            print(f"\n=== {spec.name}: already finished in {out / spec.name} (same stage spec); reusing it ===")
            report["stages"].append(finished)
        else:
            print(f"\n=== {spec.name}: {spec.steps} steps, training {', '.join(spec.trainable)} ===", flush=True)
            run = run_stage(preset, spec, out / spec.name, start=previous, progress=progress,
                            eval_samples=eval_samples, language_eval=not smoke, **stage_options)
            report["stages"].append(stage_entry(run, spec))
        write_report(out, report)
        previous = out / spec.name
    return report


def earlier_entries(out: Path) -> dict[str, dict]:
    """Stage entries of an earlier report in ``out``, by stage name."""
    import json

    report = out / "report.json"
    return {entry["name"]: entry for entry in json.loads(report.read_text())["stages"]} if report.is_file() else {}


def finished_stage(folder: Path, spec: StageSpec, preset: str, earlier: dict[str, dict]) -> dict | None:
    """The report entry of a stage already finished in ``folder`` with the same spec, else None."""
    return earlier.get(spec.name) if made_by(folder, preset, spec.to_dict()) else None


def stage_entry(run: StageRun, spec: StageSpec) -> dict:
    return {"name": run.name, "steps": run.steps, "seconds": round(run.seconds, 1), "resumed": run.resumed,
            "trainable": list(spec.trainable), "learning_rate": spec.learning_rate,
            "language_ratio": spec.data.language_ratio, "prompt_format": spec.prompt_format,
            "model_folder": str(run.model_folder), "evaluation": run.evaluation,
            "frozen_unchanged": run.freeze_audit.get("frozen_unchanged"), "throughput": run.throughput,
            "precision": run.precision,
            "spec": dataclasses.asdict(spec)}
