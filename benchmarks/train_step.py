"""Our training step against transformers' DeepSeek-VL at the same config, weights, batch and dtype.

One training step is what every run repeats: forward, next-token loss, backward, AdamW step. This
times ours (``DSVLModel`` with the optimizer our harness builds, ``dsvl_lab.harness.optim``) against
transformers' ``DeepseekVLHybridForConditionalGeneration`` (``DeepseekVLForConditionalGeneration``
for SigLIP-only presets) with ``torch.optim.AdamW`` at its defaults, the way a user of transformers
would train it. Both start from the same weights (``convert.to_hf``, then ``convert.from_hf`` so ours
takes the same pre-normalised views), see the same batch, and every parameter trains on both sides.
Their losses are checked equal before anything is timed.

Timing alternates the sides in rounds (ours then theirs, then theirs then ours) and takes the median
of the per-round ratios, so a busy moment of a shared machine slows both sides of a round alike
(see ``bench_model.py``). Printed, and written to ``benchmarks/results/<name>.json``:

- ``speedup_vs_transformers``: transformers' step time over ours (above 1: ours is faster);
- ``mfu``: our step's FLOPs (the analytic count of ``dsvl_lab.metrics.flops``, equal to torch's FLOP
  counter) per second, over the matmul peak measured in this process, in this dtype, just before;
- each side's forward / backward / optimizer split (one extra step each, timed by phase).

    python benchmarks/train_step.py --preset dsvl-tiny-hybrid              # fp32, about 1 minute
    python benchmarks/train_step.py --preset dsvl-small-hybrid --batch 4
    python benchmarks/train_step.py --preset dsvl-tiny-hybrid --dtype bf16 --device cuda
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch
from bench_model import block_times, machine, make_batch

from dsvl_lab.atomic import write_json_atomic
from dsvl_lab.config import DSVLConfig
from dsvl_lab.convert import from_hf, to_hf
from dsvl_lab.harness import measure_peak_flops
from dsvl_lab.harness.optim import decay_groups
from dsvl_lab.metrics.flops import step_flops
from dsvl_lab.model import DSVLModel
from dsvl_lab.training.spec import GROUPS

RESULTS = Path(__file__).resolve().parent / "results"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


# ============================================================================ the two steps
def our_optimizer(model: torch.nn.Module, fused: bool) -> torch.optim.Optimizer:
    """The harness's AdamW: matrices decay, vectors do not (``decay_groups``); fused where torch has it."""
    groups = decay_groups(model.named_parameters(), weight_decay=0.1, lr=1e-4)
    return torch.optim.AdamW(groups, betas=(0.9, 0.95), fused=fused or None)


def reference_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """What a transformers user writes: AdamW over every parameter, torch's defaults otherwise."""
    return torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)


def make_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, inputs: dict, dtype: str,
              device: str) -> Callable[[], None]:
    """A closure running one whole training step: zero_grad, forward (autocast for bf16), backward, AdamW.
    ``inputs`` may carry the side's own forward options (ours: ``loss_only``, as ``batch_loss`` trains)."""
    model.train()
    autocast = torch.autocast(device, dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up: allocates AdamW's state, proves the step runs
    return step


def phase_split(model: torch.nn.Module, optimizer: torch.optim.Optimizer, inputs: dict, dtype: str,
                device: str, repeats: int = 3) -> dict[str, float]:
    """Median milliseconds of forward, backward and optimizer over ``repeats`` steps."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    autocast = torch.autocast(device, dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()
    phases: dict[str, list[float]] = {"forward": [], "backward": [], "optimizer": []}
    for _ in range(repeats):
        optimizer.zero_grad(set_to_none=True)
        marks = [time.perf_counter()]
        with autocast:
            loss = model(**inputs).loss
        sync()
        marks.append(time.perf_counter())
        loss.backward()
        sync()
        marks.append(time.perf_counter())
        optimizer.step()
        sync()
        marks.append(time.perf_counter())
        for phase, start, end in zip(phases, marks, marks[1:]):
            phases[phase].append(1e3 * (end - start))
    return {phase: round(statistics.median(ms), 2) for phase, ms in phases.items()}


# ============================================================================ peak and timing
def alternate(ours: Callable, theirs: Callable, rounds: int, min_run_time: float) -> dict:
    """Per-round time ratios theirs / ours, the sides alternating which goes first."""
    speedups, times = [], {"ours": [], "theirs": []}
    for index in range(rounds):
        order = ("ours", "theirs") if index % 2 == 0 else ("theirs", "ours")
        this_round = {side: block_times(ours if side == "ours" else theirs, min_run_time) for side in order}
        for side, values in this_round.items():
            times[side] += values
        speedups.append(statistics.median(this_round["theirs"]) / statistics.median(this_round["ours"]))
        print(f"  round {index + 1}: speed-up {speedups[-1]:.3f}", flush=True)
    return {"speedup": statistics.median(speedups), "round_speedups": [round(s, 3) for s in speedups],
            "ours_ms": 1e3 * statistics.median(times["ours"]), "theirs_ms": 1e3 * statistics.median(times["theirs"])}


# ============================================================================ the benchmark
def build_pair(preset: str, batch: int, seq: int, device: str, seed: int):
    """transformers' model and ours with the same weights, and one batch both accept."""
    torch.manual_seed(seed)
    hf_model = to_hf(DSVLModel(DSVLConfig.from_name(preset))).to(device)
    ours = from_hf(hf_model).to(device)
    inputs = {k: v.to(device) for k, v in make_batch(ours.config, batch, seq, transformers_views=True).items()}
    with torch.no_grad():  # ours as it trains: the output head only where a label supervises (loss_only)
        gap = (ours.eval()(**inputs, loss_only=True).loss - hf_model.eval()(**inputs).loss).abs().item()
    if gap > 1e-4:
        raise SystemExit(f"ours and transformers disagree (loss gap {gap:.2e}); fix parity before timing")
    return ours, hf_model, inputs


def run(args: argparse.Namespace) -> dict:
    if DSVLConfig.from_name(args.preset).encoder == "sam":
        raise SystemExit("transformers has no SAM-only DeepSeek-VL; choose a -hybrid or -siglip preset")
    ours, theirs, inputs = build_pair(args.preset, args.batch, args.seq, args.device, args.seed)
    fused = args.fused == "on" or (args.fused == "auto" and args.device == "cuda")
    our_opt, their_opt = our_optimizer(ours, fused), reference_optimizer(theirs)
    our_inputs = {**inputs, "loss_only": True}  # our training step (training.module.batch_loss)
    started = time.perf_counter()
    if args.compile:  # torch.compile of our model only; compiling happens in make_step's warm-up step
        ours = torch.compile(ours)
    our_step = make_step(ours, our_opt, our_inputs, args.dtype, args.device)
    compile_s = round(time.perf_counter() - started, 1) if args.compile else None
    if args.compile:
        print(f"  compiled in {compile_s} s", flush=True)
    their_step = make_step(theirs, their_opt, inputs, args.dtype, args.device)
    peak = measure_peak_flops(DTYPES[args.dtype], device=args.device)  # MFU's denominator, here and now
    timing = alternate(our_step, their_step, args.rounds, args.min_run_time)
    flops = step_flops(ours.config, tuple(GROUPS), args.batch, args.seq)["total"]  # every group trains
    return {"benchmark": "train_step", "preset": args.preset, "dtype": args.dtype, "device": args.device,
            "batch": args.batch, "seq": args.seq, "fused_adamw": fused, "compiled": args.compile,
            "compile_s": compile_s,
            "speedup_vs_transformers": round(timing["speedup"], 3), "round_speedups": timing["round_speedups"],
            "ours_ms": round(timing["ours_ms"], 2), "transformers_ms": round(timing["theirs_ms"], 2),
            "step_flops": flops, "peak_flops": round(peak), "mfu": round(flops / (timing["ours_ms"] / 1e3) / peak, 4),
            "phases_ms": {"ours": phase_split(ours, our_opt, our_inputs, args.dtype, args.device),
                          "transformers": phase_split(theirs, their_opt, inputs, args.dtype, args.device)},
            "machine": machine(), "date": time.strftime("%Y-%m-%d")}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Example: python "
                                     "benchmarks/train_step.py --preset dsvl-tiny-hybrid --dtype fp32",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="dsvl-tiny-hybrid")
    parser.add_argument("--dtype", default="fp32", choices=tuple(DTYPES), help="fp32, or bf16 autocast")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128, help="tokens per sample, image tokens included")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--fused", default="auto", choices=("auto", "on", "off"),
                        help="our AdamW fused (auto: on CUDA only; on a CPU the harness keeps torch's default, "
                             "see bench_adamw.py)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile our model (inductor) before timing; the compile time is reported")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--min-run-time", type=float, default=1.0, help="seconds per side per round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=None, help="results file (default train_step-<preset>-<dtype>)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    result = run(args)
    print(f"{args.preset} {args.dtype}: ours {result['ours_ms']:.1f} ms, transformers {result['transformers_ms']:.1f}"
          f" ms, speed-up {result['speedup_vs_transformers']:.3f}, MFU {result['mfu']:.3f} "
          f"(peak {result['peak_flops'] / 1e9:.1f} GFLOP/s)")
    print(json.dumps(result))
    write_json_atomic(RESULTS / f"{args.name or f'train_step-{args.preset}-{args.dtype}'}.json", result)


if __name__ == "__main__":
    main()
