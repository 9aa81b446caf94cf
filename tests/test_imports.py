"""No module of discover/ imports a module that imports it back, directly or through a chain.

Imports inside functions count: they hide a cycle at import time, not in the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "discover"


def module_names() -> dict[str, Path]:
    """{'discover.backends.base': path, 'discover.backends': path of its __init__.py, ...}."""
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imported(node: ast.AST, modules: dict[str, Path]) -> list[str]:
    """The discover modules one Import/ImportFrom node loads: `from discover.x import y` is
    the module discover.x.y where there is one, else discover.x (its __init__)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in modules]
    if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
        return []
    out = [node.module] if node.module in modules else []
    out += [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
    return out


def graph() -> dict[str, set[str]]:
    """Each module -> what it imports, with the packages the import runs on the way (their
    __init__), except the module's own packages, which already run before it."""
    modules = module_names()
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        if path.name == "__init__.py":
            own.add(name)
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for target in imported(node, modules):
                parts = target.split(".")
                deps |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} - own
        edges[name] = deps - {name}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_sees_imports_inside_functions():
    edges = graph()
    assert "discover.search" in edges["discover.cli"]  # cmd_run imports search in its body


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_find_cycle_reports_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
