"""Running a study: runs -> a tree of stage trainings -> chains of work, on local processes or Slurm.

Folder layout of ``<out>/<study>/`` (``<study>-smoke`` for ``--smoke``)::

    sweep.yaml                     the study's YAML, copied at the start (aggregate reads it)
    stages/<stage>-s<seed>-<key>/  one stage's training (a run_stage folder: logs/, checkpoints/,
                                   model/ with its hand-off card); <key> hashes the preset and the
                                   stages up to this one, so arms that share earlier stages share it
    runs/<arm>-s<seed>-<hash>/     one run: run.json (its resolved spec), result.json (the "done"
                                   marker, written atomically) or error.json (why it failed)
    logs/<chain>.log               what a worker printed

and ``<out>/sample-cache/``: the rendered task samples, shared by every arm, seed and study under ``<out>``.

The stage trainings of one seed form a tree (identical prefixes are one node). A *chain* is a path
of that tree that one process trains in a row, then evaluates the runs ending in it; a chain waits
for the chain that trains its first stage's parent. The same :func:`execute_chain` runs on every
executor: a local process pool (``--jobs`` processes, torch threads split so jobs x threads never
exceeds the cores) or submitit (Slurm job arrays, one array per wave of ready chains).

Nothing finished is redone: a stage whose ``model/stage.json`` matches its spec is skipped, a run
whose ``result.json`` matches its hash is skipped, an interrupted stage resumes from its
``checkpoints/last.ckpt``, and a failed run is retried on the next invocation.

One file per step, each using only the ones above it:

* ``folders.py``: the folder layout above and the files that record a run (``result.json``, ...);
* ``plan.py``: runs -> stage tree -> chains (:func:`plan_sweep`) and the ``--dry-run`` listing;
* ``evaluation.py``: measuring a trained stage (:func:`evaluate_stage_output`);
* ``worker.py``: :func:`execute_chain`, one chain's training and evaluation;
* ``local.py``: the local executor (:func:`run_local`); the Slurm one is ``ablations/slurm.py``;
* ``samples.py``: the runs' shared cache of rendered task samples (:func:`prebuild`, :func:`sweep_cache_root`);
* ``sweep.py``: :func:`run_sweep`, the whole sweep, and :func:`load_run_model`.

Everything is importable from ``dsvl_lab.ablations.runner`` directly.
"""
from __future__ import annotations

from .evaluation import evaluate_stage_output, foundation_language, stage_summary
from .folders import ERROR, RESULT, RUN_CARD, read_json, record_failure, run_status, stage_folder, write_run_card
from .local import clock, elapsed, estimate_left, fail_downstream, ready_chains, run_local
from .plan import (Chain, StageNode, SweepPlan, build_chains, build_tree, describe, descendants_runs, plan_sweep,
                   run_payload)
from .samples import cache_for_runs, prebuild, sweep_cache_root, sweep_sample_keys
from .sweep import default_jobs, load_run_model, prepare_root, reuse_stages, run_sweep, sweep_in
from .worker import evaluate_run, evaluate_run_in, execute_chain, train_and_evaluate, train_node

# Names this module imported for its own use before it became a package; still importable from it.
from ...atomic import write_json_atomic, write_text_atomic  # noqa: F401
from ...run_folder import LOCK, owned  # noqa: F401
from ...training.handoff import made_by  # noqa: F401
from ...training.run import SMOKE_STEPS  # noqa: F401
from ..spec import EVAL_BLOCK, RunPlan, SweepSpec  # noqa: F401

__all__ = [
    "run_sweep", "plan_sweep", "describe", "load_run_model", "execute_chain", "SweepPlan", "Chain", "StageNode",
    "RESULT", "ERROR", "RUN_CARD", "read_json", "run_status", "stage_folder", "run_payload", "build_tree",
    "build_chains", "descendants_runs", "record_failure", "write_run_card", "evaluate_stage_output",
    "foundation_language", "stage_summary", "train_and_evaluate", "train_node",
    "evaluate_run", "evaluate_run_in", "run_local", "ready_chains", "fail_downstream", "estimate_left",
    "elapsed", "clock", "prepare_root", "default_jobs", "reuse_stages", "sweep_in",
    "prebuild", "sweep_cache_root", "sweep_sample_keys", "cache_for_runs",
]
