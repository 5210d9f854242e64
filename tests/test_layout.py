"""The package's shape: every module imports on its own, no import cycle (imports inside
functions included), and the public API is ``bayesmix`` itself, cheap to import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import bayesmix

PACKAGE = Path(bayesmix.__file__).parent
FLOW = ("data", "laws", "inference", "pipeline", "decide", "design", "report", "proxy", "cli")


def module_names() -> dict[str, Path]:
    """Every module of the package by dotted name (packages by their ``__init__``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The package modules ``path`` imports anywhere (module level or inside functions), by the
    longest known prefix of each imported name; imports under ``if TYPE_CHECKING:`` are left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    out = set()
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            out.add(name)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imported_modules(path, set(modules)) - {name, "bayesmix"} for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_planted_cycle():
    """Negative control: a -> b -> c -> a is found, the d -> a branch is not part of it."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 60
    assert cycles(graph) == []


def test_the_folders_are_the_flow_and_nothing_else_is_flat():
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert packages == sorted(FLOW)
    flat = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert flat == ["__init__.py", "demo.py"], flat  # the main job sits beside the flow it runs


def test_every_module_imports_in_a_fresh_interpreter():
    names = [n for n in module_names() if not n.endswith("__main__")]
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\nprint('ok')"
    done = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_the_public_api_resolves_and_import_bayesmix_is_cheap():
    code = ("import sys, bayesmix\n"
            "heavy = [m for m in ('jax', 'torch', 'numpyro') if m in sys.modules]\n"
            "missing = [n for n in bayesmix.__all__ if getattr(bayesmix, n, None) is None]\n"
            "print(heavy, missing, len(bayesmix.__all__))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("[] [] "), done.stdout  # no heavy import; every name resolves
    assert int(done.stdout.split()[-1]) >= 50
    assert set(dir(bayesmix)) >= set(bayesmix.__all__)
