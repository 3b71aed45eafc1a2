"""The package's layers are a contract (docs/architecture.md): imports only point down.

Every import in dynatss/ counts, at module level, inside functions and under TYPE_CHECKING: a module
may import its own layer and the layers below it, never one above. On top of that, the module graph
has no cycle, no module imports another module's private (``_name``) names, nothing loads our own
modules through ``importlib`` / ``__import__`` (which static tools cannot follow), and the drawing
leaf knows only PIL, matplotlib, numpy and torch. CI runs this file with the rest of the suite
(``make test``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dynatss"

# Top to bottom. A module belongs to the first entry whose prefix names it or a package above it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cli", ("dynatss.cli", "dynatss.__main__", "dynatss")),
    ("reports", ("dynatss.reports",)),
    ("api", ("dynatss.api",)),
    ("engine", ("dynatss.engine",)),
    ("losses", ("dynatss.losses",)),
    ("assign", ("dynatss.assign",)),
    ("model", ("dynatss.model",)),
    ("data", ("dynatss.data",)),
    ("config", ("dynatss.config", "dynatss.config_values", "dynatss.config_merge")),
    ("leaves", ("dynatss.draw", "dynatss.boxes", "dynatss.errors", "dynatss.atomic", "dynatss.version")),
)
# The drawing leaf imports nothing of ours.
SELF_CONTAINED = ("dynatss.draw",)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, ast.Module]:
    return {module_name(path): ast.parse(path.read_text(), str(path)) for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    """Index in LAYERS (0 = top) of the most specific prefix naming ``module``."""
    best = (-1, len(LAYERS))
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best[0]:
                best = (len(prefix), index)
    assert best[0] >= 0, f"{module} belongs to no layer: add it to LAYERS"
    return best[1]


def imports_of(module: str, tree: ast.Module, known: set[str]) -> list[tuple[str, int, tuple[str, ...]]]:
    """(imported module of ours, line, names imported from it) for every import statement."""
    found = []
    package = module if (PACKAGE / Path(*module.split(".")[1:]) / "__init__.py").exists() else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, ()) for alias in node.names if alias.name.split(".")[0] == "dynatss"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "dynatss":
                continue
            names = tuple(alias.name for alias in node.names)
            submodules = [f"{base}.{name}" for name in names if f"{base}.{name}" in known]
            found += [(sub, node.lineno, ()) for sub in submodules]
            found.append((base, node.lineno, tuple(n for n in names if f"{base}.{n}" not in known)))
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, list[tuple[str, int, tuple[str, ...]]]]:
    modules = all_modules()
    known = set(modules)
    return {module: imports_of(module, tree, known) for module, tree in modules.items()}


def test_every_import_points_down(graph):
    upward = []
    for module, imported in graph.items():
        for target, line, _ in imported:
            if layer_of(target) < layer_of(module):
                upward.append(f"{module}:{line} imports {target} ({LAYERS[layer_of(target)][0]} is above "
                              f"{LAYERS[layer_of(module)][0]})")
            if module.startswith(SELF_CONTAINED) and target.split(".")[:2] != module.split(".")[:2]:
                upward.append(f"{module}:{line} imports {target}: the drawing leaf imports nothing of ours")
    assert not upward, "\n".join(upward)


def test_no_import_cycle(graph):
    edges = {module: {target for target, _, _ in imported if target in graph and target != module}
             for module, imported in graph.items()}
    cycles = [component for component in strongly_connected(edges) if len(component) > 1]
    assert not cycles, f"import cycles: {cycles}"


def test_no_private_name_crosses_a_module(graph):
    crossing = [f"{module}:{line} imports {name} from {target}"
                for module, imported in graph.items() for target, line, names in imported
                for name in names if name.startswith("_") and not name.endswith("__") and target != module]
    assert not crossing, "\n".join(crossing)


def test_no_dynamic_loading_of_our_modules():
    dynamic = []
    for module, tree in all_modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                if name in ("importlib.import_module", "import_module", "__import__", "importlib.__import__"):
                    dynamic.append(f"{module}:{node.lineno} calls {name}")
    assert not dynamic, "\n".join(dynamic)


def test_the_contract_catches_what_it_forbids(tmp_path):
    """The checks above on hand-made sources: an upward import inside a function, a private name,
    importlib, and a cycle."""
    source = ast.parse("def f():\n    from dynatss.api.detector import Detector, _helper\n"
                       "    import importlib\n    importlib.import_module('dynatss.cli')\n")
    imported = imports_of("dynatss.model.postprocess", source, {"dynatss.api.detector"})
    assert imported == [("dynatss.api.detector", 2, ("Detector", "_helper"))]
    assert layer_of("dynatss.api.detector") < layer_of("dynatss.model.postprocess")
    calls = [ast.unparse(node.func) for node in ast.walk(source) if isinstance(node, ast.Call)]
    assert "importlib.import_module" in calls
    assert [sorted(c) for c in strongly_connected({"a": {"b"}, "b": {"a"}, "c": {"a"}}) if len(c) > 1] == [["a", "b"]]


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components of a directed graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            components.append(component)

    for node in edges:
        if node not in index:
            visit(node)
    return components
