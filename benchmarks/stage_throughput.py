"""How much does everything around the model cost in a real stage? Stage samples/s over model-step samples/s.

A stage of ``make demo`` is more than its model steps: the loader renders task images and tokenises,
Lightning logs and writes ``last.ckpt``, validation runs every quarter, and the stage ends with its
evaluation (40 held-out questions per family and detail, and language retention). This measures,
in one process:

1. **the stage**: ``run_stage`` exactly as the pipeline calls it (``--steps`` steps of the stage's
   miniature spec, its evaluation included), timed from the first training batch to the end of the
   fit: samples/s = steps x batch / that time (model building and process start are left out);
2. **the model step alone**: the same model, freeze, parameter groups and schedule, stepping through
   the same stage's batches built beforehand in memory (``training.step.training_step_by_hand``: forward,
   loss, backward, clip, AdamW, schedule), nothing else.

``ratio`` = (1) / (2): 1.0 means the rest is free; the issue asks for at least 0.9 on every tiny
hybrid stage. (2) is timed twice, before and after (1), and the reference is the mean of the two
times: this VM's speed drifts by 30% within minutes, and bracketing the stage between two
measurements of its reference keeps a slow or fast moment from landing on one side only
(``model_step_samples_per_s_before`` / ``_after`` show the drift). Stages 2 and 3 start from the
foundation parts here, not from the previous stage (the same shapes, so the same costs).

    python benchmarks/stage_throughput.py                                # the three stages, about 10-15 minutes
    python benchmarks/stage_throughput.py --stage stage2_joint --steps 100 --num-workers 0
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from bench_model import WallClock, machine, warm_sample_cache

from dsvl_lab.atomic import write_json_atomic
from dsvl_lab.cli.common import workers_or_auto
from dsvl_lab.data.datamodule import loader_workers
from dsvl_lab.data.sample_cache import named_in_env
from dsvl_lab.harness import resolve_precision
from dsvl_lab.training.run import DEMO_EVAL_SAMPLES, run_stage
from dsvl_lab.training.spec import STAGE_NAMES, stage_spec
from dsvl_lab.training.step import prepared_stage, training_step_by_hand

RESULTS = Path(__file__).resolve().parent / "results"


def stage_rate(preset: str, spec, precision: str, num_workers: int | str, eval_samples: int) -> float:
    """Samples/s of the real stage, first batch to the end of its evaluation."""
    clock = WallClock()
    with tempfile.TemporaryDirectory() as folder:
        run_stage(preset, spec, folder, progress=False, eval_samples=eval_samples, extra_callbacks=[clock],
                  num_workers=num_workers, precision=precision)
    return spec.steps * spec.data.batch_size / (clock.end - clock.first)


def model_step_seconds(prepared, spec, precision: str, steps: int) -> float:
    """Seconds per model step alone (forward, loss, backward, clip, AdamW, schedule) over the first
    ``steps`` + 1 of the stage's batches, built before the clock starts; the first is a warm-up.
    ``prepared`` is what ``training.step.prepared_stage`` returns."""
    model, batches, optimizer, scheduler = prepared
    ready = [batches[step] for step in range(steps + 1)]
    training_step_by_hand(model, ready[0], optimizer, scheduler, spec.grad_clip, precision)  # warm-up
    start = time.perf_counter()
    for batch in ready[1:]:
        training_step_by_hand(model, batch, optimizer, scheduler, spec.grad_clip, precision)
    return (time.perf_counter() - start) / steps


def model_step_rate(preset: str, spec, precision: str) -> float:
    """Samples/s of the model step alone over the stage's own batches (all but one, the warm-up)."""
    return spec.data.batch_size / model_step_seconds(prepared_stage(preset, spec), spec, precision, spec.steps - 1)


def measure(preset: str, stage: str, steps: int | None, precision: str, num_workers: int | str, eval_samples: int,
            sample_cache: str) -> dict:
    spec = stage_spec(stage).replace(starts_from="foundation")
    if steps:
        spec = spec.replace(steps=steps)
    cache = warm_sample_cache(preset, spec, eval_samples, sample_cache)
    before = model_step_rate(preset, spec, precision)
    with named_in_env(cache):  # the stage's process and its loader worker read it
        whole = stage_rate(preset, spec, precision, num_workers, eval_samples)
    after = model_step_rate(preset, spec, precision)
    alone = 2 / (1 / before + 1 / after)  # samples over the mean time per sample of the two
    print(f"{stage}: stage {whole:.1f} samples/s, model step alone {alone:.1f} samples/s (before {before:.1f}, "
          f"after {after:.1f}), ratio {whole / alone:.3f}", flush=True)
    return {"stage": stage, "steps": spec.steps, "batch_size": spec.data.batch_size,
            "stage_samples_per_s": round(whole, 2), "model_step_samples_per_s": round(alone, 2),
            "model_step_samples_per_s_before": round(before, 2), "model_step_samples_per_s_after": round(after, 2),
            "ratio": round(whole / alone, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Example: python "
                                     "benchmarks/stage_throughput.py --stage stage2_joint --steps 100",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="dsvl-tiny-hybrid")
    parser.add_argument("--stage", action="append", choices=STAGE_NAMES, help="repeatable (default: all three)")
    parser.add_argument("--steps", type=int, default=None, help="steps per stage (default: the demo's)")
    parser.add_argument("--precision", default="auto", help="Lightning precision (default auto, as make demo)")
    parser.add_argument("--num-workers", type=workers_or_auto, default="auto",
                        help="loader workers (default auto, as the pipeline: 0 on a CPU, 1 with a GPU)")
    parser.add_argument("--eval-samples", type=int, default=DEMO_EVAL_SAMPLES,
                        help="held-out questions per family and detail (the demo's 40)")
    parser.add_argument("--sample-cache", default="auto", metavar="auto|off|DIR",
                        help="rendered samples, as make demo reads them (default auto: runs/sample-cache, "
                             "pre-rendered before the clock)")
    parser.add_argument("--name", default="stage_throughput")
    args = parser.parse_args()
    precision = resolve_precision(args.precision)
    rows = [measure(args.preset, stage, args.steps, precision, args.num_workers, args.eval_samples, args.sample_cache)
            for stage in args.stage or STAGE_NAMES]
    result = {"benchmark": "stage_throughput", "preset": args.preset, "precision": precision,
              "num_workers": loader_workers(args.num_workers), "eval_samples": args.eval_samples,
              "sample_cache": args.sample_cache, "threads": torch.get_num_threads(),
              "rows": rows, "min_ratio": min(row["ratio"] for row in rows), "machine": machine(),
              "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(result))
    write_json_atomic(RESULTS / f"{args.name}.json", result)


if __name__ == "__main__":
    main()
