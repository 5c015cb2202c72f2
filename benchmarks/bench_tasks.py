"""Generation speed of the task families (dsvl_lab.data.tasks) against the issue's target.

Target (from the issue): generating 1,000 samples of any family, at either detail level, takes
under 20 s on the 2-core development machine. This is an absolute target, so the benchmark
guards against the shared machine's noise in two ways:
- the samples of every (family, detail) are generated in several rounds, round-robin across all
  of them, so a busy moment on the machine spreads over every row instead of ruining one;
- it reports both wall time and this process's CPU time. Generation is single-threaded (PIL,
  numpy, matplotlib's Agg), so CPU time is what a sample costs; wall time also counts the time
  spent waiting while other processes had the cores. The verdict uses the CPU time, the load
  average is printed beside it.

Results print as a table and are written (atomically) to ``benchmarks/results/bench_tasks.json``.
The exit status is 1 when a row misses the target.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from dsvl_lab.data.tasks import DETAILS, FAMILIES, generate_sample
from dsvl_lab.atomic import write_json_atomic

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_S = 20.0  # seconds per 1,000 samples
EXAMPLE = """Examples:
  python benchmarks/bench_tasks.py                          # 1,000 samples per family and detail (~40 s)
  python benchmarks/bench_tasks.py --n 200 --family chart   # a quick look at one family
  python benchmarks/bench_tasks.py --image-size 384         # the small presets' image size
"""


def time_rounds(jobs: list[tuple[str, str]], n: int, rounds: int, image_size: int) -> dict:
    """Generate ``n`` samples per job in ``rounds`` round-robin chunks; per job: wall and CPU seconds."""
    for family, detail in jobs:  # warm-up: fonts, matplotlib's figure, imports
        generate_sample(family, 10**9, detail=detail, image_size=image_size)
    per_round = [n // rounds + (1 if r < n % rounds else 0) for r in range(rounds)]
    times = {job: {"wall": [], "cpu": [], "count": []} for job in jobs}
    seed = 0
    for count in per_round:
        for job in jobs:
            wall, cpu = time.perf_counter(), time.process_time()
            for s in range(seed, seed + count):
                generate_sample(job[0], s, detail=job[1], image_size=image_size)
            times[job]["wall"].append(time.perf_counter() - wall)
            times[job]["cpu"].append(time.process_time() - cpu)
            times[job]["count"].append(count)
        seed += count
    return times


def summarise(times: dict) -> list[dict]:
    rows = []
    for (family, detail), t in times.items():
        # Per-round seconds per sample, median over rounds, scaled to 1,000 samples.
        wall = 1000 * statistics.median(w / c for w, c in zip(t["wall"], t["count"]))
        cpu = 1000 * statistics.median(c_ / c for c_, c in zip(t["cpu"], t["count"]))
        rows.append({"family": family, "detail": detail, "samples": sum(t["count"]),
                     "samples_per_s_wall": round(1000 / wall, 1), "samples_per_s_cpu": round(1000 / cpu, 1),
                     "projected_1000_wall_s": round(wall, 2), "projected_1000_cpu_s": round(cpu, 2),
                     "target_s": TARGET_S, "ok": cpu < TARGET_S})
    return rows


def print_table(rows: list[dict]) -> None:
    header = (f"{'family':8s} {'detail':7s} {'samples':>7s} {'samples/s':>10s} {'1,000 in (cpu)':>14s} "
              f"{'1,000 in (wall)':>15s} {'target':>7s}  ok")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['family']:8s} {r['detail']:7s} {r['samples']:7d} {r['samples_per_s_cpu']:10.1f} "
              f"{r['projected_1000_cpu_s']:12.1f} s {r['projected_1000_wall_s']:13.1f} s "
              f"{'< ' + str(int(r['target_s'])) + ' s':>7s}  {'PASS' if r['ok'] else 'FAIL'}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EXAMPLE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="samples per family and detail (default: 1000)")
    parser.add_argument("--rounds", type=int, default=4, help="round-robin rounds the samples are split into")
    parser.add_argument("--family", action="append", choices=FAMILIES, help="family to time (repeat; default all)")
    parser.add_argument("--detail", action="append", choices=DETAILS, help="detail level (repeat; default both)")
    parser.add_argument("--image-size", type=int, default=256, help="image side in pixels (default: 256)")
    parser.add_argument("--name", default="bench_tasks", help="results file name (default: bench_tasks)")
    args = parser.parse_args(argv)
    if args.n < args.rounds or args.rounds < 1:
        parser.error(f"--n ({args.n}) must be at least --rounds ({args.rounds}), and --rounds at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    jobs = [(f, d) for f in (args.family or FAMILIES) for d in (args.detail or DETAILS)]
    load_before = os.getloadavg()
    print(f"generating {args.n} samples x {len(jobs)} (family, detail) at {args.image_size} px in "
          f"{args.rounds} round-robin rounds; load average {load_before[0]:.2f}", flush=True)
    start = time.perf_counter()
    rows = summarise(time_rounds(jobs, args.n, args.rounds, args.image_size))
    seconds = time.perf_counter() - start
    print_table(rows)
    load_after = os.getloadavg()
    print(f"total {seconds:.0f} s; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
          f"({os.cpu_count()} cores)")
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
              "command": "python benchmarks/bench_tasks.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "cpu_count": os.cpu_count(), "python": platform.python_version(),
                          "load_average_before": load_before, "load_average_after": load_after},
              "n": args.n, "rounds": args.rounds, "image_size": args.image_size, "seconds": round(seconds, 1),
              "rows": rows}
    path = RESULTS / f"{args.name}.json"
    write_json_atomic(path, report)
    print(f"results written to {path}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
