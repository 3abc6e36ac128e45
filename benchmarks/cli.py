"""``evogm-opt bench``: optimizers side by side on synthetic landscapes (``bench report``, ``bench coco`` too).

Registered as the ``bench`` entry point of ``evogm_opt.commands``; the libraries of the ``bench`` extra are
imported only when a command runs, so a missing one is named with the extra that brings it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from evogm_opt.cli_faults import EXIT_INTERRUPTED, EXIT_USAGE, fail, fault_line, file_system_fault, install_hint

DEFAULT_OPTIMIZERS = ["evogm", "evogm-paper", "cmaes", "pso-merging", "model-swarms", "random"]
LANDSCAPE_FORMS = "bbob-f<1..24>, sbox-f<1..24>, merge-f<k>-<R|F><n_val>, mergegroup-f<k>-<R|F><n_val>-g<groups>"


class _Parser(argparse.ArgumentParser):
    """argparse that states a bad value in one line (exit code 2) instead of a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} -h')\n")


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be an integer >= {minimum}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _known_peers() -> str:
    try:
        from evogm_bench.peers import PEERS
    except ImportError:
        return "(install the bench extra to list them)"
    return ", ".join(PEERS) + ", or evogm[@preset]+key=value+... (an ablation variant)"


def _import_bench():
    try:
        import evogm_bench.peers
        import evogm_bench.report
        import evogm_bench.runner

        return evogm_bench
    except ImportError as exc:  # the bench ships with the distribution but needs the `bench` extra's libraries
        fail("evogm-opt bench", f"{exc}; install the bench extra: {install_hint('bench')}", EXIT_USAGE)
        raise SystemExit(EXIT_USAGE) from exc


def _resolve_landscapes(names: list[str]) -> list[str]:
    from evogm_bench.landscapes import bbob_suite, merge_suite

    out: list[str] = []
    for name in names:
        if name == "merge-suite":
            out += merge_suite()
        elif name in ("bbob-suite", "sbox-suite"):
            out += bbob_suite(name.split("-")[0])
        else:
            out.append(name)
    return out


def _check_landscapes(bench, names: list[str], dims: list[int]) -> str | None:
    """The first landscape name or landscape × dim that cannot be built, as a message; None if all can."""
    for name in names:
        for dim in dims:
            try:
                bench.landscapes.make_landscape(name, dim)
            except ValueError as exc:
                return f"evogm-opt bench: landscape {name!r} at dim {dim}: {exc}"
    return None


def _bench(args: argparse.Namespace) -> int:
    bench = _import_bench()
    peers = {}
    for name in args.optimizers:
        try:
            peers[name] = bench.peers.get_peer(name)
        except ValueError as exc:
            print(f"evogm-opt bench: {exc}; available: {_known_peers()}", file=sys.stderr)
            return 2
    optimizers = []
    for name in args.optimizers:
        if peers[name].available:
            optimizers.append(name)
        else:
            print(f"note: skipping {name}: {peers[name].missing_note}", file=sys.stderr)
    landscapes = _resolve_landscapes(args.landscapes)
    problem = _check_landscapes(bench, landscapes, args.dims)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    specs = [
        bench.runner.RunSpec(o, ls, d, b if args.absolute_budget else b * d, s)
        for o in optimizers
        for ls in landscapes
        for d in args.dims
        for b in args.budgets
        for s in range(args.first_seed, args.first_seed + args.seeds)
    ]
    out = Path(args.out)
    start = time.perf_counter()
    bench.runner.run_grid(specs, out, workers=args.workers, progress=not args.quiet)
    wanted = {spec.key for spec in specs}
    records = [r for r in bench.runner.load_records(out) if r["key"] in wanted]
    print()
    if not args.absolute_budget:
        checkpoints = sorted({k for k in (10, 20, 50) if k <= max(args.budgets)} | set(args.budgets))
    else:
        checkpoints = [10, 20, 50]
    columns = bench.report.column_order(optimizers)  # the order `bench report` uses too
    print(bench.report.markdown_report(records, columns, reference=args.reference, checkpoints=checkpoints))
    print(f"{len(records)} runs in {out} ({time.perf_counter() - start:.1f} s this invocation)")
    return 0


def _report(args: argparse.Namespace) -> int:
    bench = _import_bench()
    records = []
    for path in args.results:
        if not Path(path).exists():
            print(f"no such results file: {path}", file=sys.stderr)
            return 2
        records += bench.runner.load_records(Path(path))
    if args.optimizers:
        records = [r for r in records if r["optimizer"] in args.optimizers]
    if not records:
        print("no records to report", file=sys.stderr)
        return 2
    text = bench.report.markdown_report(records, args.optimizers, args.reference, tuple(args.checkpoints))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text)
    pngs = [] if args.no_plots else bench.report.plots(records, out, args.optimizers)
    print(text)
    print(f"wrote {out / 'report.md'} and {len(pngs)} PNG files")
    return 0


def _coco(args: argparse.Namespace) -> int:
    _import_bench()
    from evogm_bench.coco import run_coco

    folder = run_coco(
        args.optimizer, tuple(args.dims), args.budget, args.functions, args.instances, Path(args.out), not args.quiet
    )
    print(f"post-process with: python -m cocopp --expensive {folder}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    bench = _Parser(
        prog="evogm-opt bench",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Run optimizers side by side. Landscapes: "
        + LANDSCAPE_FORMS
        + ", or the groups merge-suite, bbob-suite, sbox-suite. See also 'evogm-opt bench report -h' and "
        "'evogm-opt bench coco -h'.",
    )
    bench.add_argument("--optimizers", nargs="+", default=DEFAULT_OPTIMIZERS, help=f"any of: {_known_peers()}")
    bench.add_argument("--landscapes", nargs="+", default=["merge-f10-F200", "merge-f15-R200"])
    bench.add_argument("--dims", nargs="+", type=_positive_int, default=[8])
    bench.add_argument(
        "--budgets",
        nargs="+",
        type=_positive_int,
        default=[20],
        help="evaluations per dimension (20 at --dims 8: 160 evaluations), unless --absolute-budget",
    )
    # store_true, so that the default shown beside it (False) reads right: budgets are per dimension unless given
    bench.add_argument(
        "--absolute-budget", action="store_true", help="--budgets are total evaluations, not per dimension"
    )
    bench.add_argument("--seeds", type=_positive_int, default=5, help="number of seeds (instances)")
    bench.add_argument(
        "--first-seed",
        type=_non_negative_int,
        default=0,
        help="seeds first-seed … first-seed+seeds−1 (fresh instances: a hold-out)",
    )
    bench.add_argument("--workers", type=_positive_int, default=None, help="processes (None: one per core)")
    bench.add_argument("--reference", default="cmaes", help="optimizer the statistics compare against")
    bench.add_argument("--out", default="bench-results/bench.jsonl")
    bench.add_argument("--quiet", action="store_true")
    bench.set_defaults(func=_bench)
    return bench


def build_report_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="evogm-opt bench report",
        description="Tables, statistics and PNG plots.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("results", nargs="+", help="JSONL files written by 'evogm-opt bench'")
    parser.add_argument("--out", default="bench-report", help="folder for report.md and the PNG files")
    parser.add_argument("--optimizers", nargs="+", default=None, help="subset and column order")
    parser.add_argument("--reference", default="cmaes")
    parser.add_argument(
        "--checkpoints", nargs="+", type=_positive_int, default=[10, 20, 50], help="budgets k·N to report"
    )
    parser.add_argument("--no-plots", action="store_true")
    parser.set_defaults(func=_report)
    return parser


def build_coco_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="evogm-opt bench coco",
        description="COCO bbob suite (year: 2023) via cocoex.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--optimizer", required=True)
    parser.add_argument("--dims", nargs="+", type=_positive_int, default=[5, 10, 20])
    parser.add_argument("--budget", type=_positive_int, default=20, help="evaluations per dimension")
    parser.add_argument("--functions", default="1-24")
    parser.add_argument("--instances", default=None, help="e.g. '1-5'; default: all of the 2023 instances")
    parser.add_argument("--out", default="coco-results")
    parser.add_argument("--quiet", action="store_true")
    parser.set_defaults(func=_coco)
    return parser


def main(argv: list[str]) -> int:
    """side-by-side runs on synthetic landscapes (also: 'bench report', 'bench coco')"""
    if argv[:1] == ["report"]:
        args = build_report_parser().parse_args(argv[1:])
    elif argv[:1] == ["coco"]:
        args = build_coco_parser().parse_args(argv[1:])
    else:
        args = build_parser().parse_args(argv)
    prog = "evogm-opt bench" + (f" {argv[0]}" if argv[:1] in (["report"], ["coco"]) else "")
    try:
        return int(args.func(args))
    except KeyboardInterrupt:  # finished runs are in --out already; `bench` skips them when run again
        return fail(
            prog,
            f"interrupted; run the same command to continue (finished runs in {args.out} are kept)",
            EXIT_INTERRUPTED,
        )
    except Exception as exc:  # a full disk or a folder that cannot be written: one line, not a traceback
        folder = Path(args.out).parent if args.func is _bench else Path(args.out)  # bench's --out is a file
        fault = file_system_fault(exc, writes_under=folder)
        if fault is None:
            raise
        then = "run the same command (finished runs are kept)" if args.func is _bench else "run the same command"
        return fail(prog, fault_line(fault, folder, then), fault.exit_code)
