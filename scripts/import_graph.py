"""Draw who imports whom in evogm-opt (docs/img/architecture.svg), from the source, not from memory.

Run: ``python scripts/import_graph.py [--out docs/img/architecture.svg]``. Nodes are the core's top-level
modules, its subpackages (``evogm_opt.evogm``, ``evogm_opt.optimizers``, ``evogm_opt.integrations``) and the
two packages above it (``llm_merge``, ``evogm_bench``), each module by name. Every import counts, nested ones
included, except those under ``if TYPE_CHECKING:`` (never executed). Needs Graphviz's ``dot`` to render; without
it the DOT text is written next to the output path.

The module graph comes from ``tests/imports.py``, the walker whose cycles ``tests/test_architecture.py``
checks: one graph for the picture and the test. This script only merges modules into nodes and draws.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run by path, a script sees only scripts/; the walker lives in the tests package
from tests.imports import SOURCES, module_graph  # noqa: E402

SUBPACKAGES = ("evogm_opt.evogm", "evogm_opt.optimizers", "evogm_opt.integrations")
COLOURS = {"evogm_opt": "#dbe9f6", "llm_merge": "#fde2c8", "evogm_bench": "#d9f0d3"}


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
