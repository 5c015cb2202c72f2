"""Which OpenMP wait policy should our processes run with on a small CPU?

torch's CPU kernels run on OpenMP threads. Between two parallel regions an idle OpenMP thread
*spins* (busy-waits) for a while before it sleeps, so that the next region starts a few
microseconds sooner. Alone on the machine that is a small gain; but when two processes each use
every core (a notebook beside a sweep, the tests beside a run), each one's spinning threads burn
the cores the other needs, and both crawl. The knobs (read once, when the OpenMP runtime starts,
i.e. before ``import torch``):

- ``OMP_WAIT_POLICY=PASSIVE``: idle threads sleep at once;
- ``GOMP_SPINCOUNT=N`` (GNU OpenMP, which torch's CPU wheels ship): spin N iterations, then sleep.

For each policy this trains stage 3 of ``dsvl-tiny-hybrid`` (fp32, from random weights) in two
situations: one process using every core (alone), and two such processes at once (a collision),
and reports the steps per second of all processes together (start-up left out; see
``bench_sweep_threads.py``, whose ``measure`` this reuses).

    python benchmarks/bench_thread_policy.py                      # about 8 minutes on 2 cores
    python benchmarks/bench_thread_policy.py --steps 30 --policies default PASSIVE
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from bench_sweep_threads import measure

POLICIES = {
    "default": {},
    "PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin10k": {"GOMP_SPINCOUNT": "10000"},
    "spin100k": {"GOMP_SPINCOUNT": "100000"},
}


def main() -> None:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--preset", default="dsvl-tiny-hybrid")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--policies", nargs="*", default=list(POLICIES), choices=list(POLICIES))
    parser.add_argument("--out", default="benchmarks/results/bench_thread_policy.json")
    args = parser.parse_args()
    rows = []
    for policy in args.policies:
        env = {k: v for k, v in os.environ.items() if k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        for key in env:  # the parent's own setting must not leak into the "default" measurement
            os.environ.pop(key)
        alone = measure(1, cores, args.steps, args.preset, args.precision, POLICIES[policy])
        pair = measure(2, cores, args.steps, args.preset, args.precision, POLICIES[policy])
        os.environ.update(env)
        rows.append({"policy": policy, "env": POLICIES[policy], "alone_steps_per_s": round(alone, 3),
                     "pair_steps_per_s_total": round(pair, 3)})
        print(f"{policy:>9}: alone {alone:.2f} steps/s, two at once {pair:.2f} steps/s in total", flush=True)
    reference = rows[0]
    for row in rows:
        row["alone_vs_first"] = round(row["alone_steps_per_s"] / reference["alone_steps_per_s"], 3)
        row["pair_vs_alone"] = round(row["pair_steps_per_s_total"] / row["alone_steps_per_s"], 3)
    result = {"benchmark": "bench_thread_policy", "cores": cores, "threads_per_process": cores, "preset": args.preset,
              "precision": args.precision, "stage": "stage3_sft", "steps": args.steps,
              "date": time.strftime("%Y-%m-%d"), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
