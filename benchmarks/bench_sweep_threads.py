"""How should a sweep split the cores: a few processes with many threads, or many with one each?

Trains the same stage (stage 3 of the miniature recipe on dsvl-tiny-hybrid, from random weights so
that nothing else is needed) in P processes at once, each with T torch threads, and reports the
training steps per second of all processes together (timed between step 10 and the last step, so
start-up is left out). The reference is one process using every core; the ratio is what
``dsvl-lab sweep --jobs`` gains or loses. Its default (one process per core, one thread each) is
the layout that measured fastest here.

    python benchmarks/bench_sweep_threads.py                 # layouts for this machine's cores
    python benchmarks/bench_sweep_threads.py --steps 60 --layouts 1x2 2x1 2x2
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time
from pathlib import Path


def train(threads: int, steps: int, preset: str, precision: str, queue, env: dict | None = None) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.update(env or {})  # e.g. OMP_WAIT_POLICY: read once, when torch's OpenMP runtime starts
    import lightning as L
    import torch

    torch.set_num_threads(threads)
    from dsvl_lab.training.run import run_stage
    from dsvl_lab.training.spec import stage_spec

    class Clock(L.Callback):
        marks: dict[int, float] = {}

        def on_train_batch_end(self, trainer, *args) -> None:
            self.marks[trainer.global_step] = time.perf_counter()

    spec = stage_spec("stage3_sft", steps=steps).replace(starts_from="random")
    clock = Clock()
    with tempfile.TemporaryDirectory() as folder:
        run_stage(preset, spec, folder, progress=False, eval_samples=0, throughput=False, extra_callbacks=[clock],
                  val_every=steps, checkpoint_every=10 * steps, precision=precision)
    queue.put((clock.marks[steps] - clock.marks[10], steps - 10))


def measure(processes: int, threads: int, steps: int, preset: str, precision: str, env: dict | None = None) -> float:
    """Steps per second of all processes together (``env``: extra environment of each process)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=train, args=(threads, steps, preset, precision, queue, env))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    results = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    return sum(n / seconds for seconds, n in results)


def main() -> None:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--preset", default="dsvl-tiny-hybrid")
    parser.add_argument("--precision", default="32-true", help="Lightning precision (default 32-true: see README)")
    parser.add_argument("--layouts", nargs="*", default=[f"1x{cores}", f"{cores}x1", f"{cores}x{cores}"],
                        help="PxT: P processes with T threads each (default: for this machine's cores)")
    parser.add_argument("--out", default="benchmarks/results/bench_sweep_threads.json")
    args = parser.parse_args()
    rows = []
    for layout in args.layouts:
        processes, threads = map(int, layout.split("x"))
        rate = measure(processes, threads, args.steps, args.preset, args.precision)
        rows.append({"layout": layout, "processes": processes, "threads": threads, "steps_per_s": round(rate, 3)})
        print(f"{processes} process(es) x {threads} thread(s): {rate:.2f} steps/s in total", flush=True)
    reference = rows[0]["steps_per_s"]
    for row in rows:
        row["ratio_to_first"] = round(row["steps_per_s"] / reference, 3)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"cores": cores, "preset": args.preset, "precision": args.precision,
                                          "stage": "stage3_sft", "steps": args.steps, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
