"""The import rules of docs/architecture.md: the core stands alone, the others use only its public API."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.imports import ROOT, SOURCES, cycles, import_statements, imported_modules, module_graph


def imports_of(package: str) -> list[tuple[str, int, str, list[str]]]:
    """(file, line, imported module, imported names) for every import statement, nested ones included."""
    found = []
    for path in sorted(SOURCES[package].rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(str(path.relative_to(ROOT)), node.lineno, alias.name, []) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append((str(path.relative_to(ROOT)), node.lineno, node.module, [a.name for a in node.names]))
    return found


def test_the_core_imports_neither_the_adapter_nor_the_bench_not_even_lazily():
    upward = [
        f"{file}:{line} imports {module}"
        for file, line, module, _ in imports_of("evogm_opt")
        if module.split(".")[0] in ("llm_merge", "evogm_bench")
    ]
    assert upward == []


@pytest.mark.parametrize("package", ["llm_merge", "evogm_bench"])
def test_the_adapter_and_the_bench_use_only_the_cores_public_api(package):
    private = [
        f"{file}:{line} imports {module} {names}"
        for file, line, module, names in imports_of(package)
        if module.split(".")[0] == "evogm_opt"
        and (any(part.startswith("_") for part in module.split(".")) or any(n.startswith("_") for n in names))
    ]
    assert private == []


def test_the_adapter_never_imports_the_bench_and_the_bench_imports_it_only_to_time_it():
    """``llm_merge`` stands without the bench; the bench reaches into ``llm_merge`` in one place only, the
    merge-speed benchmark of its evaluation paths (``benchmarks/merge_speed.py``), and only its public modules."""
    crossing = [
        f"{file}:{line} imports {module}"
        for file, line, module, _ in imports_of("llm_merge")
        if module.split(".")[0] == "evogm_bench"
    ]
    crossing += [
        f"{file}:{line} imports {module}"
        for file, line, module, _ in imports_of("evogm_bench")
        if module.split(".")[0] == "llm_merge"
        and (Path(file).name != "merge_speed.py" or any(part.startswith("_") for part in module.split(".")))
    ]
    assert crossing == []


def test_every_subcommand_is_owned_by_its_package_and_found_through_entry_points():
    from evogm_opt.cli import commands

    found = {name: ep.value for name, ep in commands().items()}
    assert found == {"bench": "evogm_bench.cli:main", "merge": "llm_merge.cli:main"}


# A cycle that another change removes; listed so that the test guards everything else meanwhile.
KNOWN_CYCLES: list[list[str]] = []


def test_no_import_cycles_in_the_core_the_adapter_or_the_bench():
    """Every import counts, nested ones included, not those under ``if TYPE_CHECKING:`` (tests/imports.py builds
    the graph, the same one scripts/import_graph.py draws for docs/architecture.md)."""
    found = [cycle for cycle in cycles(module_graph()) if cycle not in KNOWN_CYCLES]
    assert found == [], "import cycles:\n" + "\n".join(" -> ".join([*cycle, cycle[0]]) for cycle in found)


def test_the_cycle_finder_sees_a_cycle_and_skips_imports_only_type_checkers_read():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import evogm_opt.base\nelse:\n    import evogm_opt.loop\n"
        "def f():\n    from evogm_opt import registry, Optimizer\n"
    )
    found = [m for node in import_statements(tree) for m in imported_modules(node)]
    assert sorted(found) == ["evogm_opt", "evogm_opt.loop", "evogm_opt.registry"]


ARCHITECTURE = ROOT / "docs" / "architecture.md"
SECTIONS = {  # heading of a file table in docs/architecture.md -> the package folder it describes
    "## The core, file by file": ROOT / "evogm_opt",
    "## The merge adapter, file by file": ROOT / "adapters" / "llm_merge",
    "## The bench, file by file": ROOT / "benchmarks",
}


def _table_files(heading: str) -> set[str]:
    """The backticked ``*.py`` names in the first column of the table under ``heading``."""
    text = ARCHITECTURE.read_text()
    section = text[text.index(heading) :]
    section = section[: section.index("\n## ", 1)] if "\n## " in section[1:] else section
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([^`]+\.py)`", line.split("|")[1]))
    return names


def test_the_architecture_file_tables_match_the_tree():
    """Every module of each package is in its table, and every file a table names exists (``__init__.py`` aside)."""
    for heading, folder in SECTIONS.items():
        tree = {p.relative_to(folder).as_posix() for p in folder.rglob("*.py") if p.name != "__init__.py"}
        named = _table_files(heading)
        assert named, heading
        assert sorted(tree - named) == [], f"{heading}: modules missing from the table"
        assert sorted(named - tree) == [], f"{heading}: the table names files that do not exist"


def test_the_architecture_page_links_only_inside_the_repository():
    text = ARCHITECTURE.read_text()
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert links
    for link in links:
        assert "://" not in link, link
        assert (ARCHITECTURE.parent / link.split("#")[0]).resolve().is_relative_to(ROOT), link
        assert (ARCHITECTURE.parent / link.split("#")[0]).exists(), link
    assert "../shared" not in text
