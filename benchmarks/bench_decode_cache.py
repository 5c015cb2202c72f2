"""Decode step of dsvl-1.3b (random bf16 weights, CPU) with three KV caches, alternated in one process.

- ``cat``: the cache as a list of (keys, values), each step ``torch.cat``-ing its position on (the
  model's plain ``past_key_values`` path);
- ``grow-bf16``: a ``GrowingCache`` in the model's dtype, each step written in place;
- ``grow-fp32``: a ``GrowingCache`` kept in fp32, what ``generate_from_cache`` uses on a CPU (one
  query's attention over a bf16 cache runs several times slower there than over fp32).

The prompt's cache is random (641 positions: one image and 64 prompt tokens), so no prefill is
needed. Prints one JSON line: the median step per cache and ``speedup`` (cat / grow-fp32).

    .venv/bin/python benchmarks/bench_decode_cache.py          # about 1 minute, 4 GB of memory
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from bench_model import machine
from inference import build

from dsvl_lab.atomic import write_json_atomic
from dsvl_lab.model.llm import GrowingCache

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ("cat", "grow-bf16", "grow-fp32")


def step_time(model, past, kind: str, steps: int) -> float:
    """Median seconds of a decode step (the first left out) with the cache ``kind``."""
    length = past[0][0].shape[2]
    mask = torch.ones(1, length, dtype=torch.long)
    cache = past if kind == "cat" else GrowingCache(past, room=steps,
                                                    dtype=torch.float32 if kind == "grow-fp32" else None)
    token, times = torch.tensor([[5]]), []
    for _ in range(steps):
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        start = time.perf_counter()
        out = model(inputs_embeds=model.language_model.embed(token), attention_mask=mask, past_key_values=cache,
                    use_cache=kind == "cat")
        times.append(time.perf_counter() - start)
        if kind == "cat":
            cache = out.past_key_values
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Example: python benchmarks/bench_decode_cache.py --rounds 4")
    parser.add_argument("--preset", default="dsvl-1.3b")
    parser.add_argument("--positions", type=int, default=641, help="cached positions (default 641)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds, each running the three caches in turn")
    parser.add_argument("--steps", type=int, default=6, help="decode steps per cache per round")
    args = parser.parse_args()
    model = build(args.preset, torch.bfloat16, torch.device("cpu")).eval()
    config = model.config.llm
    generator = torch.Generator().manual_seed(0)
    shape = (1, config.num_kv_heads, args.positions, config.head_dim)
    past = [(torch.randn(shape, generator=generator).bfloat16(), torch.randn(shape, generator=generator).bfloat16())
            for _ in range(config.num_layers)]
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    with torch.no_grad():
        for _ in range(args.rounds):
            for kind in KINDS:
                times[kind].append(step_time(model, past, kind, args.steps))
    median = {kind: 1e3 * statistics.median(values) for kind, values in times.items()}
    result = {"benchmark": "bench_decode_cache", "preset": args.preset, "positions": args.positions,
              "median_step_ms": {k: round(v, 1) for k, v in median.items()},
              "rounds_ms": {k: [round(1e3 * v, 1) for v in values] for k, values in times.items()},
              "speedup": round(median["cat"] / median["grow-fp32"], 3), "machine": machine(),
              "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(result))
    write_json_atomic(RESULTS / "bench_decode_cache.json", result)


if __name__ == "__main__":
    main()
