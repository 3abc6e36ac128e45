"""Who imports whom in the project's three packages, read from the source: the module graph and its cycles.

``tests/test_architecture.py`` checks it (no import cycles); ``scripts/import_graph.py`` draws it
(docs/img/architecture.svg). Every import counts, nested ones (in functions) included, except those under
``if TYPE_CHECKING:``, which never run.

What it does not count, on purpose: a module found by name at call time (``importlib.import_module`` in
``evogm_opt.registry``'s built-ins, the lazy ``__getattr__`` of ``evogm_opt`` and ``llm_merge``, entry points).
That is how a registry works — ``base`` asks ``registry`` which class a checkpoint names, and the registry imports
that class's module only then — and importing any module still never needs a module that needs it back.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {
    "evogm_opt": ROOT / "evogm_opt",
    "llm_merge": ROOT / "adapters" / "llm_merge",
    "evogm_bench": ROOT / "benchmarks",
}


def module_name(package: str, path: Path) -> str:
    parts = path.relative_to(SOURCES[package]).with_suffix("").parts
    parts = parts[:-1] if parts[-1] == "__init__" else parts
    return ".".join((package, *parts))


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
        return [alias.name for alias in node.names if is_module(alias.name)]
    if node.level or not node.module:  # the project has no relative imports
        return []
    found = [f"{node.module}.{a.name}" if is_module(f"{node.module}.{a.name}") else node.module for a in node.names]
    return [name for name in dict.fromkeys(found) if is_module(name)]


def is_module(name: str) -> bool:
    """Whether ``name`` is a module or package of the project (not a name defined in one, not a third party's)."""
    package = name.split(".")[0]
    if package not in SOURCES:
        return False
    folder = SOURCES[package] / Path(*name.split(".")[1:])
    return name == package or folder.with_suffix(".py").exists() or (folder / "__init__.py").exists()


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
