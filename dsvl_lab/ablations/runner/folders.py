"""The study's folder on disk: where each stage trains, and the files that say what became of a run.

``runs/<run>/result.json`` (the "done" marker, written atomically, naming the run's hash),
``error.json`` (why it failed; retried on the next invocation) and ``run.json`` (its resolved spec).
"""
from __future__ import annotations

import json
from pathlib import Path

from ...atomic import write_json_atomic
from ..spec import RunPlan

RESULT, ERROR, RUN_CARD = "result.json", "error.json", "run.json"


def stage_folder(root: Path, run: RunPlan, k: int) -> Path:
    """Where stage ``k`` of ``run`` trains: named by the stage, the seed and the prefix key."""
    return root / "stages" / f"{run.stages[k].name}-s{run.seed}-{run.prefix_key(k)}"


def run_status(root: Path, run: RunPlan) -> str:
    """``done`` (result.json of this very spec), ``failed`` (error.json) or ``pending``."""
    folder = root / "runs" / run.name
    result = read_json(folder / RESULT)
    if result is not None and result.get("hash") == run.hash:
        return "done"
    return "failed" if (folder / ERROR).is_file() else "pending"


def read_json(path: Path) -> dict | None:
    """A JSON file's content, or None when it is missing or damaged."""
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        return None  # a result file is written atomically, so this is damage: treat the run as not done


def write_run_card(root: Path, run: dict) -> None:
    """``runs/<run>/run.json``: the run's resolved spec, written when it is evaluated or fails."""
    write_json_atomic(root / "runs" / run["name"] / RUN_CARD,
                      {k: run[k] for k in ("name", "arm", "seed", "hash", "study", "resolved")})


def record_failure(root: Path, run: dict, message: str, trace: str) -> None:
    """``runs/<run>/error.json``: why the run failed, with the traceback; the next invocation retries it."""
    write_run_card(root, run)
    write_json_atomic(root / "runs" / run["name"] / ERROR, {"run": run["name"], "error": message, "traceback": trace})
