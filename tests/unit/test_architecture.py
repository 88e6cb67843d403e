"""The layout shows the architecture (issue #13): no import cycles, a pure core, one-way layers.

The import graph is read with `ast` from pipeline/**/*.py (relative imports resolved). Every
import counts for cycles, the ones inside functions too (they run when called, so a cycle through
them is still a circle). For the layers, module-level imports must point down
(cli -> ops -> live -> stream -> store -> core); an import inside a function that points up is
allowed only if it is listed in LAZY_UPWARD with its reason. Imports under `if TYPE_CHECKING:`
never run and are left out.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PIPELINE = Path(__file__).resolve().parents[2] / "pipeline"
LAYERS = ["core", "store", "stream", "live", "ops", "cli"]  # each may import only those before it
CORE_FORBIDDEN = {"faust", "mode", "aiokafka", "clickhouse_connect", "chdb", "aiohttp", "rocksdict"}
LAZY_UPWARD = {
    ("pipeline.store.api", "pipeline.live.web"): "the sink's HTTP server also serves the live page",
    ("pipeline.stream.writer", "pipeline.live.monitor"): "the sink process runs the fault monitor",
}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str  # a module of the package, or the top-level name of an outside one
    line: int
    lazy: bool  # inside a function


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for the package at `root` (a package `x/__init__.py` is `x`)."""
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _walk(node: ast.AST, lazy: bool = False):
    """(import node, inside a function) for every import, skipping `if TYPE_CHECKING:` blocks."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            yield from (item for stmt in child.orelse for item in _walk(ast.Module([stmt], []), lazy))
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, lazy
        yield from _walk(child, lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))


def import_graph(root: Path) -> dict[str, list[Edge]]:
    """Every module's imports: of the package's modules (`from a import b` names module `a.b` when
    there is one, else `a`), and of outside packages by their top-level name."""
    modules = module_names(root)
    graph: dict[str, list[Edge]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges = graph.setdefault(name, [])
        for node, lazy in _walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target not in modules and "." in target and target.split(".")[0] == root.name:
                    target = target.rsplit(".", 1)[0]
                if target.split(".")[0] != root.name:
                    target = target.split(".")[0]
                if target != name:
                    edges.append(Edge(name, target, node.lineno, lazy))
    return graph


def cycles(graph: dict[str, list[Edge]], include_lazy: bool = True) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for e in graph.get(v, []):
            if e.target not in graph or (e.lazy and not include_lazy):
                continue
            if e.target not in index:
                visit(e.target)
                low[v] = min(low[v], low[e.target])
            elif e.target in on_stack:
                low[v] = min(low[v], index[e.target])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> int | None:
    """The layer of a module of the package (None: the package itself, `__main__` counts as cli)."""
    parts = module.split(".")
    name = "cli" if parts[1:] in (["cli"], ["__main__"]) else (parts[1] if len(parts) > 1 else None)
    return LAYERS.index(name) if name in LAYERS else None


def layer_violations(graph: dict[str, list[Edge]]) -> tuple[list[Edge], list[Edge]]:
    """(module-level imports that point up, imports inside functions that point up)."""
    up = [e for edges in graph.values() for e in edges if e.target in graph
          and None not in (layer(e.source), layer(e.target)) and layer(e.target) > layer(e.source)]
    return [e for e in up if not e.lazy], [e for e in up if e.lazy]


# -- the project ------------------------------------------------------------------
GRAPH = import_graph(PIPELINE)


def test_every_module_is_in_a_layer() -> None:
    assert [m for m in GRAPH if layer(m) is None] == ["pipeline"]


def test_no_import_cycles_counting_imports_inside_functions_too() -> None:
    assert cycles(GRAPH) == []


def test_the_core_imports_nothing_outside_the_core() -> None:
    bad = [e for m, edges in GRAPH.items() if layer(m) == 0 for e in edges
           if (e.target in GRAPH and layer(e.target) != 0) or e.target in CORE_FORBIDDEN]
    assert bad == []


def test_layer_arrows_point_one_way() -> None:
    eager, lazy = layer_violations(GRAPH)
    assert eager == []
    assert {(e.source, e.target) for e in lazy} == set(LAZY_UPWARD), "document a new upward import in LAZY_UPWARD"


def test_the_join_runtime_imports_no_kafka_client() -> None:
    """It builds dead letters (`pipeline.core.deadletters`) but sends nothing itself: the Faust app does."""
    seen, todo = set(), ["pipeline.stream.runtime"]
    while todo:
        for e in GRAPH.get(todo.pop(), []):
            if e.target not in seen and not e.lazy:
                seen.add(e.target)
                todo.append(e.target)
    assert not seen & {"aiokafka", "faust", "mode", "pipeline.stream.kafka"}


# -- the checker, on synthetic packages: it does fail -----------------------------------
def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_checker_finds_a_cycle_through_relative_and_lazy_imports(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "a.py": "from . import b\n",
        "b.py": "from .sub.c import x\n",
        "sub/__init__.py": "",
        "sub/c.py": "def f():\n    from ..a import y\n",
        "d.py": "import pkg.a\n",
    })
    graph = import_graph(root)
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    assert cycles(graph, include_lazy=False) == []
    assert [e.target for e in graph["pkg.d"]] == ["pkg.a"]


def test_the_checker_ignores_type_checking_imports_and_sees_outside_packages(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "a.py": "from typing import TYPE_CHECKING\nimport faust.types\nif TYPE_CHECKING:\n    from pkg import b\n",
        "b.py": "from pkg import a\n",
    })
    graph = import_graph(root)
    assert cycles(graph) == []
    assert {e.target for e in graph["pkg.a"]} == {"typing", "faust"}


def test_the_checker_finds_an_upward_import(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "core/__init__.py": "", "core/x.py": "from pkg.live import y\n",
        "live/__init__.py": "", "live/y.py": "def f():\n    from pkg.ops import z\n",
        "ops/__init__.py": "", "ops/z.py": "from pkg.core import x\n",
    })
    eager, lazy = layer_violations(import_graph(root))
    assert [(e.source, e.target) for e in eager] == [("pkg.core.x", "pkg.live.y")]
    assert [(e.source, e.target) for e in lazy] == [("pkg.live.y", "pkg.ops.z")]
