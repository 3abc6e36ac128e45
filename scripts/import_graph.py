"""Draw who imports whom in evogm-opt (docs/img/architecture.svg), from the source, not from memory.

Run: ``python scripts/import_graph.py [--out docs/img/architecture.svg]``. Nodes are the core's top-level
modules, its subpackages (``evogm_opt.evogm``, ``evogm_opt.optimizers``, ``evogm_opt.integrations``) and the
two packages above it (``llm_merge``, ``evogm_bench``), each module by name. Every import counts, nested ones
included, except those under ``if TYPE_CHECKING:`` (never executed). Needs Graphviz's ``dot`` to render; without
it the DOT text is written next to the output path.

The module-level graph (:func:`module_graph`) and its cycles (:func:`cycles`) are also what
``tests/test_architecture.py`` checks: one walker for the picture and the test.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {
    "evogm_opt": ROOT / "evogm_opt",
    "llm_merge": ROOT / "adapters" / "llm_merge",
    "evogm_bench": ROOT / "benchmarks",
}
SUBPACKAGES = ("evogm_opt.evogm", "evogm_opt.optimizers", "evogm_opt.integrations")
COLOURS = {"evogm_opt": "#dbe9f6", "llm_merge": "#fde2c8", "evogm_bench": "#d9f0d3"}


def module_name(package: str, path: Path) -> str:
    parts = path.relative_to(SOURCES[package]).with_suffix("").parts
    parts = parts[:-1] if parts[-1] == "__init__" else parts
    return ".".join((package, *parts))


def node_of(module: str) -> str | None:
    """The drawn node a module belongs to (None: outside the project, or a test)."""
    if module.split(".")[0] not in SOURCES or "perf" in module.split("."):
        return None
    for sub in SUBPACKAGES:
        if module == sub or module.startswith(sub + "."):
            return sub
    if module.startswith("evogm_opt._") or module == "evogm_opt._version":
        return None  # private helpers: drawn as part of their callers' job
    return module


def import_statements(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement of a parsed module, nested ones (in functions) included, but not those under
    ``if TYPE_CHECKING:``: they never run, so they are how annotations name a module without importing it."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The project modules one statement imports: ``import a.b`` → a.b; ``from a import b`` → a.b if that is a
    module, else a (b is a name defined in a). A package's own ``__init__`` running first is not counted as an
    edge: every submodule import does that, and it is not a dependency of the importer."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if _is_module(alias.name)]
    if node.level or not node.module:  # the project has no relative imports
        return []
    found = [f"{node.module}.{a.name}" if _is_module(f"{node.module}.{a.name}") else node.module for a in node.names]
    return [name for name in dict.fromkeys(found) if _is_module(name)]


def module_graph() -> dict[str, set[str]]:
    """Module → the project modules it imports (see :func:`imported_modules`), for every module of the three
    packages except the bench's perf tests."""
    graph: dict[str, set[str]] = {}
    for package, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            source = module_name(package, path)
            if "perf" in source.split("."):
                continue
            targets = graph.setdefault(source, set())
            for node in import_statements(ast.parse(path.read_text(), filename=str(path))):
                targets.update(t for t in imported_modules(node) if t != source)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a list of modules, each importing the next and the last the first) per strongly connected
    component of more than one module (Tarjan's algorithm), sorted; empty for an acyclic graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(_one_cycle(graph, component) for component in components)


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module, by breadth-first search inside the component."""
    start = min(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph.get(node, set()) & component):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return path[::-1]
                if nxt not in parents:
                    parents[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start} in a strongly connected component")


def edges() -> dict[str, set[str]]:
    """The drawn graph: :func:`module_graph` with modules merged into their nodes (:func:`node_of`)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for module, targets in module_graph().items():
        source = node_of(module)
        if source is None:
            continue
        graph.setdefault(source, set())
        graph[source].update(n for n in map(node_of, targets) if n is not None and n != source)
    return graph


def _is_module(name: str) -> bool:
    package = name.split(".")[0]
    if package not in SOURCES:
        return False
    rel = Path(*name.split(".")[1:])
    folder = SOURCES[package] / rel
    return name == package or folder.with_suffix(".py").exists() or (folder / "__init__.py").exists()


def dot_text(graph: dict[str, set[str]]) -> str:
    lines = ["digraph imports {", '  rankdir=BT; node [shape=box, style=filled, fontname="Helvetica", fontsize=11];']
    for package, colour in COLOURS.items():
        members = sorted(n for n in graph if n.split(".")[0] == package)
        lines.append(f'  subgraph "cluster_{package}" {{ label="{package}"; style=rounded; color="#888888";')
        lines += [f'    "{n}" [label="{n.removeprefix(package + ".")}", fillcolor="{colour}"];' for n in members]
        lines.append("  }")
    for source in sorted(graph):
        for target in sorted(graph[source]):
            lines.append(f'  "{source}" -> "{target}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "docs" / "img" / "architecture.svg"))
    args = parser.parse_args()
    out = Path(args.out)
    text = dot_text(edges())
    out.with_suffix(".dot").write_text(text)
    if shutil.which("dot") is None:
        print(f"wrote {out.with_suffix('.dot')}; install Graphviz (dot) to render {out.name}")
        return 0
    subprocess.run(["dot", f"-T{out.suffix.lstrip('.')}", "-o", str(out)], input=text, text=True, check=True)
    print(f"wrote {out} and {out.with_suffix('.dot')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
