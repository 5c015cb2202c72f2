"""The local executor: a bounded pool of fresh processes, each running one chain at a time.

``--jobs`` processes, torch threads split so that jobs x threads never exceeds the cores; a chain
starts when the chain it continues has finished, and the chains after a failed one fail with it.
"""
from __future__ import annotations

import os
import time
from typing import Callable

from .folders import record_failure
from .plan import Chain, SweepPlan, run_payload
from .worker import execute_chain


def run_local(plan: SweepPlan, todo: list[Chain], jobs: int, say: Callable[[str], None]) -> None:
    """A bounded pool of fresh processes (spawn), threads split so that jobs x threads <= cores."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = max(1, (os.cpu_count() or 1) // jobs)
    waiting, running, finished_times = list(todo), {}, []
    failed_chains: set[int] = set()
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, max_tasks_per_child=1)
    say(f"local executor: {jobs} processes x {threads} torch threads; worker logs in {plan.root / 'logs'}")
    try:
        while waiting or running:
            for chain in ready_chains(waiting, running, todo):
                if chain.after is not None and id(chain.after) in failed_chains:
                    fail_downstream(plan, chain, "an earlier stage of this run failed", failed_chains)
                    waiting.remove(chain)
                    continue
                if len(running) >= jobs:
                    break
                waiting.remove(chain)
                log = str(plan.root / "logs" / f"{chain.nodes[-1].folder.name}.log")
                future = pool.submit(execute_chain, chain.payload(plan.root), threads, log)
                running[future] = (chain, time.perf_counter())
                say(f"[{elapsed(started)}] start  {chain.name}")
            if not running:
                continue
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                chain, chain_start = running.pop(future)
                outcome = future.result()
                finished_times.append(time.perf_counter() - chain_start)
                if outcome["failed"]:
                    failed_chains.add(id(chain))
                left = estimate_left(finished_times, len(waiting) + len(running), jobs)
                verdict = "failed: " + "; ".join(outcome["failed"].values()) if outcome["failed"] else "done"
                say(f"[{elapsed(started)}] finish {chain.name} in {clock(finished_times[-1])}: {verdict}; "
                    f"{len(waiting) + len(running)} chains left, about {left} to go")
    except KeyboardInterrupt:
        workers = list((getattr(pool, "_processes", None) or {}).values())  # before shutdown forgets them
        pool.shutdown(wait=False, cancel_futures=True)
        for process in workers:
            process.terminate()
        status = plan.status()
        say(f"\nstopped: {sum(s == 'done' for s in status.values())} finished runs are kept in {plan.root / 'runs'}; "
            f"interrupted stages resume from their checkpoints: run the same command again to continue")
        raise
    pool.shutdown(wait=True)


def ready_chains(waiting: list[Chain], running: dict, todo: list[Chain]) -> list[Chain]:
    """Chains whose predecessor is finished (not waiting, not running)."""
    busy = {id(chain) for chain in waiting} | {id(chain) for chain, _ in running.values()}
    return [chain for chain in list(waiting) if chain.after is None or id(chain.after) not in busy]


def fail_downstream(plan: SweepPlan, chain: Chain, why: str, failed_chains: set[int]) -> None:
    """Record every run of a chain that cannot start (an earlier chain failed) as failed, and the chain too."""
    for run in chain.runs:
        record_failure(plan.root, run_payload(run, plan.root), why, "")
    failed_chains.add(id(chain))


def estimate_left(durations: list[float], chains_left: int, jobs: int) -> str:
    """Time left: the mean chain so far x the chains left / the processes ("?" before the first finishes)."""
    if not durations:
        return "?"
    return clock(sum(durations) / len(durations) * chains_left / max(1, jobs))


def elapsed(started: float) -> str:
    return clock(time.perf_counter() - started)


def clock(seconds: float) -> str:
    """``12m05s``."""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"
