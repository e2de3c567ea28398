"""The house: the import graph of `src/hasten` has no cycle and no upward edge.

The graph is built from the source with `ast`, never by importing. Every `import` and `from ... import`
statement counts wherever it stands: at module level, inside a function (a lazy import), under
`if TYPE_CHECKING:`, in a `try:`. A lazy import does not excuse a cycle: it only defers it.
An edge goes to the module named (`from hasten.a import b` goes to `hasten.a.b` when that is a module,
else to `hasten.a`); a package's `__init__` is a node of its own, and importing `hasten.a.b` does not add
an edge to `hasten.a` (Python runs it first, but that is the package's own business, not a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "hasten"

# Known exceptions to the rules below (none left: keep it that way).
KNOWN: set[tuple[str, str]] = set()

# The layers, top to bottom (ARCHITECTURE.md: cli -> api -> search | serve | export -> passes, quantize,
# compress, backends, measure -> model). A module may import its own layer or any layer below, never above.
# Keyed by the first component under `hasten` ("" for `hasten/__init__.py`).
LAYERS = [
    {"cli", "commands", "__main__"},
    {"", "api"},
    {"search", "serve", "export"},
    {"inspect", "report", "result"},  # what the search writes and what reads OUT/ back
    {"outcome"},  # results.json and its records as types: written by the search, read by report and result
    {"source"},  # where a model comes from: a path, a zoo name, module:function, a torch module
    {"recipe"},
    {"passes", "quantize", "compress", "backends", "measure", "zoo", "torch_export"},
    {"data", "input_shapes"},
    {"model"},
    {"errors", "paths", "fileio", "configs"},  # neutral leaves
]

# Inside one layer, what ARCHITECTURE.md rules out: (importer, imported), by first component under hasten.
FORBIDDEN = {("passes", "backends"), ("backends", "passes"), ("backends", "quantize"), ("backends", "compress"),
             ("measure", "passes"), ("measure", "quantize"), ("measure", "compress")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """{module: {hasten modules it imports}} for every .py file under src/hasten."""
    files = {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against this module's package
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in files else stem for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in files:  # `import hasten.a.b.attr` -> the module part
                    target = target.rpartition(".")[0]
                if target and target.split(".")[0] == PACKAGE and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as one cycle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_through(graph, sorted(c)) for c in components]


def _cycle_through(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete cycle inside a strongly connected component, for the failure message."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:  # breadth first from start until an edge returns to it
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    return component


def layer_of(module: str) -> int:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else ""
    for i, layer in enumerate(LAYERS):
        if key in layer:
            return i
    raise AssertionError(f"{module}: not in any layer of tests/test_imports.py; place it")


def without_known(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {v: {w for w in ws if (v, w) not in KNOWN} for v, ws in graph.items()}


def test_the_checker_finds_a_cycle():
    """The checker itself can fail: a three-module cycle and a self-contained DAG."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_graph_counts_lazy_imports():
    graph = import_graph()
    # each of these imports stands inside a function only: each still counts
    assert "hasten.api" in graph["hasten"]  # hasten.__getattr__
    assert "hasten.api" in graph["hasten.commands.apply"]  # run()
    assert "hasten.quantize.ops" in graph["hasten.quantize.stats"]  # collect_stats()
    assert "hasten.commands" in graph["hasten.cli"]  # main()


def test_no_import_cycle():
    cycles = find_cycles(without_known(import_graph()))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_known_exceptions_still_exist():
    """An allow-listed edge that is gone must leave the list (so the list only shrinks)."""
    graph = import_graph()
    stale = sorted(edge for edge in KNOWN if edge[1] not in graph.get(edge[0], ()))
    if stale:
        pytest.fail(f"remove from KNOWN in tests/test_imports.py, the code no longer has them: {stale}")


def test_no_upward_import():
    graph = without_known(import_graph())
    upward = sorted(
        f"{v} -> {w}" for v, ws in graph.items() for w in ws if layer_of(w) < layer_of(v)
    )
    assert not upward, "imports from a lower layer into a higher one:\n" + "\n".join(upward)


def test_no_forbidden_edge_inside_a_layer():
    """Passes never import backends; backends never import passes; measure knows nothing of how a model
    was made (passes, quantize, compress)."""
    def key(module: str) -> str:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else ""

    graph = import_graph()
    bad = sorted(f"{v} -> {w}" for v, ws in graph.items() for w in ws if (key(v), key(w)) in FORBIDDEN)
    assert not bad, "imports ARCHITECTURE.md rules out:\n" + "\n".join(bad)
