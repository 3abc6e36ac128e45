"""``evogm-opt merge``: search merge coefficients for LLM experts from a YAML config, rebuild a run's merge from its
record (``--rebuild``), or run the CPU demo.

Registered as the ``merge`` entry point of ``evogm_opt.commands``. Nothing heavy is imported until the command
runs, so a missing ``llm`` extra is reported with the install line that brings it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path


def _merge(args: argparse.Namespace) -> int:
    try:
        from llm_merge.demo import run_demo
        from llm_merge.run import RunError, run_merge
        from llm_merge.run_config import ConfigError, load_config
    except ImportError as exc:
        print(f"evogm-opt merge: {exc}; install the extra: pip install 'evogm-opt[llm]'", file=sys.stderr)
        return 2
    if args.quiet:
        _silence_libraries()
    if sum((args.demo, args.config is not None, args.rebuild is not None)) != 1:
        print(
            "evogm-opt merge: give one of CONFIG.yaml, --demo or --rebuild RUN (see docs/llm-merge.md)", file=sys.stderr
        )
        return 2
    if args.rebuild is not None:
        return _rebuild(args)
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


def _rebuild(args: argparse.Namespace) -> int:
    from llm_merge.experts import ExpertError
    from llm_merge.rebuild import rebuild
    from llm_merge.run import RunError

    if args.out is None:
        print("evogm-opt merge --rebuild: give --out OUT, a new folder for the rebuilt merge", file=sys.stderr)
        return 2
    say = (lambda *a: None) if args.quiet else print
    try:
        rebuild(args.rebuild, args.out, device=args.device, say=say)
    except (RunError, ExpertError, ValueError, OSError) as exc:
        print(f"evogm-opt merge --rebuild: {exc}", file=sys.stderr)
        return 2
    say(f"rebuilt merge in {args.out}")
    return 0


def _silence_libraries() -> None:
    """``--quiet``: transformers' and the hub's own progress bars ("Loading weights", "Writing model shards") and
    info messages too, not only ours."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    try:
        from huggingface_hub.utils import disable_progress_bars
    except ImportError:
        return
    disable_progress_bars()


def build_parser() -> argparse.ArgumentParser:
    merge = argparse.ArgumentParser(
        prog="evogm-opt merge",
        description="LLM expert merging: a search over merge coefficients, resumable (schema: docs/llm-merge.md).",
    )
    merge.add_argument("config", nargs="?", help="CONFIG.yaml (schema: docs/llm-merge.md); resumes if interrupted")
    merge.add_argument("--demo", action="store_true", help="tiny model, 4 LoRA experts, EvoGM vs CMA-ES vs PSO")
    merge.add_argument(
        "--out", default=None, help="output folder (overrides the config's; demo: merge-demo; --rebuild: a new folder)"
    )
    merge.add_argument(
        "--rebuild",
        default=None,
        metavar="RUN",
        help="write a run's merged/ again into --out from its evogm_merge.json (RUN: the run folder or the file) "
        "and the base and expert folders it names",
    )
    merge.add_argument("--device", default=None, help="--rebuild: the device to merge on (default: the run's)")
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
    return merge


def main(argv: list[str]) -> int:
    """LLM expert merging (--demo: end to end on a CPU, no downloads)"""
    args = build_parser().parse_args(argv)
    return int(args.func(args))
