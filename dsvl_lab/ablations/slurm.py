"""The Slurm executor: the same chains and the same :func:`~.runner.execute_chain`, as submitit job arrays.

Chains go out in *waves*: every chain whose predecessor has finished is one task of a Slurm job
array (``slurm_array_parallelism`` of them at a time); the driver waits for the wave, then sends
the chains that waited on it. The folder layout is the local executor's, so a study started on a
laptop can be finished on a cluster (and the other way round): finished runs are skipped.

Executors: ``slurm`` (a real cluster: ``sbatch`` must be on the PATH), and submitit's own
stand-ins, which need no cluster: ``submitit-local`` (each task a local process, as a Slurm job
would be) and ``submitit-debug`` (in this process; for debugging). Settings come from the YAML's
``slurm:`` mapping and the command's flags: ``partition``, ``time_min``, ``gpus_per_run``,
``cpus_per_run``, ``array_parallelism``, ``mem_gb``.
"""
from __future__ import annotations

from typing import Callable

# The runner's submodules, not the package: the package's sweep.py imports this module, and
# importing ``.runner`` itself from here would close that loop.
from .runner.local import fail_downstream
from .runner.plan import Chain, SweepPlan
from .runner.worker import execute_chain

CLUSTERS = {"slurm": "slurm", "submitit-local": "local", "submitit-debug": "debug"}
SETTINGS = ("partition", "time_min", "gpus_per_run", "cpus_per_run", "array_parallelism", "mem_gb")


def make_executor(plan: SweepPlan, executor: str, settings: dict):
    import submitit

    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ValueError(f"slurm settings: unknown {unknown}; known: {', '.join(SETTINGS)}")
    if executor not in CLUSTERS:
        raise ValueError(f"unknown executor {executor!r}; choose local, {', '.join(CLUSTERS)}")
    pool = submitit.AutoExecutor(folder=str(plan.root / "submitit" / "%j"), cluster=CLUSTERS[executor])
    parameters = {"timeout_min": int(settings.get("time_min", 120)),
                  "cpus_per_task": int(settings.get("cpus_per_run", 2))}
    if executor == "slurm":
        parameters.update(slurm_array_parallelism=int(settings.get("array_parallelism", 16)),
                          gpus_per_node=int(settings.get("gpus_per_run", 0)))
        if settings.get("partition"):
            parameters["slurm_partition"] = settings["partition"]
        if settings.get("mem_gb"):
            parameters["mem_gb"] = int(settings["mem_gb"])
    pool.update_parameters(**parameters)
    return pool


def run_submitit(plan: SweepPlan, todo: list[Chain], executor: str, settings: dict,
                 say: Callable[[str], None]) -> None:
    """Send the chains in waves of job arrays and wait for each wave."""
    pool = make_executor(plan, executor, settings)
    threads = int(settings.get("cpus_per_run", 2))
    waiting, failed, wave = list(todo), set(), 0
    while waiting:
        busy = {id(chain) for chain in waiting}
        ready = [chain for chain in waiting if chain.after is None or id(chain.after) not in busy]
        for chain in [c for c in ready if c.after is not None and id(c.after) in failed]:
            fail_downstream(plan, chain, "an earlier stage of this run failed", failed)
            ready.remove(chain)
            waiting.remove(chain)
        if not ready:
            continue
        wave += 1
        payloads = [chain.payload(plan.root) for chain in ready]
        # No log redirection: submitit keeps each job's output in <root>/submitit/<job id>/.
        jobs = pool.map_array(execute_chain, payloads, [threads] * len(ready), [None] * len(ready))
        say(f"wave {wave}: {len(jobs)} chains sent ({executor}, job {jobs[0].job_id.split('_')[0]})")
        for chain, job in zip(ready, jobs):
            outcome = job.result()
            waiting.remove(chain)
            if outcome["failed"]:
                failed.add(id(chain))
            say(f"  {chain.name}: " + ("failed: " + "; ".join(outcome["failed"].values())
                                       if outcome["failed"] else "done"))
