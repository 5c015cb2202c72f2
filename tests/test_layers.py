"""The package's layers run one way: a module imports only from its own layer or the ones below.

    base (config, errors, constants, files) -> model -> processor / data
        -> metrics / foundation / training / harness -> ablations / inspection / chat -> cli

Read from the source with ``ast``: every import, at the top of a module or inside a function, may
not go up the layers; the imports that run when a module is imported (with the packages Python runs
first) may not form a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dsvl_lab"
LAYERS = [
    {"__init__", "config", "errors", "constants", "atomic", "yaml_files", "artifacts"},
    {"model"},
    {"processor", "data", "run_folder", "checkpoint_io"},
    {"metrics", "harness", "foundation", "training"},
    {"ablations", "inspection", "chat", "convert"},
    {"cli"},
]


def layer_of(top: str) -> int:
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    raise AssertionError(f"dsvl_lab.{top} has no layer: add it to LAYERS in {Path(__file__).name}")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, at_import_time: bool = False) -> set[str]:
    """Every ``dsvl_lab`` module ``path`` imports, relative imports resolved; ``at_import_time``: only
    those that run when the module is imported (not the ones inside a function body)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in walk_runtime(ast.parse(path.read_text(encoding="utf-8")), at_import_time):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("dsvl_lab")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("dsvl_lab"):  # `from . import lm`: the module dsvl_lab.<package>.lm
                found |= {f"{target}.{a.name}" if (PACKAGE.parent / f"{target}.{a.name}".replace(".", "/")).exists()
                          or (PACKAGE.parent / (f"{target}.{a.name}".replace(".", "/") + ".py")).exists() else target
                          for a in node.names}
    return found


def walk_runtime(tree: ast.AST, at_import_time: bool = False):
    """Every node, except what sits under ``if TYPE_CHECKING:`` (annotations only, never imported), and
    with ``at_import_time`` except function bodies (they run later, when called)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            yield from (n for child in node.orelse for n in walk_runtime(child, at_import_time))
            continue
        yield node
        if not (at_import_time and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))):
            yield from walk_runtime(node, at_import_time)


def top_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def with_packages(source: str, targets: set[str]) -> set[str]:
    """``targets`` plus the packages Python runs first: importing ``dsvl_lab.training.spec`` from another
    part of dsvl_lab executes ``dsvl_lab/training/__init__.py`` and whatever it imports. (Inside one
    part, a package is already initialising when its own modules import each other, which is harmless.)"""
    found = set(targets)
    for target in targets:
        parts = target.split(".")
        for depth in range(2, len(parts)):
            package = ".".join(parts[:depth])
            if top_of(source) != top_of(package):
                found.add(package)
    return found


def graph(at_import_time: bool = False) -> dict[str, set[str]]:
    modules = {module_name(p): imported_modules(p, at_import_time) for p in sorted(PACKAGE.rglob("*.py"))}
    return {source: with_packages(source, targets) for source, targets in modules.items()}


def test_no_import_goes_up_the_layers():
    upward = [f"{source} -> {target}" for source, targets in graph().items() for target in sorted(targets)
              if top_of(source) != "__init__" and layer_of(top_of(target)) > layer_of(top_of(source))]
    assert upward == []


def test_no_cycle_between_modules():
    # A cycle breaks an import only through imports that run at import time; a function-level import
    # (a few, each with its reason) runs when the function is called, after every module has loaded.
    edges = graph(at_import_time=True)
    state: dict[str, int] = {}  # 1 on the current path, 2 finished

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            nxt = nxt if nxt in edges else nxt.rpartition(".")[0]  # `from pkg import name` of a non-module
            if nxt == node or nxt not in edges:
                continue
            if state.get(nxt) == 1:
                return path + [node, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [node])):
                return cycle
        state[node] = 2
        return None

    for start in edges:
        if start not in state and (cycle := visit(start, [])):
            pytest.fail("import cycle: " + " -> ".join(cycle))
