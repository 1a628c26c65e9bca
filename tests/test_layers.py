"""The package's layers: data flows one way, and no module imports itself back (at module level or inside
a function). Read from the source with ``ast``, so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ecgfm_suite"

#: rank of each top-level part: a module may import parts of its own rank or lower, never higher.
#: ``errors``, ``extras``, ``_io``, ``_threads``, ``storage`` and ``registry`` are shared utilities of every layer.
LAYERS: dict[str, int] = {
    "errors": 0, "extras": 0, "_io": 0, "_threads": 0, "storage": 1, "registry": 1, "__init__": 0,
    "data": 2, "models": 3, "embeddings": 4, "probes": 5, "metrics": 5, "results": 6, "analysis": 7,
    "report": 8, "gate": 8, "engine": 9, "cli": 10, "pytest_plugin": 10, "__main__": 10, "_bootstrap": 10,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module → the package's modules it imports anywhere in its source (own ancestor packages left out:
    they are already initialising when a submodule runs)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    target = node.module or ""
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    deps.add(sub if sub in modules else target)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        graph[name] = {d for d in deps if d in modules and d != name and d not in ancestors}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_every_part_has_a_layer():
    assert {_part(m) for m in import_graph()} <= set(LAYERS)


def test_data_flows_one_way():
    upward = sorted(f"{m} -> {d}" for m, deps in import_graph().items() for d in deps
                    if LAYERS[_part(d)] > LAYERS[_part(m)])
    assert upward == []


@pytest.mark.parametrize("edges, expected", [
    ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
])
def test_cycle_finder(edges, expected):
    assert cycles(edges) == expected
