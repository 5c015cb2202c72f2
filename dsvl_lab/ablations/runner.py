"""Running a study: runs -> a tree of stage trainings -> chains of work, on local processes or Slurm.

Folder layout of ``<out>/<study>/`` (``<study>-smoke`` for ``--smoke``)::

    sweep.yaml                     the study's YAML, copied at the start (aggregate reads it)
    stages/<stage>-s<seed>-<key>/  one stage's training (a run_stage folder: logs/, checkpoints/,
                                   model/ with its hand-off card); <key> hashes the preset and the
                                   stages up to this one, so arms that share earlier stages share it
    runs/<arm>-s<seed>-<hash>/     one run: run.json (its resolved spec), result.json (the "done"
                                   marker, written atomically) or error.json (why it failed)
    logs/<chain>.log               what a worker printed

The stage trainings of one seed form a tree (identical prefixes are one node). A *chain* is a path
of that tree that one process trains in a row, then evaluates the runs ending in it; a chain waits
for the chain that trains its first stage's parent. The same :func:`execute_chain` runs on every
executor: a local process pool (``--jobs`` processes, torch threads split so jobs x threads never
exceeds the cores) or submitit (Slurm job arrays, one array per wave of ready chains).

Nothing finished is redone: a stage whose ``model/stage.json`` matches its spec is skipped, a run
whose ``result.json`` matches its hash is skipped, an interrupted stage resumes from its
``checkpoints/last.ckpt``, and a failed run is retried on the next invocation.
"""
from __future__ import annotations

import functools
import json
import os
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..atomic import write_json_atomic, write_text_atomic
from ..run_folder import LOCK, owned
from ..training.handoff import made_by
from ..training.run import SMOKE_STEPS
from .spec import EVAL_BLOCK, RunPlan, SweepSpec

RESULT, ERROR, RUN_CARD = "result.json", "error.json", "run.json"


# ============================================================================ the plan: stage nodes and chains
@dataclass
class StageNode:
    """One stage training of the tree: trained once, whatever number of runs continue it."""

    key: str
    folder: Path
    preset: str
    precision: str
    spec: dict
    parent: "StageNode | None"
    children: list["StageNode"] = field(default_factory=list)
    runs: list[RunPlan] = field(default_factory=list)  # runs whose last stage this is


@dataclass
class Chain:
    """Stage nodes trained one after the other in one process, then the runs ending in them evaluated."""

    name: str
    nodes: list[StageNode]
    after: "Chain | None" = None  # the chain that must finish first

    @property
    def runs(self) -> list[RunPlan]:
        return [run for node in self.nodes for run in node.runs]

    def payload(self, root: Path) -> dict:
        """What a worker needs, as plain data (picklable for processes and Slurm)."""
        return {"root": str(root), "name": self.name,
                "nodes": [{"folder": str(n.folder), "preset": n.preset, "spec": n.spec, "precision": n.precision,
                           "start": str(n.parent.folder) if n.parent else None,
                           "runs": [run_payload(r, root) for r in n.runs]} for n in self.nodes]}


def stage_folder(root: Path, run: RunPlan, k: int) -> Path:
    """Where stage ``k`` of ``run`` trains: named by the stage, the seed and the prefix key."""
    return root / "stages" / f"{run.stages[k].name}-s{run.seed}-{run.prefix_key(k)}"


def run_payload(run: RunPlan, root: Path) -> dict:
    return {"name": run.name, "arm": run.arm, "seed": run.seed, "hash": run.hash, "study": run.study,
            "preset": run.preset, "resolved": run.resolved(), "evaluated": list(run.evaluated_stages),
            "stage_folders": {s.name: str(stage_folder(root, run, k)) for k, s in enumerate(run.stages)}}


def build_tree(runs: list[RunPlan], root: Path) -> list[StageNode]:
    """All stage nodes, parents before children; identical prefixes (same key) are one node."""
    nodes: dict[str, StageNode] = {}
    for run in runs:
        parent = None
        for k, stage in enumerate(run.stages):
            key = run.prefix_key(k)
            if key not in nodes:
                nodes[key] = StageNode(key, stage_folder(root, run, k), run.preset, run.precision, stage.to_dict(), parent)
                if parent is not None:
                    parent.children.append(nodes[key])
            parent = nodes[key]
        parent.runs.append(run)
    return list(nodes.values())


def build_chains(nodes: list[StageNode]) -> list[Chain]:
    """Cut the tree into chains: a node joins its parent's chain when it is the parent's only child."""
    chain_of: dict[str, Chain] = {}
    chains: list[Chain] = []
    for node in nodes:  # parents come first
        parent = node.parent
        if parent is not None and len(parent.children) == 1:
            chain = chain_of[parent.key]
            chain.nodes.append(node)
        else:
            chain = Chain(name="", nodes=[node], after=chain_of[parent.key] if parent else None)
            chains.append(chain)
        chain_of[node.key] = chain
    for chain in chains:
        chain.name = chain.nodes[-1].folder.name if not chain.runs else "+".join(r.name for r in chain.runs)
    return chains


# ============================================================================ status on disk
def run_status(root: Path, run: RunPlan) -> str:
    """``done`` (result.json of this very spec), ``failed`` (error.json) or ``pending``."""
    folder = root / "runs" / run.name
    result = read_json(folder / RESULT)
    if result is not None and result.get("hash") == run.hash:
        return "done"
    return "failed" if (folder / ERROR).is_file() else "pending"


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        return None  # a result file is written atomically, so this is damage: treat the run as not done


# ============================================================================ the run function (every executor)
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
    from ..training.run import run_stage
    from ..training.spec import StageSpec

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


def evaluate_stage_output(folder: Path, stage: str, preset: str, evaluation: dict, seed: int,
                          precision: str = "32-true") -> dict[str, float]:
    """Option accuracy per ``family/detail``, their means per detail, and language retention."""
    import torch

    from ..data.lm_eval import language_retention
    from ..metrics.vl_eval import evaluate_vl
    from ..processor import DSVLProcessor
    from ..training.handoff import load_stage_output, model_folder, read_card

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_stage_output(folder, stage, preset, receiving="evaluation").to(device).eval()  # checksum checked
    processor = DSVLProcessor.from_config(model.config)
    prompt_format = read_card(model_folder(folder))["spec"]["prompt_format"]
    with torch.no_grad(), autocast_as_trained(device, precision):
        scores = evaluate_vl(model, processor, families=evaluation["families"], details=evaluation["details"],
                             n=evaluation["samples"], prompt_format=prompt_format,
                             generate=evaluation["generate"], first=seed * EVAL_BLOCK)
        language = language_retention(model, processor) if evaluation["language"] else {}
    metrics: dict[str, float] = {}
    for key, score in scores.items():
        metrics[key] = score["option_accuracy"]
        metrics[f"{key}/chance"] = score["chance"]
        if evaluation["generate"]:
            metrics[f"{key}/exact_match"] = score["exact_match"]
    for detail in evaluation["details"]:
        cells = [metrics[f"{family}/{detail}"] for family in evaluation["families"]]
        metrics[f"mean/{detail}"] = sum(cells) / len(cells)
    if language:
        metrics["text_perplexity"] = language["perplexity"]
        metrics["cloze_accuracy"] = language["cloze_accuracy"]
        reference = foundation_language(preset, precision, device)
        if reference:  # language retention as a change from the LM the run started with
            metrics["text_perplexity_rise"] = language["perplexity"] / reference["perplexity"] - 1
            metrics["cloze_change"] = language["cloze_accuracy"] - reference["cloze_accuracy"]
    return {key: round(float(value), 6) for key, value in metrics.items()}


def autocast_as_trained(device: str, precision: str):
    """Autocast as in training (Lightning's bf16-mixed / 16-mixed); none in fp32."""
    import torch

    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    return torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None)


@functools.lru_cache(maxsize=4)
def foundation_language(preset: str, precision: str, device: str) -> dict | None:
    """Held-out perplexity and cloze of the shipped foundation LM a run of ``preset`` starts from (the
    LLM that stage 1 leaves frozen), measured as the runs are; None for presets without one (micro)."""
    import torch

    from ..data.lm_eval import language_retention
    from ..foundation.common import FoundationError
    from ..foundation.run import from_foundation
    from ..processor import DSVLProcessor

    try:
        model = from_foundation(preset).to(device).eval()
    except FoundationError:
        return None
    with torch.no_grad(), autocast_as_trained(device, precision):
        return language_retention(model, DSVLProcessor.from_config(model.config))


def stage_summary(folder: Path) -> dict:
    """Steps, wall seconds (all invocations) and the logged curves (train/, val/ and lang/) of one stage, for curves and costs."""
    from ..foundation.common import read_metrics

    timing = read_json(folder / "timing.json") or {"invocations": []}
    rows = read_metrics(folder)
    curves: dict[str, list] = {}
    for row in rows:
        for key, value in row.items():
            if key.startswith(("train/", "val/", "lang/")) and key != "train/lr" and "step" in row:
                curves.setdefault(key, []).append([int(row["step"]), round(value, 5)])
    card = read_json(folder / "model" / "stage.json") or {}
    spec = card.get("spec", {})
    samples = spec.get("steps", 0) * spec.get("data", {}).get("batch_size", 0)  # trained samples, for throughput
    return {"folder": folder.name, "seconds": round(sum(i["seconds"] for i in timing["invocations"]), 1),
            "samples": samples, "curves": curves}


def write_run_card(root: Path, run: dict) -> None:
    """``runs/<run>/run.json``: the run's resolved spec, written when it is evaluated or fails."""
    write_json_atomic(root / "runs" / run["name"] / RUN_CARD,
                      {k: run[k] for k in ("name", "arm", "seed", "hash", "study", "resolved")})


def record_failure(root: Path, run: dict, message: str, trace: str) -> None:
    write_run_card(root, run)
    write_json_atomic(root / "runs" / run["name"] / ERROR, {"run": run["name"], "error": message, "traceback": trace})


# ============================================================================ the sweep
@dataclass
class SweepPlan:
    spec: SweepSpec
    root: Path
    runs: list[RunPlan]
    nodes: list[StageNode]
    chains: list[Chain]

    def status(self) -> dict[str, str]:
        return {run.name: run_status(self.root, run) for run in self.runs}

    def todo(self) -> list[Chain]:
        """Chains with a run not done yet (failed runs are retried)."""
        status = self.status()
        return [chain for chain in self.chains if any(status[r.name] != "done" for r in chain.runs)
                or any(status[r.name] != "done" for r in descendants_runs(chain, self.chains))]


def descendants_runs(chain: Chain, chains: list[Chain]) -> list[RunPlan]:
    found, frontier = [], [chain]
    while frontier:
        current = frontier.pop()
        for other in chains:
            if other.after is current:
                found += other.runs
                frontier.append(other)
    return found


def plan_sweep(spec: SweepSpec, out: str | Path, smoke: bool = False, seeds: list[int] | None = None) -> SweepPlan:
    root = Path(out) / (spec.study + ("-smoke" if smoke else ""))
    runs = spec.runs(smoke, seeds)
    nodes = build_tree(runs, root)
    return SweepPlan(spec, root, runs, nodes, build_chains(nodes))


def describe(plan: SweepPlan) -> str:
    """The --dry-run listing: every run and its status, and the stage trainings that are shared."""
    status = plan.status()
    lines = [f"study {plan.spec.study}: {len(plan.runs)} runs ({len(plan.spec.arms)} arms x "
             f"{len(plan.runs) // max(1, len(plan.spec.arms))} seeds) in {plan.root}"]
    for run in plan.runs:
        lines.append(f"  {status[run.name]:8s} {run.name:32s} {run.preset}  "
                     f"{' -> '.join(f'{s.name}({s.steps})' for s in run.stages)}")
    shared = [n for n in plan.nodes if len(n.children) > 1 or (n.children and n.runs)]
    trained = sum(made_by(n.folder, n.preset, n.spec) for n in plan.nodes)
    lines.append(f"{len(plan.nodes)} stage trainings for {sum(len(r.stages) for r in plan.runs)} run stages "
                 f"({trained} already trained); shared:")
    lines += [f"  {n.folder.name} -> {len(n.children) + bool(n.runs)} continuations" for n in shared] or ["  none"]
    lines.append(f"{len(plan.chains)} chains of work; done {sum(s == 'done' for s in status.values())}, "
                 f"failed {sum(s == 'failed' for s in status.values())}, "
                 f"pending {sum(s == 'pending' for s in status.values())}")
    return "\n".join(lines)


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
              seeds: list[int] | None = None, reuse_from: str | Path | None = None) -> SweepPlan:
    """Run every run of the study that is not done (of ``seeds`` only, if given); returns the plan.

    ``reuse_from``: another study's run root whose identical stage trainings are copied, not rerun.
    """
    plan = plan_sweep(spec, out, smoke, seeds)
    with owned(plan.root):  # one driver per study folder; its workers own the stage and run folders
        sweep_in(plan, jobs, executor, slurm, say, reuse_from)
    return plan


def sweep_in(plan: SweepPlan, jobs: int | None, executor: str, slurm: dict | None, say: Callable[[str], None],
             reuse_from: str | Path | None) -> None:
    spec = plan.spec
    prepare_root(plan)
    if reuse_from:
        reuse_stages(plan, reuse_from, say)
    todo = plan.todo()
    done = sum(status == "done" for status in plan.status().values())
    say(f"study {spec.study}: {len(plan.runs)} runs, {done} already done, {len(todo)} chains to run in {plan.root}")
    if executor == "local":
        run_local(plan, todo, jobs or default_jobs(), say)
    else:
        from .slurm import run_submitit

        run_submitit(plan, todo, executor, {**spec.slurm, **(slurm or {})}, say)
    status = plan.status()
    failed = [name for name, s in status.items() if s == "failed"]
    say(f"study {spec.study}: {sum(s == 'done' for s in status.values())}/{len(status)} runs done"
        + (f"; failed: {', '.join(failed)} (see runs/<run>/error.json; run the command again to retry)" if failed else ""))


# ============================================================================ the local executor
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
    for run in chain.runs:
        record_failure(plan.root, run_payload(run, plan.root), why, "")
    failed_chains.add(id(chain))


def estimate_left(durations: list[float], chains_left: int, jobs: int) -> str:
    if not durations:
        return "?"
    return clock(sum(durations) / len(durations) * chains_left / max(1, jobs))


def elapsed(started: float) -> str:
    return clock(time.perf_counter() - started)


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def load_run_model(plan: SweepPlan, arm: str, seed: int, stage: str | None = None):
    """The trained model of one run (its last stage, or ``stage``), checked against its hand-off card."""
    from ..training.handoff import load_stage_output

    run = next((r for r in plan.runs if r.arm == arm and r.seed == seed), None)
    if run is None:
        raise KeyError(f"no run {arm} seed {seed} in study {plan.spec.study}; arms {list(plan.spec.arms)}")
    names = [s.name for s in run.stages]
    k = names.index(stage) if stage else len(names) - 1
    return load_stage_output(stage_folder(plan.root, run, k), names[k], run.preset, receiving="inspection")
