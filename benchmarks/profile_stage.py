"""Where does the time of a demo stage go? Data, forward, backward, optimizer, evaluation, logging, start-up.

Runs one stage of the miniature recipe (``make demo``'s stage specs, shortened to ``--steps``) under
Lightning's ``SimpleProfiler`` and sorts its recorded actions into the phases a user pays for:

- ``start``      importing the package and building the model from the shipped foundation parts
                 (everything before the first training batch: Lightning's set-up, the data module's,
                 and the throughput callback's FLOP count, ``FlopsThroughput.on_fit_start``);
- ``data``       waiting for the next batch (``train_dataloader_next``): the loader workers render task
                 images, tokenise and pad; with workers this is only the part that was not hidden;
- ``forward``    ``training_step`` (the model's forward and the loss);
- ``backward``   ``backward``;
- ``optimizer``  ``optimizer_step`` minus the forward and backward it wraps (AdamW, clipping, zero_grad);
- ``evaluation`` the validation loop and the stage's end-of-stage evaluation callbacks;
- ``logging``    the other callbacks and hooks (mixture logger, throughput, checkpoints, CSV);
- ``other``      wall time not inside any recorded action (Lightning's loop overhead, process end).

    python benchmarks/profile_stage.py                                   # stage 2, 60 steps, about 1 minute
    python benchmarks/profile_stage.py --stage stage3_sft --steps 100 --precision 32-true
    python benchmarks/profile_stage.py --num-workers 0 --name profile-stage2-noworkers

Prints a table and one JSON line; writes ``benchmarks/results/<name>.json``. Stages 2 and 3 start from the
foundation parts here (not from the previous stage's output): the shapes, and so the costs, are the same.
"""
from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the heavy imports: they are part of "start"

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

from bench_model import WallClock, warm_sample_cache  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.profilers import SimpleProfiler  # noqa: E402

from dsvl_lab.atomic import write_text_atomic  # noqa: E402
from dsvl_lab.cli.common import workers_or_auto  # noqa: E402
from dsvl_lab.data.datamodule import loader_workers  # noqa: E402
from dsvl_lab.training.run import run_stage  # noqa: E402
from dsvl_lab.training.spec import stage_spec  # noqa: E402

RESULTS = Path(__file__).parent / "results"
PHASES = ("start", "data", "forward", "backward", "optimizer", "evaluation", "logging", "other")
EVALUATION_HOOKS = ("StageEvaluation", "LanguageCurve", "validation", "val_", "evaluation_loop")
START_HOOKS = (".setup", ".prepare_data", ".configure_", ".on_fit_start", ".on_train_start", ".on_train_epoch_start")


def phase_of(action: str) -> str | None:
    """The phase of one SimpleProfiler action name, or None for wrappers counted elsewhere."""
    if any(hook in action for hook in START_HOOKS):
        return None  # before the first batch: inside "start", which is measured by the wall clock
    if action.endswith("train_dataloader_next"):
        return "data"
    if action.endswith(".training_step"):
        return "forward"
    if action.endswith(".backward"):
        return "backward"
    if action.endswith(".optimizer_step"):
        return "optimizer"  # the forward and backward inside it are subtracted below
    if any(hook in action for hook in EVALUATION_HOOKS):
        return "evaluation"
    if action.startswith("[Callback]") or action.startswith("[LightningModule]") or action.startswith("[Strategy]"):
        return "logging"
    return None  # run_training_epoch, run_training_batch and other wrappers: they contain the rest


def phase_seconds(profiler: SimpleProfiler, start_s: float, total_s: float) -> dict[str, float]:
    phases: dict[str, float] = defaultdict(float)
    for action, durations in profiler.recorded_durations.items():
        phase = phase_of(action)
        if phase is not None:
            phases[phase] += sum(durations)
    phases["optimizer"] -= phases["forward"] + phases["backward"]  # optimizer_step wraps the closure
    phases["start"] = start_s
    phases["other"] = total_s - sum(phases[p] for p in PHASES if p != "other")
    return {p: round(phases[p], 3) for p in PHASES}


def profile(preset: str, stage: str, steps: int, precision: str, num_workers: int | str, eval_samples: int,
            sample_cache: str = "off") -> dict:
    spec = stage_spec(stage).replace(starts_from="foundation", steps=steps)
    rendering = time.perf_counter()
    cache = warm_sample_cache(preset, spec, eval_samples, sample_cache)  # the pipeline's work, not the stage's:
    os.environ["DSVL_LAB_SAMPLE_CACHE"] = str(cache) if cache else "off"
    global STARTED
    STARTED += time.perf_counter() - rendering  # left out of "start"
    profiler, first = SimpleProfiler(), WallClock()
    with tempfile.TemporaryDirectory() as folder:
        run = run_stage(preset, spec, folder, progress=False, eval_samples=eval_samples, extra_callbacks=[first],
                        num_workers=num_workers, precision=precision, profiler=profiler,
                        checkpoint_every=min(50, steps))
    total = time.perf_counter() - STARTED
    phases = phase_seconds(profiler, first.first - STARTED, total)
    actions = sorted(((sum(d), a) for a, d in profiler.recorded_durations.items()), reverse=True)[:25]
    samples = steps * spec.data.batch_size
    return {"benchmark": "profile_stage", "preset": preset, "stage": stage, "steps": run.steps,
            "batch_size": spec.data.batch_size, "precision": precision, "num_workers": loader_workers(num_workers),
            "threads": torch.get_num_threads(), "eval_samples": eval_samples, "total_s": round(total, 2),
            "phases_s": phases, "phase_share": {p: round(s / total, 3) for p, s in phases.items()},
            "top_actions_s": {action: round(seconds, 3) for seconds, action in actions},
            "train_samples_per_s": round(samples / (total - phases["start"] - phases["evaluation"]), 2),
            "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}


def print_table(result: dict) -> None:
    print(f"{result['preset']} {result['stage']}: {result['steps']} steps x batch {result['batch_size']}, "
          f"{result['precision']}, {result['num_workers']} loader workers, {result['threads']} threads")
    print(f"{'phase':<12}{'seconds':>10}{'share':>8}")
    for phase in PHASES:
        print(f"{phase:<12}{result['phases_s'][phase]:>10.2f}{result['phase_share'][phase]:>8.1%}")
    print(f"{'total':<12}{result['total_s']:>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog="Example: python "
                                     "benchmarks/profile_stage.py --stage stage2_joint --steps 60",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="dsvl-tiny-hybrid")
    parser.add_argument("--stage", default="stage2_joint", choices=("stage1_adaptor", "stage2_joint", "stage3_sft"))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--precision", default="32-true", help="Lightning precision (default 32-true)")
    parser.add_argument("--num-workers", type=workers_or_auto, default="auto",
                        help="data loader workers (default auto, as the pipeline: 0 on a CPU, 1 with a GPU)")
    parser.add_argument("--eval-samples", type=int, default=40,
                        help="held-out questions per family and detail at the stage's end (demo: 40)")
    parser.add_argument("--sample-cache", default="auto", metavar="auto|off|DIR",
                        help="rendered samples, as make demo reads them (default auto: runs/sample-cache, "
                             "pre-rendered before the clock)")
    parser.add_argument("--name", default=None, help="results file name (default profile-<stage>)")
    args = parser.parse_args()
    result = profile(args.preset, args.stage, args.steps, args.precision, args.num_workers, args.eval_samples,
                     args.sample_cache)
    print_table(result)
    print(json.dumps(result))
    RESULTS.mkdir(exist_ok=True)
    write_text_atomic(RESULTS / f"{args.name or 'profile-' + args.stage}.json", json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
