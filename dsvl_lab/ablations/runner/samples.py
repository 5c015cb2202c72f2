"""The sweep's shared sample cache: where it lives, what a sweep draws, and rendering it before the runs.

Every arm of a seed draws the same task samples (``mixing.draw_seed`` knows the run's seed, the
step and the slot, not the arm), and every run of a seed answers the same evaluation questions. So
a sweep keeps one cache of rendered samples (``dsvl_lab.data.sample_cache``) in
``<out>/sample-cache/``, beside the studies' folders: shared by all arms, seeds and studies under
``<out>``. Before the local executor starts the runs, the driver renders what the runs still
need, in ``--jobs`` processes with a progress bar; then the runs only read. The cache is named to
the runs through ``DSVL_LAB_SAMPLE_CACHE`` (inherited by their processes and their loader
workers, and by Slurm jobs, whose environment is the driver's); it never enters a run's hash.

``DSVL_LAB_SAMPLE_CACHE`` set before the sweep chooses another folder (or ``off``: no cache).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ...config import DSVLConfig
from ...data.datamodule import stage_sample_keys
from ...data.sample_cache import AUTO, CACHE_FOLDER, SampleKey, build, named_in_env, open_cache, resolve_root
from ...data.stage_data import world_image_size
from ...metrics.vl_eval import eval_sample_keys
from ...training.handoff import made_by
from ...training.spec import StageSpec
from ..spec import EVAL_BLOCK, RunPlan
from .plan import SweepPlan

def sweep_cache_root(out: str | Path, choice: str | Path | None = AUTO) -> Path | None:
    """Where a sweep under ``out`` keeps its samples; None for no cache.

    ``choice``: ``"auto"`` (``DSVL_LAB_SAMPLE_CACHE`` when set, else ``<out>/sample-cache``), a
    folder, or None / ``"off"``.
    """
    return resolve_root(choice, Path(out) / CACHE_FOLDER)


cache_for_runs = named_in_env  # the runs' processes inherit the variable


def evaluation_keys(run: RunPlan) -> set[SampleKey]:
    """The held-out questions a run is evaluated on (its seed's block), at its model's world size."""
    size = world_image_size(DSVLConfig.from_name(run.preset))
    e = run.evaluation
    return eval_sample_keys(e.families, e.details, e.samples, size, first=run.seed * EVAL_BLOCK)


def sweep_sample_keys(plan: SweepPlan) -> set[SampleKey]:
    """What the sweep still draws: the batches of every stage not trained yet, and the evaluation
    sets of every run not done yet. Found from the specs alone, without building a model."""
    keys: set[SampleKey] = set()
    for node in plan.nodes:
        if not made_by(node.folder, node.preset, node.spec):
            spec = StageSpec(**node.spec)
            keys |= stage_sample_keys(DSVLConfig.from_name(node.preset), spec.data, spec.steps)
    status = plan.status()
    for run in plan.runs:
        if status[run.name] != "done":
            keys |= evaluation_keys(run)
    return keys


def prebuild(plan: SweepPlan, root: Path, workers: int, say: Callable[[str], None] = print) -> dict[str, int]:
    """Render every sample the sweep still needs into the cache at ``root`` (``workers`` processes)."""
    keys = sweep_sample_keys(plan)
    cache = open_cache(str(root))
    say(f"sample cache {cache.folder}: rendering what the runs will draw, in {workers} processes")
    stats = build(cache, keys, workers=workers)
    say(f"sample cache: {stats['samples']} samples, {stats['present']} already there, {stats['rendered']} rendered")
    return stats
