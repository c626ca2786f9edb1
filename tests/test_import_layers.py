"""Import arrows point one way (docs/architecture.md, "Dependencies"). Built from the source with `ast`, no import.

The rules:
1. Module-level imports (those that run when a module is imported; `if TYPE_CHECKING:` blocks excluded) form no
   cycle anywhere in mnv3det. Imports inside functions are not in this graph: they are how a command module stays
   light (`--help` imports no torch) and how a lower layer reaches an optional package on first use.
2. In mnv3det.deploy, imports inside functions count too: no cycle at all, so every module there can be read
   bottom-up (the cycles issue 23 removed were function-level ones: backends <-> formats, exporters -> timing ->
   onnx_int8 -> exporters).
3. Layers, all imports counted: deploy/runtime imports nothing from deploy/export or from what sits above both
   (benchmark, profile, detect_runner); deploy/export imports nothing from benchmark, profile or detect_runner;
   models and data import nothing from train, evaluate or deploy; nothing below cli imports cli.

An edge goes to the module an import names: `from a.b import c` -> a.b.c when c is a module, else a.b (the package's
__init__); the parent packages Python initialises on the way are not edges (a package re-exporting its modules is
no cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "mnv3det"


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package __init__) for every module of the package."""
    out = {}
    for file in ROOT.rglob("*.py"):
        parts = list(file.relative_to(ROOT.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if package else parts)] = (file, package)
    return out


MODULES = _modules()


def _target(name: str) -> str | None:
    """The module `name` denotes: itself, or its longest prefix that is a module (a.b.func -> a.b)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, function_level: bool) -> set[str]:
    """mnv3det modules that `module` imports (at module level only, or everywhere when `function_level`)."""
    file, package = MODULES[module]
    base = module if package else module.rpartition(".")[0]
    found: set[str] = set()

    def named(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        assert isinstance(node, ast.ImportFrom)
        if node.level:  # relative: from . import x, from ..y import z
            parent = base
            for _ in range(node.level - 1):
                parent = parent.rpartition(".")[0]
            source = f"{parent}.{node.module}" if node.module else parent
        else:
            source = node.module or ""
        # `from a.b import c`: the module a.b.c when c is one, else a.b itself
        return [f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source for a in node.names]

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # never runs
            if isinstance(child, (ast.Import, ast.ImportFrom)) and (top or function_level):
                for name in named(child):
                    target = _target(name) if name.startswith("mnv3det") else None
                    if target and target != module:
                        found.add(target)
            inner = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, top and not inner)

    visit(ast.parse(file.read_text()), True)
    return found


def _graph(function_level: bool, within: str = "mnv3det") -> dict[str, set[str]]:
    inside = [m for m in MODULES if m == within or m.startswith(within + ".")]
    return {m: {t for t in _imports(m, function_level) if t in inside} for m in inside}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle_and_nothing_else():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_function_level_imports_only_when_asked():
    # load_backend imports the runtime registry inside a function
    backends = "mnv3det.deploy.runtime.backends"
    assert "mnv3det.deploy.runtime.registry" in _imports(backends, function_level=True)
    assert "mnv3det.deploy.runtime.registry" not in _imports(backends, function_level=False)
    assert "mnv3det.deploy.runtime.metadata" in _imports(backends, function_level=False)


def test_no_module_level_import_cycle_anywhere():
    assert cycles(_graph(function_level=False)) == []


def test_no_import_cycle_in_deploy_even_inside_functions():
    assert cycles(_graph(function_level=True, within="mnv3det.deploy")) == []


ABOVE_BOTH = ("mnv3det.deploy.benchmark", "mnv3det.deploy.profile", "mnv3det.deploy.detect_runner",
              "mnv3det.deploy.check_app")
LAYERS = [
    ("mnv3det.deploy.runtime", ("mnv3det.deploy.export", *ABOVE_BOTH, "mnv3det.evaluate", "mnv3det.train")),
    ("mnv3det.deploy.export", ABOVE_BOTH),
    ("mnv3det.models", ("mnv3det.train", "mnv3det.evaluate", "mnv3det.deploy")),
    ("mnv3det.data", ("mnv3det.train", "mnv3det.evaluate", "mnv3det.deploy")),
    ("mnv3det.core", ("mnv3det.train", "mnv3det.evaluate", "mnv3det.deploy", "mnv3det.cli")),
    ("mnv3det.deploy", ("mnv3det.cli", "mnv3det.api")),
    ("mnv3det.evaluate", ("mnv3det.cli", "mnv3det.deploy.export", *ABOVE_BOTH)),
]


@pytest.mark.parametrize(("layer", "above"), LAYERS, ids=[layer for layer, _ in LAYERS])
def test_no_layer_imports_a_layer_above_it(layer, above):
    upward = sorted(
        f"{module} -> {target}"
        for module in MODULES if module == layer or module.startswith(layer + ".")
        for target in _imports(module, function_level=True)
        if any(target == a or target.startswith(a + ".") for a in above)
    )
    assert upward == []
