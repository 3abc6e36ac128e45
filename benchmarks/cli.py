"""``evogm-opt bench``: optimizers side by side on synthetic landscapes; ``bench report``, ``bench compare``,
``bench fidelity`` (at equal cost in validation examples), ``bench cost-goal`` (the same value for less),
``bench coco``, ``bench hpo``, the timings ``bench merge-speed``, ``bench overhead`` and ``bench thread-load``,
and the research experiments ``bench research …`` are its subcommands, so the bench has one way in.

Registered as the ``bench`` entry point of ``evogm_opt.commands``; the libraries of the ``bench`` extra are
imported only when a command runs, so a missing one is named with the extra that brings it.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from pathlib import Path

from evogm_opt.cli_faults import EXIT_INTERRUPTED, EXIT_USAGE, fail, fault_line, file_system_fault, install_hint

DEFAULT_OPTIMIZERS = ["evogm", "evogm-paper", "cmaes", "pso-merging", "model-swarms", "random"]


class _Parser(argparse.ArgumentParser):
    """argparse that states a bad value in one line (exit code 2) instead of a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} -h')\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown, and names such as ``lq-cmaes`` or ``evogm-seq`` never split at their hyphen when help wraps."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(
            " ".join(text.split()), width, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False
        )


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
    return PEERS.choices()


def _landscape_forms() -> str:
    from evogm_bench.landscapes import LANDSCAPES

    return LANDSCAPES.choices()


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
        except ValueError as exc:  # the registry's message lists the names it knows
            print(f"evogm-opt bench: {exc}", file=sys.stderr)
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


def _compare(args: argparse.Namespace) -> int:
    bench = _import_bench()
    from evogm_bench import compare

    for path in args.results:
        if not Path(path).exists():
            print(f"no such results file: {path}", file=sys.stderr)
            return 2
    targets = [compare.Target((peer,)) for peer in args.against or []]
    targets += [compare.Target(tuple(group)) for group in args.best_of or []]
    if not targets:
        print("evogm-opt bench compare: name peers with --against and/or --best-of", file=sys.stderr)
        return 2
    cells = bench.report.load_cells(args.results, args.landscapes or [""], args.seeds, tuple(args.checkpoints))
    if not any(args.optimizer in res.values for res in cells.values()):
        print(f"evogm-opt bench compare: no records of {args.optimizer!r} in the cells chosen", file=sys.stderr)
        return 2
    comparisons = compare.compare(cells, args.optimizer, targets, args.holm)
    print(compare.render(args.optimizer, comparisons, args.holm, per_cell=not args.brief), end="")
    return 0


def _cost_goal(args: argparse.Namespace) -> int:
    _import_bench()
    from evogm_bench import cost_goal

    for path in args.results:
        if not Path(path).exists():
            print(f"no such results file: {path}", file=sys.stderr)
            return 2
    try:
        if args.curve is not None:
            names = [args.reference, args.optimizer, *args.curve]
            print(cost_goal.curve(args.results, names, args.checkpoints, args.seeds, args.landscapes or [""]), end="")
            return 0
        goal = cost_goal.Goal(args.optimizer, args.reference, args.fraction, args.tolerance)
        cells = cost_goal.goal_cells(args.results, goal, args.checkpoints, args.seeds, args.landscapes or [""])
        rows = cost_goal.compare_cells(cells, goal)
    except ValueError as exc:
        return fail("evogm-opt bench cost-goal", str(exc), EXIT_USAGE)
    if not rows:
        names = f"{args.optimizer!r} and {args.reference!r}"
        return fail("evogm-opt bench cost-goal", f"no cell has records of both {names}", EXIT_USAGE)
    print(cost_goal.render(rows, goal, cost_goal.noninferiority(cells, goal)), end="")
    return 0


def _hpo(args: argparse.Namespace) -> int:
    try:
        import optuna  # noqa: F401
        import sklearn  # noqa: F401
        from evogm_bench.hpo import report, run
        from evogm_bench.hpo.spaces import SPACES
    except ImportError as exc:
        return fail("evogm-opt bench hpo", f"{exc}; install the hpo extra: {install_hint('hpo')}", EXIT_USAGE)
    try:
        for name in args.spaces:
            SPACES.resolve(name)
        for name in [*args.samplers, *args.rerun]:
            run.SAMPLERS.resolve(name)
        if "evogm" in args.samplers:  # EVOGM_HPO_KWARGS' settings checked (a removed one refused) before any job
            run.SAMPLERS.resolve("evogm")(0)
    except ValueError as exc:  # the registry's message lists the names it knows
        return fail("evogm-opt bench hpo", str(exc), EXIT_USAGE)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        settings = (tuple(args.samplers), args.trials, str(out), args.max_rows, tuple(args.rerun), tuple(args.budgets))
        jobs = [run.Job(space, seed, *settings) for seed in seeds for space in args.spaces]
        start = time.perf_counter()
        for done, job in enumerate(run.run_jobs(jobs, args.workers), 1):
            print(f"[{done}/{len(jobs)}] {job.space} seed {job.seed} ({time.perf_counter() - start:.0f} s)", flush=True)
        print(f"wall time {time.perf_counter() - start:.0f} s", flush=True)
    records = [r for r in run.load_records(out) if r["sampler"] in args.samplers and r["space"] in args.spaces]
    if not records:
        return fail("evogm-opt bench hpo", f"no records in {out} for these spaces and samplers", EXIT_USAGE)
    samplers = [s for s in run.SAMPLERS if s in args.samplers]  # the registry's order: the report's columns
    text = report.markdown(records, samplers)
    (out / "report.md").write_text(text)
    report.plots(records, out, samplers)
    print(text)
    return 0


def _fidelity(args: argparse.Namespace) -> int:
    """``bench fidelity``: the runs of ``bench`` charged in validation examples (benchmarks/cost.py)."""
    bench = _import_bench()
    from evogm_bench import cost

    seeds = range(args.first_seed, args.first_seed + args.seeds)
    landscapes = _resolve_landscapes(args.landscapes)
    try:
        specs, notes = cost.plan(
            args.optimizers, landscapes, args.dims, args.budgets, seeds, args.min_examples, args.eta
        )
    except ValueError as exc:
        return fail("evogm-opt bench fidelity", str(exc), EXIT_USAGE)
    for note in notes:
        print(note, file=sys.stderr)
    out = Path(args.out)
    start = time.perf_counter()
    bench.runner.run_grid(specs, out, workers=args.workers, progress=not args.quiet, run=cost.run_cost)
    wanted = {spec.key for spec in specs}
    records = [r for r in bench.runner.load_records(out) if r["key"] in wanted]
    checkpoints = sorted({k for k in (10, 20, 50) if k <= max(args.budgets)} | set(args.budgets))
    columns = [name for name in args.optimizers if name in {spec.optimizer for spec in specs}]
    print()
    print(cost.REPORT_NOTE + "\n")
    print(bench.report.markdown_report(records, columns, reference=args.reference, checkpoints=checkpoints))
    print(f"{len(records)} runs in {out} ({time.perf_counter() - start:.1f} s this invocation)")
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
        formatter_class=_HelpFormatter,
        description="Run optimizers side by side. Landscapes: "
        + _landscape_forms()
        + ", or the groups merge-suite, bbob-suite, sbox-suite. Subcommands: "
        + ", ".join(f"'evogm-opt bench {name} -h'" for name in SUBCOMMANDS)
        + ".",
    )
    bench.add_argument("--optimizers", nargs="+", default=DEFAULT_OPTIMIZERS, help=f"any of: {_known_peers()}")
    bench.add_argument("--landscapes", nargs="+", default=["merge-f10-F200", "merge-f15-R200"], help="names or groups")
    bench.add_argument("--dims", nargs="+", type=_positive_int, default=[8], help="coordinates N")
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
    bench.add_argument("--out", default="bench-results/bench.jsonl", help="records (JSONL); finished runs are skipped")
    bench.add_argument("--quiet", action="store_true", help="no progress lines")
    bench.set_defaults(func=_bench)
    return bench


def build_report_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="evogm-opt bench report",
        description="Tables, statistics and PNG plots.",
        formatter_class=_HelpFormatter,
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


def build_compare_parser() -> argparse.ArgumentParser:
    from evogm_bench.report import seed_range

    parser = _Parser(
        prog="evogm-opt bench compare",
        description="One optimizer against peers, cell by cell (landscape × N × checkpoint): median better in how "
        "many cells, A12, two-sided Mann–Whitney with Holm's correction (docs/benchmarks.md).",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("results", nargs="+", help="JSONL files written by 'evogm-opt bench'")
    parser.add_argument("--optimizer", default="evogm", help="the optimizer under test")
    parser.add_argument(
        "--against",
        nargs="+",
        metavar="PEER",
        help="peers, each compared on its own (give --against, --best-of or both)",
    )
    parser.add_argument(
        "--best-of",
        nargs="+",
        action="append",
        metavar="PEER",
        help="a group of peers: compare with the one of best median in each cell (repeatable)",
    )
    parser.add_argument(
        "--landscapes",
        nargs="+",
        default=None,
        metavar="PREFIX",
        help="landscape name prefixes, e.g. merge-; None: every landscape",
    )
    parser.add_argument(
        "--seeds", type=seed_range, default=None, help="a range A:B keeps seeds A … B−1; None: every seed"
    )
    parser.add_argument("--checkpoints", nargs="+", type=_positive_int, default=[10, 20], help="budgets k·N")
    parser.add_argument(
        "--holm", choices=("target", "all"), default="target", help="correct over each target's cells, or all"
    )
    parser.add_argument("--brief", action="store_true", help="summaries only, no line per cell")
    parser.set_defaults(func=_compare)
    return parser


def build_hpo_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="evogm-opt bench hpo",
        description="GenerativeSampler against Optuna's samplers on an SVM (HPO) and an MLP (NAS) space on "
        "scikit-learn's digits, offline (docs/hpo.md); the held-out space hgb (gradient boosting on diabetes) runs "
        "only when named. Writes one job file per (space, seed), report.md and plots.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--out", required=True, help="folder for the job files, report.md and plots")
    parser.add_argument(
        "--spaces",
        nargs="+",
        default=["svm", "mlp"],
        help="tuning spaces: svm, mlp, or hgb and rf (held out; docs/hpo.md)",
    )
    parser.add_argument(
        "--samplers",
        nargs="+",
        default=["evogm", "tpe", "gp", "cmaes", "random"],
        help="samplers; round three's research samplers (evogm-seq, -fast, -mixed, -cond: docs/research.md, "
        "ablations 20, 29-31) run only when named",
    )
    parser.add_argument("--seeds", type=_positive_int, default=10, help="number of seeds (instances)")
    parser.add_argument("--first-seed", type=_non_negative_int, default=0, help="seeds first-seed … +seeds−1")
    parser.add_argument("--trials", type=_positive_int, default=100, help="trials per study")
    parser.add_argument("--budgets", nargs="+", type=_positive_int, default=[30, 60, 100], help="trials reported")
    parser.add_argument("--workers", type=_positive_int, default=2, help="parallel (space, seed) jobs, one core each")
    parser.add_argument("--rerun", nargs="+", default=[], help="samplers to run again although recorded")
    parser.add_argument("--report-only", action="store_true", help="redraw report.md and the plots from the records")
    parser.add_argument("--max-rows", type=_positive_int, default=None, help=argparse.SUPPRESS)  # tests: a slice
    parser.set_defaults(func=_hpo)
    return parser


def _fidelity_peers() -> str:
    try:
        from evogm_bench.multifidelity import FIDELITY_PEERS
    except ImportError:
        return "(install the bench extra to list them)"
    return FIDELITY_PEERS.choices()


def build_fidelity_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="evogm-opt bench fidelity",
        formatter_class=_HelpFormatter,
        description="Optimizers at equal cost in validation examples (issue 30): each run may spend budget·N·n_val "
        "examples; multi-fidelity peers score candidates on fewer and promote the best, full-fidelity peers pay "
        "n_val per evaluation. Merge-like landscapes only. Records carry 'examples' beside 'evals'.",
    )
    parser.add_argument(
        "--optimizers",
        nargs="+",
        default=["evogm", "sh-evogm", "sh-random", "optuna-tpe-hyperband"],
        help=f"multi-fidelity: {_fidelity_peers()}; or any peer of 'evogm-opt bench' (at full fidelity)",
    )
    parser.add_argument(
        "--min-examples",
        type=_positive_int,
        default=22,
        help="the fewest examples a candidate is scored on: rungs ⌊n_val/η^k⌋ down to the last at least this, "
        "then n_val (n_val 200, η 3: 22, 66, 200)",
    )
    parser.add_argument("--eta", type=_int_at_least(2), default=3, help="promotion factor η: the best 1/η go on")
    parser.add_argument("--landscapes", nargs="+", default=["merge-f10-F200", "merge-f15-R200"], help="merge-like")
    parser.add_argument("--dims", nargs="+", type=_positive_int, default=[8], help="coordinates N")
    parser.add_argument(
        "--budgets", nargs="+", type=_positive_int, default=[20], help="cost per dimension, in full evaluations"
    )
    parser.add_argument("--seeds", type=_positive_int, default=5, help="number of seeds (instances)")
    parser.add_argument("--first-seed", type=_non_negative_int, default=0, help="seeds first-seed … +seeds−1")
    parser.add_argument("--workers", type=_positive_int, default=None, help="processes (None: one per core)")
    parser.add_argument("--reference", default="evogm", help="optimizer the statistics compare against")
    parser.add_argument("--out", default="bench-results/bench-fidelity.jsonl", help="records (JSONL); kept on rerun")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.set_defaults(func=_fidelity)
    return parser


def build_cost_goal_parser() -> argparse.ArgumentParser:
    from evogm_bench.report import seed_range

    parser = _Parser(
        prog="evogm-opt bench cost-goal",
        description="The same result for less (issue 30): on 'bench fidelity' records, an optimizer read at a "
        "fraction of the cost against the reference read at the whole cost, cell by cell (landscape × N × "
        "checkpoint); a cell matches when the median true value is at most --tolerance lower and not "
        "significantly lower (two-sided Mann–Whitney, Holm over the cells).",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("results", nargs="+", help="JSONL files written by 'evogm-opt bench fidelity'")
    parser.add_argument("--optimizer", default="sh-evogm", help="the optimizer read at --fraction of the cost")
    parser.add_argument("--reference", default="evogm", help="the optimizer read at the whole cost")
    parser.add_argument("--fraction", type=float, default=0.5, help="share of the reference's cost")
    parser.add_argument("--tolerance", type=float, default=0.005, help="how much lower a median may be")
    parser.add_argument("--checkpoints", nargs="+", type=_positive_int, default=[10, 20], help="budgets k·N")
    parser.add_argument(
        "--seeds", type=seed_range, default=None, help="a range A:B keeps seeds A … B−1; None: every seed"
    )
    parser.add_argument(
        "--landscapes", nargs="+", default=None, metavar="PREFIX", help="landscape name prefixes; None: all"
    )
    parser.add_argument(
        "--curve",
        nargs="*",
        metavar="MORE",
        default=None,
        help="instead: cost against value — per optimizer (the reference, --optimizer and MORE) and N, the mean over "
        "landscapes of the median true value at each checkpoint",
    )
    parser.set_defaults(func=_cost_goal)
    return parser


def build_coco_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="evogm-opt bench coco",
        description="COCO bbob suite (year: 2023) via cocoex.",
        formatter_class=_HelpFormatter,
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


def build_merge_speed_parser() -> argparse.ArgumentParser:
    """``bench merge-speed``'s own parser; torch and the ``llm`` extra load only when this subcommand runs."""
    from evogm_bench.merge_speed import build_parser

    return build_parser()


def build_overhead_parser() -> argparse.ArgumentParser:
    """``bench overhead``'s own parser (benchmarks/overhead_high_dim.py); torch loads only when it runs."""
    from evogm_bench.overhead_high_dim import build_parser

    return build_parser()


def build_thread_load_parser() -> argparse.ArgumentParser:
    """``bench thread-load``'s own parser (benchmarks/thread_load.py)."""
    from evogm_bench.thread_load import build_parser

    return build_parser()


def build_research_parser() -> argparse.ArgumentParser:
    """``bench research``'s own parser: the experiments of docs/research.md (benchmarks/research/cli.py)."""
    from evogm_bench.research.cli import build_parser

    return build_parser()


SUBCOMMANDS = {
    "report": build_report_parser,
    "compare": build_compare_parser,
    "fidelity": build_fidelity_parser,
    "cost-goal": build_cost_goal_parser,
    "coco": build_coco_parser,
    "hpo": build_hpo_parser,
    "merge-speed": build_merge_speed_parser,
    "overhead": build_overhead_parser,
    "thread-load": build_thread_load_parser,
    "research": build_research_parser,
}


def main(argv: list[str]) -> int:
    """side-by-side runs on synthetic landscapes, reports, comparisons, timings, research ('evogm-opt bench -h')"""
    sub = argv[0] if argv[:1] and argv[0] in SUBCOMMANDS else None
    args = SUBCOMMANDS[sub]().parse_args(argv[1:]) if sub else build_parser().parse_args(argv)
    prog = "evogm-opt bench" + (f" {sub}" if sub else "")
    try:
        return int(args.func(args))
    except KeyboardInterrupt:  # finished runs are in --out already; `bench` skips them when run again
        out = getattr(args, "out", None)
        kept = f" (finished runs in {out} are kept)" if out else ""
        return fail(prog, f"interrupted; run the same command to continue{kept}", EXIT_INTERRUPTED)
    except Exception as exc:  # a full disk or a folder that cannot be written: one line, not a traceback
        if getattr(args, "out", None) is None:
            raise
        folder = Path(args.out).parent if args.func in (_bench, _fidelity) else Path(args.out)  # --out: a file
        fault = file_system_fault(exc, writes_under=folder)
        if fault is None:
            raise
        kept = args.func in (_bench, _fidelity)
        then = "run the same command (finished runs are kept)" if kept else "run the same command"
        return fail(prog, fault_line(fault, folder, then), fault.exit_code)
