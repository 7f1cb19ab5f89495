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
                for alias in node.names:  # `from udasa_ray import pipeline as steps` names a module
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
    assert "udasa_ray.pipeline" in graph and graph["udasa_ray.tune.sweep"] >= {"udasa_ray.pipeline"}
    assert cycles(graph) == []


def test_steps_and_runs_do_not_import_entry_points():
    graph = import_graph()
    for low in ("udasa_ray.runs", "udasa_ray.pipeline"):
        assert not any(d.startswith(("udasa_ray.cli", "udasa_ray.tune")) for d in graph[low]), (low, graph[low])


def layout_tree() -> set[str]:
    """The files docs/layout.md's tree names, as paths from the repository root (a name ending in / opens a
    folder; a line's indentation says which folder it is in)."""
    text = (ROOT / "docs" / "layout.md").read_text()
    block = text[text.index("```\n") + 4:]
    block = block[: block.index("```")]
    folders: list[tuple[int, str]] = []  # (indentation, path) of the open folders
    files = set()
    for line in block.splitlines():
        if not line.strip() or not re.match(r"\s*[\w.]+/?(\s|$)", line):
            continue  # a description's continuation
        indent, name = len(line) - len(line.lstrip()), line.split()[0]
        while folders and folders[-1][0] >= indent:
            folders.pop()
        path = f"{folders[-1][1]}/{name.rstrip('/')}" if folders else name.rstrip("/")
        if name.endswith("/"):
            folders.append((indent, path))
        elif name.endswith(".py"):
            files.add(path)
    return files


def test_layout_page_lists_the_code_tree():
    """docs/layout.md's tree names every module of the package, jobs/ and tools/, and nothing that is not there."""
    actual = {p.relative_to(ROOT).as_posix() for d in ("udasa_ray", "jobs", "tools") for p in (ROOT / d).rglob("*.py")
              if p.name != "__init__.py"}
    named = layout_tree()
    assert not actual - named, f"docs/layout.md does not name {sorted(actual - named)}"
    assert not named - actual, f"docs/layout.md names {sorted(named - actual)}, which do not exist"
