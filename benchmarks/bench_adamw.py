"""AdamW's implementations on and off: torch's default, ``foreach`` and ``fused``, for the harness's groups.

The issue asks to measure what torch gives (``torch.compile``, bf16 autocast, fused AdamW) on and
off. This times one ``optimizer.step()`` over every parameter of a preset, with the harness's groups
(``harness.optim.decay_groups``: matrices decay, vectors do not) and random gradients, for each
implementation, in alternating rounds (the best of each round's mean; a busy moment on a shared
machine inflates one round, not the figure). It also says how far each implementation's weights end
from the default's after ``--check-steps`` steps from the same start and gradients: the fused kernel
rounds differently, so it changes every seeded result in its last bits.

Prints one JSON line and writes ``benchmarks/results/bench_adamw.json`` (atomically).

Example: python benchmarks/bench_adamw.py --presets dsvl-tiny-hybrid dsvl-small-hybrid
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from bench_model import machine

from dsvl_lab.atomic import write_json_atomic
from dsvl_lab.harness.optim import decay_groups
from dsvl_lab.model import DSVLModel

RESULTS = Path(__file__).resolve().parent / "results"
# None is torch's choice when nothing is asked: on a CPU a loop over the tensors, on CUDA foreach.
IMPLEMENTATIONS = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def adamw(params: list[torch.nn.Parameter], implementation: str) -> torch.optim.AdamW:
    groups = decay_groups([(str(i), p) for i, p in enumerate(params)], weight_decay=0.1, lr=1e-4)
    return torch.optim.AdamW(groups, betas=(0.9, 0.95), **IMPLEMENTATIONS[implementation])


def step_ms(params: list[torch.nn.Parameter], implementations, rounds: int, steps: int) -> dict[str, float]:
    """Milliseconds per ``step()`` of each implementation: the best of ``rounds`` alternating rounds."""
    for param in params:
        param.grad = torch.randn_like(param) * 1e-3
    optimizers = {name: adamw(params, name) for name in implementations}
    best = dict.fromkeys(implementations, float("inf"))
    for optimizer in optimizers.values():  # warm-up: the state (exp_avg, exp_avg_sq) is created here
        optimizer.step()
    for _ in range(rounds):
        for name, optimizer in optimizers.items():
            started = time.perf_counter()
            for _ in range(steps):
                optimizer.step()
            best[name] = min(best[name], (time.perf_counter() - started) / steps * 1e3)
    return {name: round(ms, 2) for name, ms in best.items()}


def drift_from_default(start: list[torch.Tensor], implementations, steps: int) -> dict[str, float]:
    """Largest absolute weight difference from the default implementation after ``steps`` equal steps."""
    finals = {}
    for name in implementations:
        params = [torch.nn.Parameter(tensor.clone()) for tensor in start]
        optimizer, generator = adamw(params, name), torch.Generator().manual_seed(1)
        for _ in range(steps):
            for param in params:
                param.grad = torch.randn(param.shape, generator=generator) * 1e-3
            optimizer.step()
        finals[name] = [param.detach() for param in params]
    return {name: max((a - b).abs().max().item() for a, b in zip(finals["default"], finals[name]))
            for name in implementations}


def run(preset: str, rounds: int, steps: int, check_steps: int) -> dict:
    torch.manual_seed(0)
    model = DSVLModel.from_name(preset)
    params = list(model.parameters())
    times = step_ms(params, IMPLEMENTATIONS, rounds, steps)
    return {"preset": preset, "parameters": sum(p.numel() for p in params), "step_ms": times,
            "fused_speedup_vs_default": round(times["default"] / times["fused"], 2),
            "max_weight_difference_vs_default": drift_from_default(
                [p.detach() for p in params], IMPLEMENTATIONS, check_steps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Example: python "
                                     "benchmarks/bench_adamw.py --presets dsvl-tiny-hybrid dsvl-small-hybrid",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["dsvl-tiny-hybrid", "dsvl-small-hybrid"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per round and implementation")
    parser.add_argument("--check-steps", type=int, default=20, help="steps before comparing the weights")
    parser.add_argument("--name", default="bench_adamw", help="results file name")
    args = parser.parse_args()
    rows = []
    for preset in args.presets:
        rows.append(run(preset, args.rounds, args.steps, args.check_steps))
        print(f"{preset}: {rows[-1]['step_ms']} ms a step, fused {rows[-1]['fused_speedup_vs_default']}x the"
              f" default; weights after {args.check_steps} steps differ by up to "
              f"{rows[-1]['max_weight_difference_vs_default']}", flush=True)
    result = {"benchmark": "bench_adamw", "rows": rows, "threads": torch.get_num_threads(),
              "machine": machine(), "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(result))
    write_json_atomic(RESULTS / f"{args.name}.json", result)


if __name__ == "__main__":
    main()
