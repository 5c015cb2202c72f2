"""The work of one chain, the same on every executor: train its stages, then evaluate the runs ending in them.

Nothing finished is redone: a stage whose ``model/stage.json`` matches its spec is skipped, a run
whose ``result.json`` matches its hash is skipped, and an interrupted stage resumes from its
``checkpoints/last.ckpt``. A failure is written to each affected run's ``error.json``, never raised.
"""
from __future__ import annotations

import os
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from ...atomic import write_json_atomic
from ...run_folder import owned
from ...training.handoff import made_by
from ...training.run import SMOKE_STEPS, run_stage
from ...training.spec import StageSpec
from .evaluation import evaluate_stage_output, stage_summary
from .folders import ERROR, RESULT, read_json, record_failure, write_run_card


def execute_chain(payload: dict, threads: int | None = None, log: str | None = None) -> dict:
    """Train a chain's stages and evaluate its runs; returns {"done": [...], "failed": {run: error}}.

    Runs in a worker process (local pool, Slurm job, or submitit's local/debug stand-ins). Failures
    are recorded in each affected run's ``error.json`` and returned; they never raise.
    """
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch

        torch.set_num_threads(threads)
    if not log:
        return train_and_evaluate(payload)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", buffering=1) as handle:
        # The worker is a fresh process of its own: point its file descriptors 1 and 2 at the log, so
        # that Lightning's handlers (made at import) and C-level output land there too.
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        with redirect_stdout(handle), redirect_stderr(handle):
            return train_and_evaluate(payload)


def train_and_evaluate(payload: dict) -> dict:
    """Each node of the chain in order: train it, then evaluate the runs ending in it; a failed stage fails
    every run after it in the chain."""
    root, outcome = Path(payload["root"]), {"done": [], "failed": {}}
    for index, node in enumerate(payload["nodes"]):
        try:
            train_node(node)
        except Exception as error:  # this node and everything after it in the chain fail
            message = f"stage {node['spec']['name']} ({node['folder']}) failed: {type(error).__name__}: {error}"
            for later in payload["nodes"][index:]:
                for run in later["runs"]:
                    record_failure(root, run, message, traceback.format_exc())
                    outcome["failed"][run["name"]] = message
            return outcome
        for run in node["runs"]:
            try:
                evaluate_run(root, run)
                outcome["done"].append(run["name"])
            except Exception as error:
                message = f"evaluation failed: {type(error).__name__}: {error}"
                record_failure(root, run, message, traceback.format_exc())
                outcome["failed"][run["name"]] = message
    return outcome


def train_node(node: dict) -> None:
    """One stage, unless its output is already there; resumes from its last checkpoint."""
    folder = Path(node["folder"])
    if made_by(folder, node["preset"], node["spec"]):
        print(f"{folder.name}: already trained, reused", flush=True)
        return
    started = time.perf_counter()
    spec = StageSpec(**node["spec"])
    # A few-step smoke stage validates once, at its end, and draws its batches in-process: both cost
    # more than its training (a validation after every step, a loader process to start).
    smoke = spec.steps <= SMOKE_STEPS
    run = run_stage(node["preset"], spec, folder, start=node["start"], progress=False, eval_samples=0,
                    throughput=False, precision=node["precision"],
                    **({"val_every": spec.steps, "num_workers": 0} if smoke else {}))
    timing = read_json(folder / "timing.json") or {"invocations": []}
    timing["invocations"].append({"seconds": round(time.perf_counter() - started, 1), "steps": run.steps,
                                  "resumed": run.resumed})
    write_json_atomic(folder / "timing.json", timing)


def evaluate_run(root: Path, run: dict) -> None:
    """Evaluate the run's stages (held-out questions of the seed's block), write result.json."""
    with owned(root / "runs" / run["name"]):
        evaluate_run_in(root, run)


def evaluate_run_in(root: Path, run: dict) -> None:
    """The body of :func:`evaluate_run`, run while the worker owns the run folder; a done run is skipped."""
    folder = root / "runs" / run["name"]
    existing = read_json(folder / RESULT)
    if existing is not None and existing.get("hash") == run["hash"]:
        return
    (folder / ERROR).unlink(missing_ok=True)
    write_run_card(root, run)
    stage_folders = {name: Path(path) for name, path in run["stage_folders"].items()}
    evaluation = run["resolved"]["evaluation"]
    metrics = {name: evaluate_stage_output(stage_folders[name], name, run["preset"], evaluation, run["seed"],
                                           run["resolved"]["precision"])
               for name in run["evaluated"]}
    result = {"study": run["study"], "arm": run["arm"], "seed": run["seed"], "hash": run["hash"],
              "preset": run["preset"], "metrics": metrics,
              "stages": {name: stage_summary(path) for name, path in stage_folders.items()}}
    write_json_atomic(folder / RESULT, result)
