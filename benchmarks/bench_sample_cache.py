"""What the shared sample cache (dsvl_lab.data.sample_cache) saves: rendering vs reading, per family and stage.

Two measurements, each a ratio of two sides timed back to back in alternating rounds (the median
of the per-round ratios is the figure; a busy moment on the shared machine inflates both sides of
one round and cancels out):

- per family and detail level, at 256 px (the tiny presets' world): milliseconds to render a
  sample (``generate_sample``) against milliseconds to read it back from the cache (``SampleCache.read``:
  the file, zlib, the PIL image), the milliseconds to write one (encode, atomic write) and the bytes
  an entry takes (of ``SampleCache`` itself: the runs' ``cached_sample`` renders scene/coarse, which is cheaper);
- per stage: building ``--steps`` training batches of the tiny hybrid stage data (``StageBatches``:
  draws, processor, padding; stage 2 from ``--first-step``, past its modality warm-up, so the mixture
  is the stage's 30% images) without the cache, against the same batches from a warm cache. The
  batches are checked equal in every round. The cold cache (render and write) is timed once, after a
  warm-up build, for its cost.

Prints one JSON line and writes ``benchmarks/results/bench_sample_cache.json`` (atomically).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from dsvl_lab.atomic import write_json_atomic
from dsvl_lab.data import sample_cache
from dsvl_lab.data.datamodule import DSVLDataModule
from dsvl_lab.data.sample_cache import ENV, SampleCache, SampleKey
from dsvl_lab.data.tasks import DETAILS, FAMILIES, generate_sample
from dsvl_lab.training.run import pipeline_specs

RESULTS = Path(__file__).resolve().parent / "results"
PRESET = "dsvl-tiny-hybrid"


def time_families(cache: SampleCache, n: int, rounds: int, size: int) -> list[dict]:
    """Render vs read, ms per sample, per family and detail (``rounds`` alternating rounds of ``n``)."""
    rows = []
    for family in FAMILIES:
        for detail in DETAILS:
            keys = [SampleKey(family, detail, size, seed) for seed in range(n)]
            for key in keys:  # fill the cache, and warm up fonts, matplotlib's figure and the page cache
                cache.get(key)
            render, read = [], []
            for r in range(rounds):
                sides = [("render", render), ("read", read)][:: 1 if r % 2 == 0 else -1]
                for side, times in sides:
                    start = time.perf_counter()
                    for key in keys:
                        if side == "render":
                            generate_sample(family, key.seed, detail=detail, image_size=size)
                        else:
                            cache.read(key)
                    times.append((time.perf_counter() - start) / n * 1000)
            samples = [generate_sample(family, key.seed, detail=detail, image_size=size) for key in keys]
            start = time.perf_counter()
            for sample in samples:  # encode and write atomically (over the existing entries)
                cache.write(sample)
            write_ms = (time.perf_counter() - start) / n * 1000
            size_bytes = statistics.mean(cache.path(key).stat().st_size for key in keys)
            rows.append({"family": family, "detail": detail, "render_ms": round(statistics.median(render), 3),
                         "read_ms": round(statistics.median(read), 3), "write_ms": round(write_ms, 3),
                         "speedup": round(statistics.median(a / b for a, b in zip(render, read)), 1),
                         "entry_kb": round(size_bytes / 1000, 1)})
    return rows


def build_batches(stage: str, first: int, steps: int) -> tuple[float, list[str]]:
    """Seconds to build ``steps`` batches of the stage from ``first``, and a fingerprint of each."""
    spec = next(s for s in pipeline_specs(PRESET) if s.name == stage)
    dm = DSVLDataModule(PRESET, spec.data, total_steps=spec.steps)
    dm.setup("fit")
    start = time.perf_counter()
    batches = [dm.train_batches[step] for step in range(first, first + steps)]
    seconds = time.perf_counter() - start
    prints = [str(hash((b["input_ids"].numpy().tobytes(), b["pixel_values"].numpy().tobytes()))) for b in batches]
    return seconds, prints


def time_stage(stage: str, first: int, steps: int, rounds: int, root: Path) -> dict:
    """Batches without the cache / from a warm cache, alternating rounds; the cold build timed once."""
    os.environ[ENV] = "off"
    build_batches(stage, first, steps)  # warm-up: fonts, matplotlib's figure, the processor's first calls
    os.environ[ENV] = str(root)
    cold, reference = build_batches(stage, first, steps)  # renders and writes every image
    plain, warm = [], []
    for r in range(rounds):
        for side in (["off", str(root)] if r % 2 == 0 else [str(root), "off"]):
            os.environ[ENV] = side
            seconds, prints = build_batches(stage, first, steps)
            if prints != reference:
                raise AssertionError(f"{stage}: batches differ with {ENV}={side}")
            (plain if side == "off" else warm).append(seconds)
    os.environ[ENV] = "off"
    return {"stage": stage, "steps": f"{first}..{first + steps - 1}", "no_cache_s": round(statistics.median(plain), 2),
            "cold_cache_s": round(cold, 2), "warm_cache_s": round(statistics.median(warm), 2),
            "speedup_warm": round(statistics.median(a / b for a, b in zip(plain, warm)), 2)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=40, help="samples per family and detail (default 40)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per side (default 3)")
    parser.add_argument("--steps", type=int, default=50, help="batches per stage (default 50)")
    parser.add_argument("--stage", action="append", default=None,
                        help="stage to time (repeatable; default stage1_adaptor and stage2_joint)")
    parser.add_argument("--first-step", type=int, default=100,
                        help="first stage-2 step (default 100: after its modality warm-up)")
    parser.add_argument("--name", default="bench_sample_cache", help="results file name")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sample-cache-bench-") as tmp:
        families = time_families(SampleCache(Path(tmp) / "families"), args.n, args.rounds, 256)
        stages = [time_stage(stage, args.first_step if stage == "stage2_joint" else 0, args.steps, args.rounds,
                             Path(tmp) / "stages") for stage in (args.stage or ["stage1_adaptor", "stage2_joint"])]
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "cpu_count": os.cpu_count(), "python": platform.python_version(),
                          "load_average_before": load_before, "load_average_after": os.getloadavg()},
              "format": sample_cache.FORMAT, "image_size": 256, "n": args.n, "rounds": args.rounds,
              "families": families, "stages": stages}
    write_json_atomic(RESULTS / f"{args.name}.json", report)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
