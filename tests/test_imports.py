"""The package's modules import cleanly and their imports form no cycle, counted from each module's
own import statements (function-level imports included: a lazy import that runs back up is still a
circle a reader has to follow)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGES = {"danas_bench": ROOT / "danas_bench"}
# the parts, lowest first: a module may import from its own part and the parts below it, never above
LAYERS = ("core", "training", "tables", "query", "search", "reports")
TOP = {"danas_bench", "danas_bench.cli", "danas_bench.commands"}  # the package root and the CLI: above all parts


def modules() -> dict[str, Path]:
    out = {}
    for prefix, folder in PACKAGES.items():
        for f in sorted(folder.rglob("*.py")):
            parts = f.relative_to(folder).with_suffix("").parts
            name = ".".join((prefix, *parts)).removesuffix(".__init__")
            out[name] = f
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules its import statements name (relative imports resolved)."""
    mods = modules()
    graph = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {n for n in names if n in mods and n != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the list of modules around it, or None (depth-first search)."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                return stack[stack.index(n) :] + [n]
            if n not in state and (c := visit(n)):
                return c
        stack.pop()
        state[m] = "done"
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def layer(module: str) -> int:
    if module in TOP:
        return len(LAYERS)
    part = module.split(".")[1]
    assert part in LAYERS, f"{module} lies in no part; add its folder to LAYERS in order"
    return LAYERS.index(part)


def climbs(graph: dict[str, set[str]]) -> list[str]:
    """Imports that run from a lower part up to a higher one (``danas_bench`` itself, for
    ``__version__``, is allowed from anywhere: it imports nothing eagerly)."""
    return [
        f"{m} ({LAYERS[layer(m)] if m not in TOP else 'top'}) imports {n}"
        for m, deps in sorted(graph.items())
        for n in sorted(deps)
        if n != "danas_bench" and layer(n) > layer(m)
    ]


def test_no_import_climbs_to_a_higher_part():
    assert climbs(import_graph()) == []


def test_the_climb_finder_finds_a_planted_climb():
    planted = {
        "danas_bench.core.space": {"danas_bench.query.bench"},
        "danas_bench.query.bench": {"danas_bench.core.space"},
    }
    assert climbs(planted) == ["danas_bench.core.space (core) imports danas_bench.query.bench"]


@pytest.mark.parametrize("name", sorted(modules()))
def test_every_module_imports(name):
    importlib.import_module(name)


MAX_LINES = 600  # a module a newcomer can read in one sitting; split along what it holds beyond that


def test_no_module_over_600_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"
