"""The package's shape: imports run one way (no module reaches back to one that imports it,
counting imports inside functions too), and the README's layout section lists the tree."""

import ast
import re
from pathlib import Path

from conftest import ROOT

PKG = ROOT / "udasa_ray"


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its body."""
    modules = {_module(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("udasa_ray"):
                for alias in node.names:  # `from udasa_ray import steps` names a module
                    sub = f"{node.module}.{alias.name}"
                    deps.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("udasa_ray")}
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_run_one_way():
    graph = import_graph()
    assert "udasa_ray.steps" in graph and graph["udasa_ray.tune.sweep"] >= {"udasa_ray.steps"}
    assert cycles(graph) == []


def test_steps_and_runs_do_not_import_entry_points():
    graph = import_graph()
    for low in ("udasa_ray.runs", "udasa_ray.steps"):
        assert not any(d.startswith(("udasa_ray.cli", "udasa_ray.tune")) for d in graph[low]), (low, graph[low])


def test_readme_layout_lists_the_package_tree():
    """Every package module appears in the README's layout section, and every path it names exists."""
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    layout = layout[: layout.index("\n## ", 4)]
    named = set(re.findall(r"[\w/]+\.py|[\w]+/", layout))
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG)
        if rel.name == "__init__.py":
            continue
        assert rel.name in layout, f"README layout does not mention udasa_ray/{rel}"
    for name in named:
        if name.endswith(".py"):
            found = [p for d in ("udasa_ray", "jobs", "bench", "tests") for p in (ROOT / d).rglob(Path(name).name)
                     if p.as_posix().endswith(name)]
            assert found, f"README layout names {name}, which does not exist"
