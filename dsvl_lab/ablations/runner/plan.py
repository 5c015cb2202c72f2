"""The plan of a sweep: runs -> a tree of stage trainings -> chains of work, and the ``--dry-run`` listing.

The stage trainings of one seed form a tree (identical prefixes are one node, :func:`build_tree`).
A chain is a path of that tree that one process trains in a row (:func:`build_chains`); a chain
waits for the chain that trains its first stage's parent.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...training.handoff import made_by
from ..spec import RunPlan, SweepSpec
from .folders import run_status, stage_folder


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


def run_payload(run: RunPlan, root: Path) -> dict:
    """One run as plain data for a worker: its names, its resolved spec and where each of its stages trains."""
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
                nodes[key] = StageNode(key, stage_folder(root, run, k), run.preset, run.precision, stage.to_dict(),
                                       parent)
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


@dataclass
class SweepPlan:
    """A planned sweep: its runs, their stage tree and its chains of work, under ``root``."""

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
    """The runs of every chain that waits, directly or not, on ``chain``."""
    found, frontier = [], [chain]
    while frontier:
        current = frontier.pop()
        for other in chains:
            if other.after is current:
                found += other.runs
                frontier.append(other)
    return found


def plan_sweep(spec: SweepSpec, out: str | Path, smoke: bool = False, seeds: list[int] | None = None) -> SweepPlan:
    """The study's runs (of ``seeds`` only, if given), their stage tree and chains, under ``<out>/<study>``."""
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
