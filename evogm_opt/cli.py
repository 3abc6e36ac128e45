"""``evogm-opt`` command line: ``bench`` runs the side-by-side synthetic benchmark."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _bench(args: argparse.Namespace) -> int:
    try:
        from evogm_bench.peers import PEERS
        from evogm_bench.runner import RunSpec, load_records, run_grid, summary_table
    except ImportError as exc:  # the benchmarks ship with the distribution; this only fails on a broken install
        print(f"evogm-opt bench: cannot import the benchmark package: {exc}", file=sys.stderr)
        return 2
    unknown = [o for o in args.optimizers if o not in PEERS]
    if unknown:
        print(f"unknown optimizers {unknown}; available: {sorted(PEERS)}", file=sys.stderr)
        return 2
    specs = [
        RunSpec(o, ls, d, b * d if args.budget_per_dim else b, s)
        for o in args.optimizers
        for ls in args.landscapes
        for d in args.dims
        for b in args.budgets
        for s in range(args.seeds)
    ]
    out = Path(args.out)
    start = time.perf_counter()
    run_grid(specs, out, workers=args.workers, progress=not args.quiet)
    wanted = {spec.key for spec in specs}
    records = [r for r in load_records(out) if r["key"] in wanted]
    print()
    print("True accuracy of each optimizer's recommendation (higher is better): median [IQR] over seeds")
    print(summary_table(records, list(args.optimizers)))
    print(f"\n{len(records)} runs in {out} ({time.perf_counter() - start:.1f} s this invocation)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from evogm_opt import __version__

    parser = argparse.ArgumentParser(prog="evogm-opt", description=__doc__)
    parser.add_argument("--version", action="version", version=f"evogm-opt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="side-by-side runs on synthetic merge-like landscapes")
    bench.add_argument(
        "--optimizers", nargs="+", default=["evogm", "evogm-paper", "cmaes", "pso-merging", "model-swarms", "random"]
    )
    bench.add_argument("--landscapes", nargs="+", default=["ellipsoid-F200", "rastrigin-R200"])
    bench.add_argument("--dims", nargs="+", type=int, default=[8])
    bench.add_argument("--budgets", nargs="+", type=int, default=[20], help="evaluations (per dim, see next flag)")
    bench.add_argument("--absolute-budget", dest="budget_per_dim", action="store_false", help="budgets are totals")
    bench.add_argument("--seeds", type=int, default=5)
    bench.add_argument("--workers", type=int, default=None)
    bench.add_argument("--out", default="bench-results/bench.jsonl")
    bench.add_argument("--quiet", action="store_true")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
