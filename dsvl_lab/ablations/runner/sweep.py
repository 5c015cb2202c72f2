"""Running a sweep: plan it, prepare its folder, hand the chains still to do to an executor, report.

:func:`run_sweep` is what ``dsvl-lab sweep`` calls; :func:`load_run_model` gives back a run's
trained model for inspection.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ...atomic import write_text_atomic
from ...run_folder import LOCK, owned
from ...training.handoff import load_stage_output, made_by
from ..slurm import run_submitit
from ..spec import SweepSpec
from .folders import stage_folder
from .local import run_local
from .plan import SweepPlan, plan_sweep
from .samples import AUTO, cache_for_runs, prebuild, sweep_cache_root


def prepare_root(plan: SweepPlan) -> None:
    """The study's run root with a copy of its YAML (what `dsvl-lab aggregate` reads)."""
    import yaml

    plan.root.mkdir(parents=True, exist_ok=True)
    text = plan.spec.path.read_text() if plan.spec.path is not None else \
        yaml.safe_dump(plan.spec.source, sort_keys=False)  # a study built in Python (a notebook)
    write_text_atomic(plan.root / "sweep.yaml", text)


def default_jobs() -> int:
    """One process per core, one thread each: measured fastest here (README "Ablation sweeps")."""
    return max(1, os.cpu_count() or 1)


def reuse_stages(plan: SweepPlan, source: str | Path, say: Callable[[str], None] = print) -> int:
    """Copy finished stage trainings of another study's run root that this plan needs.

    Stage folders are named by stage, seed and the hash of everything that decides them (preset,
    precision, every stage up to this one), so a folder of the same name in another study is the
    same training: e.g. the adaptor study's hybrid-MLP arm is the encoder study's hybrid arm.
    """
    import shutil

    copied = 0
    for node in plan.nodes:
        other = Path(source) / "stages" / node.folder.name
        if not made_by(node.folder, node.preset, node.spec) and made_by(other, node.preset, node.spec):
            shutil.rmtree(node.folder, ignore_errors=True)  # a partial training of the same stage
            shutil.copytree(other, node.folder, ignore=shutil.ignore_patterns(LOCK))  # the owner record is not the work
            copied += 1
    say(f"reused {copied} finished stage trainings from {source}")
    return copied


def run_sweep(spec: SweepSpec, out: str | Path = "runs/sweeps", smoke: bool = False, jobs: int | None = None,
              executor: str = "local", slurm: dict | None = None, say: Callable[[str], None] = print,
              seeds: list[int] | None = None, reuse_from: str | Path | None = None,
              sample_cache: str | Path | None = AUTO) -> SweepPlan:
    """Run every run of the study that is not done (of ``seeds`` only, if given); returns the plan.

    ``reuse_from``: another study's run root whose identical stage trainings are copied, not rerun.
    ``sample_cache``: the folder of rendered task samples the runs share (``samples.py``); ``"auto"``:
    ``DSVL_LAB_SAMPLE_CACHE`` when set, else ``<out>/sample-cache``; None or ``"off"``: none.
    """
    plan = plan_sweep(spec, out, smoke, seeds)
    cache = sweep_cache_root(out, sample_cache)
    # one driver per study folder; its workers own the stage and run folders and inherit the cache's name
    with owned(plan.root), cache_for_runs(cache):
        sweep_in(plan, jobs, executor, slurm, say, reuse_from, cache)
    return plan


def sweep_in(plan: SweepPlan, jobs: int | None, executor: str, slurm: dict | None, say: Callable[[str], None],
             reuse_from: str | Path | None, cache: Path | None = None) -> None:
    """The body of :func:`run_sweep`, run while the driver owns the study folder."""
    spec = plan.spec
    prepare_root(plan)
    if reuse_from:
        reuse_stages(plan, reuse_from, say)
    todo = plan.todo()
    done = sum(status == "done" for status in plan.status().values())
    say(f"study {spec.study}: {len(plan.runs)} runs, {done} already done, {len(todo)} chains to run in {plan.root}")
    if executor == "local":
        if cache is not None and todo:  # render what the runs will draw once, on all the jobs' cores
            prebuild(plan, cache, jobs or default_jobs(), say)
        run_local(plan, todo, jobs or default_jobs(), say)
    else:
        run_submitit(plan, todo, executor, {**spec.slurm, **(slurm or {})}, say)
    status = plan.status()
    failed = [name for name, s in status.items() if s == "failed"]
    say(f"study {spec.study}: {sum(s == 'done' for s in status.values())}/{len(status)} runs done"
        + (f"; failed: {', '.join(failed)} (see runs/<run>/error.json; run the command again to retry)"
           if failed else ""))


def load_run_model(plan: SweepPlan, arm: str, seed: int, stage: str | None = None):
    """The trained model of one run (its last stage, or ``stage``), checked against its hand-off card."""
    run = next((r for r in plan.runs if r.arm == arm and r.seed == seed), None)
    if run is None:
        raise KeyError(f"no run {arm} seed {seed} in study {plan.spec.study}; arms {list(plan.spec.arms)}")
    names = [s.name for s in run.stages]
    k = names.index(stage) if stage else len(names) - 1
    return load_stage_output(stage_folder(plan.root, run, k), names[k], run.preset, receiving="inspection")
