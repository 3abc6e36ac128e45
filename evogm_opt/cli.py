"""``evogm-opt`` command line.

- ``evogm-opt bench [options]`` runs optimizers × landscapes × dims × budgets × seeds side by side;
- ``evogm-opt bench report RESULTS.jsonl`` turns its records into tables, statistics and plots;
- ``evogm-opt bench coco --optimizer NAME`` runs one optimizer on COCO's bbob suite for ``cocopp``;
- ``evogm-opt merge CONFIG.yaml`` searches merge coefficients for LLM experts (resumable), and
  ``evogm-opt merge --demo`` does it end to end for a tiny model on a CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

DEFAULT_OPTIMIZERS = ["evogm", "evogm-paper", "cmaes", "pso-merging", "model-swarms", "random"]


def _import_bench():
    try:
        import evogm_bench.peers
        import evogm_bench.report
        import evogm_bench.runner

        return evogm_bench
    except ImportError as exc:  # the bench ships with the distribution but needs the `bench` extra's libraries
        print(f"evogm-opt bench: {exc}; install the extra: pip install 'evogm-opt[bench]'", file=sys.stderr)
        raise SystemExit(2) from exc


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


def _bench(args: argparse.Namespace) -> int:
    bench = _import_bench()
    peers = {}
    for name in args.optimizers:
        try:
            peers[name] = bench.peers.get_peer(name)
        except ValueError as exc:
            print(f"{exc}; available: {sorted(bench.peers.PEERS)} or evogm[@preset]+key=value+...", file=sys.stderr)
            return 2
    optimizers = []
    for name in args.optimizers:
        if peers[name].available:
            optimizers.append(name)
        else:
            print(f"note: skipping {name}: {peers[name].missing_note}", file=sys.stderr)
    landscapes = _resolve_landscapes(args.landscapes)
    try:
        for name in landscapes:
            bench.landscapes.make_landscape(name, max(2, min(args.dims)))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    specs = [
        bench.runner.RunSpec(o, ls, d, b * d if args.budget_per_dim else b, s)
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
    if args.budget_per_dim:
        checkpoints = sorted({k for k in (10, 20, 50) if k <= max(args.budgets)} | set(args.budgets))
    else:
        checkpoints = [10, 20, 50]
    print(bench.report.markdown_report(records, optimizers, reference=args.reference, checkpoints=checkpoints))
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


def _merge(args: argparse.Namespace) -> int:
    try:
        from llm_merge.demo import run_demo
        from llm_merge.run import RunError, run_merge
        from llm_merge.run_config import ConfigError, load_config
    except ImportError as exc:
        print(f"evogm-opt merge: {exc}; install the extra: pip install 'evogm-opt[llm]'", file=sys.stderr)
        return 2
    if args.demo == (args.config is not None):
        print("evogm-opt merge: give either CONFIG.yaml or --demo (see docs/llm-merge.md)", file=sys.stderr)
        return 2
    if args.demo:
        result = run_demo(Path(args.out or "merge-demo"), budget_per_dim=args.budget, seed=args.seed, quiet=args.quiet)
        print()
        print(result.table)
        print(
            f"\nmerge demo: {result.seconds:.0f} s; experts, tasks, configs and results in {args.out or 'merge-demo'}"
        )
        return 0
    from llm_merge.experts import ExpertError
    from llm_merge.tasks import TaskError

    try:
        cfg = load_config(args.config)
        if args.out:
            cfg = dataclasses.replace(cfg, output=args.out)
        say = (lambda *a: None) if args.quiet else print
        pick = None
        if args.pick:
            try:
                pick = {k.strip(): float(v) for k, v in (item.split("=") for item in args.pick.split(","))}
            except ValueError:
                print(f"evogm-opt merge: --pick wants task=weight,task=weight; got {args.pick!r}", file=sys.stderr)
                return 2
        result = run_merge(cfg, restart=args.restart, progress=not args.quiet, say=say, pick=pick)
    except (ConfigError, RunError, ExpertError, TaskError) as exc:
        print(f"evogm-opt merge: {exc}", file=sys.stderr)
        return 2
    print()
    print(result.table)
    if pick is not None:
        print(f"\npicked from the Pareto front without new search steps; pick.json and merged-pick/ in {result.output}")
    else:
        print(f"\n{result.results['n_evals']} evaluations; results.json, log.jsonl, convergence.png in {result.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from evogm_opt import __version__

    parser = argparse.ArgumentParser(
        prog="evogm-opt", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"evogm-opt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser(
        "bench",
        help="side-by-side runs on synthetic landscapes (also: 'bench report', 'bench coco')",
        description="Run optimizers side by side. Landscapes: bbob-f<k>, sbox-f<k>, merge-f<k>-<R|F><n_val>, or "
        "the groups merge-suite, bbob-suite, sbox-suite. See also 'evogm-opt bench report -h' and "
        "'evogm-opt bench coco -h'.",
    )
    bench.add_argument("--optimizers", nargs="+", default=DEFAULT_OPTIMIZERS)
    bench.add_argument("--landscapes", nargs="+", default=["merge-f10-F200", "merge-f15-R200"])
    bench.add_argument("--dims", nargs="+", type=int, default=[8])
    bench.add_argument("--budgets", nargs="+", type=int, default=[20], help="evaluations per dim (see next flag)")
    bench.add_argument("--absolute-budget", dest="budget_per_dim", action="store_false", help="budgets are totals")
    bench.add_argument("--seeds", type=int, default=5)
    bench.add_argument(
        "--first-seed", type=int, default=0, help="seeds first-seed … first-seed+seeds−1 (fresh instances: a hold-out)"
    )
    bench.add_argument("--workers", type=int, default=None)
    bench.add_argument("--reference", default="cmaes", help="optimizer the statistics compare against")
    bench.add_argument("--out", default="bench-results/bench.jsonl")
    bench.add_argument("--quiet", action="store_true")
    bench.set_defaults(func=_bench)
    merge = sub.add_parser("merge", help="LLM expert merging (--demo: end to end on a CPU, no downloads)")
    merge.add_argument("config", nargs="?", help="CONFIG.yaml (schema: docs/llm-merge.md); resumes if interrupted")
    merge.add_argument("--demo", action="store_true", help="tiny model, 4 LoRA experts, EvoGM vs CMA-ES vs PSO")
    merge.add_argument("--out", default=None, help="output folder (overrides the config's; demo: merge-demo)")
    merge.add_argument("--restart", action="store_true", help="set an existing run in the output folder aside")
    merge.add_argument(
        "--pick",
        default=None,
        metavar="TASK=W,...",
        help="after the search: the Pareto point best for these seen-task weights, scored and saved (merged-pick/)",
    )
    merge.add_argument("--budget", type=int, default=20, help="demo: evaluations per expert for each search")
    merge.add_argument("--seed", type=int, default=0, help="demo: seed")
    merge.add_argument("--quiet", action="store_true")
    merge.set_defaults(func=_merge)
    return parser


def build_report_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evogm-opt bench report", description="Tables, statistics and PNG plots.")
    parser.add_argument("results", nargs="+", help="JSONL files written by 'evogm-opt bench'")
    parser.add_argument("--out", default="bench-report", help="folder for report.md and the PNG files")
    parser.add_argument("--optimizers", nargs="+", default=None, help="subset and column order")
    parser.add_argument("--reference", default="cmaes")
    parser.add_argument("--checkpoints", nargs="+", type=int, default=[10, 20, 50], help="budgets k·N to report")
    parser.add_argument("--no-plots", action="store_true")
    parser.set_defaults(func=_report)
    return parser


def build_coco_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evogm-opt bench coco", description="COCO bbob suite (year: 2023) via cocoex."
    )
    parser.add_argument("--optimizer", required=True)
    parser.add_argument("--dims", nargs="+", type=int, default=[5, 10, 20])
    parser.add_argument("--budget", type=int, default=20, help="evaluations per dimension")
    parser.add_argument("--functions", default="1-24")
    parser.add_argument("--instances", default=None, help="e.g. '1-5'; default: all of the 2023 instances")
    parser.add_argument("--out", default="coco-results")
    parser.add_argument("--quiet", action="store_true")
    parser.set_defaults(func=_coco)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["bench", "report"]:
        args = build_report_parser().parse_args(argv[2:])
    elif argv[:2] == ["bench", "coco"]:
        args = build_coco_parser().parse_args(argv[2:])
    else:
        args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
