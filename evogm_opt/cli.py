"""``evogm-opt``: a thin dispatcher. Each subcommand belongs to the package that implements it.

Packages announce their subcommands through the ``evogm_opt.commands`` entry-point group (``pyproject.toml``):
``bench`` lives in ``evogm_bench.cli``, ``merge`` in ``llm_merge.cli``. Each entry point is a ``main(argv) -> int``
whose docstring's first line is its summary here; the core imports none of them until one is called.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import EntryPoint, entry_points

from evogm_opt.cli_faults import EXIT_INTERRUPTED, fail

GROUP = "evogm_opt.commands"


def commands() -> dict[str, EntryPoint]:
    """Every installed subcommand, by name."""
    return {ep.name: ep for ep in sorted(entry_points(group=GROUP), key=lambda ep: ep.name)}


def _summary(ep: EntryPoint) -> str:
    try:
        doc = ep.load().__doc__ or ""
    except ImportError as exc:  # a broken install; the command itself would say more
        return f"(cannot be loaded: {exc})"
    return doc.strip().splitlines()[0] if doc.strip() else ""


def usage() -> str:
    from evogm_opt import __version__

    lines = [
        f"usage: evogm-opt COMMAND [options]      (evogm-opt {__version__})",
        "",
        "Expensive black-box optimisation with a learned proposal distribution (EvoGM), and LLM expert merging.",
        "",
        "commands:",
    ]
    found = commands()
    width = max((len(name) for name in found), default=0)
    lines += [f"  {name.ljust(width)}  {_summary(ep)}" for name, ep in found.items()]
    lines += ["", "'evogm-opt COMMAND -h' describes one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from evogm_opt import __version__

        print(f"evogm-opt {__version__}")
        return 0
    found = commands()
    if argv[0] not in found:
        print(
            f"evogm-opt: unknown command {argv[0]!r}; choose one of {', '.join(found) or '(none installed)'}",
            file=sys.stderr,
        )
        return 2
    try:
        return int(found[argv[0]].load()(argv[1:]))
    except KeyboardInterrupt:  # a command that does not say more itself (merge and bench do): one line, not a traceback
        return fail(f"evogm-opt {argv[0]}", "interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:  # `evogm-opt ... | head`: the reader left; nothing to say to it, and no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the interpreter's final flush is quiet
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
