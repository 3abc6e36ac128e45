"""Draw who imports whom in evogm-opt (docs/img/architecture.svg), from the source, not from memory.

Run: ``python scripts/import_graph.py [--out docs/img/architecture.svg]``. Nodes are the core's top-level
modules, its subpackages (``evogm_opt.evogm``, ``evogm_opt.optimizers``, ``evogm_opt.integrations``) and the
two packages above it (``llm_merge``, ``evogm_bench``), each module by name. Every import counts, nested ones
included. Needs Graphviz's ``dot`` to render; without it the DOT text is written next to the output path.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {
    "evogm_opt": ROOT / "evogm_opt",
    "llm_merge": ROOT / "adapters" / "llm_merge",
    "evogm_bench": ROOT / "benchmarks",
}
SUBPACKAGES = ("evogm_opt.evogm", "evogm_opt.optimizers", "evogm_opt.integrations")
# shims that only re-export moved names for old imports: left out, they would only repeat edges
SHIMS = {"evogm_opt.baselines", "evogm_opt.optimizer", "evogm_opt.config", "evogm_opt.generator"}
SHIMS |= {"evogm_opt.surrogate", "evogm_opt.basis"}
COLOURS = {"evogm_opt": "#dbe9f6", "llm_merge": "#fde2c8", "evogm_bench": "#d9f0d3"}


def module_name(package: str, path: Path) -> str:
    parts = path.relative_to(SOURCES[package]).with_suffix("").parts
    parts = parts[:-1] if parts[-1] == "__init__" else parts
    return ".".join((package, *parts))


def node_of(module: str) -> str | None:
    """The drawn node a module belongs to (None: outside the project, a shim, or a test)."""
    if module.split(".")[0] not in SOURCES or "perf" in module.split("."):
        return None
    for sub in SUBPACKAGES:
        if module == sub or module.startswith(sub + "."):
            return sub
    for shim in SHIMS:
        if module == shim or module.startswith(shim + "."):
            return None
    if module.startswith("evogm_opt._") or module == "evogm_opt._version":
        return None  # private helpers: drawn as part of their callers' job
    return module


def edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for package, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            source = node_of(module_name(package, path))
            if source is None:
                continue
            graph.setdefault(source, set())
            for node in ast.walk(ast.parse(path.read_text())):
                targets: list[str] = []
                if isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                for target in targets:
                    target_node = node_of(target)
                    if target_node is not None and target_node != source and _is_module(target):
                        graph[source].add(target_node)
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
