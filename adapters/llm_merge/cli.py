"""``evogm-opt merge``: search merge coefficients for LLM experts from a YAML config, rebuild a run's merge from its
record (``--rebuild``), or run the CPU demo.

Registered as the ``merge`` entry point of ``evogm_opt.commands``. Nothing heavy is imported until the command
runs, so a missing ``llm`` extra is reported with the install line that brings it.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from evogm_opt.cli_faults import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    FileSystemFault,
    fail,
    fault_line,
    file_system_fault,
    install_hint,
    missing_modules,
    saved_evaluations,
    sigint_ignored,
)

PROG = "evogm-opt merge"
# exit codes (docs/llm-merge.md; evogm_opt.cli_faults): 2 the command line, the config, the inputs or the run
# folder is wrong; 1 the file system stopped a run that had started; 130 interrupted.
# What every path of the command imports from the `llm` extra (peft too for the demo's LoRA training)
LLM_MODULES = ("yaml", "pydantic", "transformers", "safetensors")


def _fail(message: str, code: int) -> int:
    return fail(PROG, message, code)


def _needs_llm_extra(*more: str) -> int | None:
    """Exit code 2 with the install line when a module of the `llm` extra is missing, before anything imports
    it (a lazy import deep in the run would otherwise end in a traceback); ``None`` when all are there."""
    missing = missing_modules(*LLM_MODULES, *more)
    if not missing:
        return None
    names = ", ".join("pyyaml (yaml)" if m == "yaml" else m for m in missing)
    message = f"needs the llm extra, which is not installed (missing: {names}); install it: {install_hint('llm')}"
    return _fail(message, EXIT_USAGE)


def _merge(args: argparse.Namespace) -> int:
    if sum((args.demo, args.config is not None, args.rebuild is not None)) != 1:
        return _fail("give one of CONFIG.yaml, --demo or --rebuild RUN (see docs/llm-merge.md)", EXIT_USAGE)
    missing = _needs_llm_extra(*(("peft",) if args.demo else ()))
    if missing is not None:
        return missing
    if args.rebuild is not None:
        return _rebuild(args)
    if args.demo:
        return _demo(args)
    pick = None
    if args.pick:
        try:
            pick = {k.strip(): float(v) for k, v in (item.split("=") for item in args.pick.split(","))}
        except ValueError:
            return _fail(f"--pick wants task=weight,task=weight; got {args.pick!r}", EXIT_USAGE)
    # the config first, before torch and transformers load (seconds): a mistake is reported at once
    try:
        from llm_merge.run.config import ConfigError, load_config
    except ImportError as exc:
        return _missing_extra(exc)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    if args.out:
        cfg = dataclasses.replace(cfg, output=args.out)
    with _run_folder_errors(Path(cfg.output), resumable=True) as outcome:
        try:
            from llm_merge.model.experts import ExpertError
            from llm_merge.run.pipeline import RunError, run_merge
            from llm_merge.tasks.jsonl import TaskError
        except ImportError as exc:
            return _missing_extra(exc)
        say = (lambda *a: None) if args.quiet else print
        try:
            with _library_output(args.quiet):
                result = run_merge(cfg, restart=args.restart, progress=not args.quiet, say=say, pick=pick)
        except (ConfigError, RunError, ExpertError, TaskError) as exc:
            return _fail(str(exc), EXIT_USAGE)
        print()
        print(result.table)
        if pick is not None:
            print(f"\npicked from the Pareto front, no new search steps; pick.json and merged-pick/ in {result.output}")
        else:
            n = result.results["n_evals"]
            print(f"\n{n} evaluations; results.json, log.jsonl, convergence.png in {result.output}")
        return 0
    return outcome.code


def _demo(args: argparse.Namespace) -> int:
    out = Path(args.out or "merge-demo")
    with _run_folder_errors(out, resumable=False) as outcome:
        try:
            from llm_merge.demo.cpu_demo import run_demo
        except ImportError as exc:
            return _missing_extra(exc)
        with _library_output(args.quiet):
            result = run_demo(out, budget_per_dim=args.budget, seed=args.seed, quiet=args.quiet)
        print()
        print(result.table)
        print(f"\nmerge demo: {result.seconds:.0f} s; experts, tasks, configs and results in {out}")
        return 0
    return outcome.code


def _missing_extra(exc: ImportError) -> int:
    return _fail(f"{exc}; install the llm extra: {install_hint('llm')}", EXIT_USAGE)


@dataclasses.dataclass
class _Outcome:
    code: int = 0


@contextmanager
def _run_folder_errors(folder: Path, *, resumable: bool) -> Iterator[_Outcome]:
    """A full or read-only disk and Ctrl-C become one line on stderr and an exit code (not a traceback), saying
    where the run can be resumed from: the run folder is written so that the same command resumes it exactly.
    Permission denied on a path outside ``folder`` (an expert, the base) is an input that cannot be read: exit 2.

    ``KeyboardInterrupt`` can arrive anywhere (inside ``os.fsync`` too); a second Ctrl-C while the line is being
    composed is ignored."""
    outcome = _Outcome()
    try:
        yield outcome
    except KeyboardInterrupt:
        with sigint_ignored():
            if resumable:
                where = f"resume in {folder} after evaluation {_saved_evaluations(folder)}"
            else:
                where = f"start it again (the demo does not resume; its files are in {folder})"
            outcome.code = _fail(f"interrupted; run the same command to {where}", EXIT_INTERRUPTED)
    except Exception as exc:
        fault = file_system_fault(exc, writes_under=folder)
        if fault is None:
            raise
        outcome.code = _fail(_file_system_message(fault, folder, resumable), fault.exit_code)


def _file_system_message(fault: FileSystemFault, folder: Path, resumable: bool) -> str:
    if fault.kind == "not-readable":
        return fault_line(fault, folder, "")
    if not resumable:
        return fault_line(fault, folder, "run the same command (the demo starts again)")
    saved = _saved_evaluations(folder)
    kept = f"evaluations up to {saved} are saved" if saved else "no evaluation was saved yet"
    return fault_line(fault, folder, f"run the same command to resume ({kept})")


def _saved_evaluations(folder: Path) -> int:
    """How many evaluations a resume keeps: the checkpoint's count (the log may run one step ahead, and that step
    is evaluated again). 0 when there is no readable checkpoint. Read from the checkpoint's metadata only: fast,
    whatever the optimizer's size."""
    return saved_evaluations(folder / "checkpoint.evogm") or 0


@contextmanager
def _library_output(quiet: bool) -> Iterator[None]:
    """transformers' and the hub's progress bars ("Loading weights", "Writing model shards") off, so that only the
    run's own progress is printed; with ``--quiet`` their info and warning messages too (errors stay). Restored on
    exit, for callers of :func:`main` in a longer-lived process."""
    try:
        import transformers
    except ImportError:
        yield
        return
    logging = transformers.utils.logging
    bars, verbosity = logging.is_progress_bar_enabled(), logging.get_verbosity()
    hub = _hub_progress_bars()
    logging.disable_progress_bar()
    if hub is not None:
        hub[1]()
    if quiet:
        logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
        if hub is not None and hub[0]:
            hub[2]()


def _hub_progress_bars() -> tuple[bool, Callable[[], Any], Callable[[], Any]] | None:
    """(enabled now, disable, enable) for huggingface_hub's bars; ``None`` without the hub."""
    try:
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    except ImportError:
        return None
    return not are_progress_bars_disabled(), disable_progress_bars, enable_progress_bars


def _rebuild(args: argparse.Namespace) -> int:
    if args.out is None:
        return _fail("--rebuild: give --out OUT, a new folder for the rebuilt merge", EXIT_USAGE)
    out = Path(args.out)
    with _run_folder_errors(out, resumable=False) as outcome:
        from llm_merge.model.experts import ExpertError
        from llm_merge.run.pipeline import RunError
        from llm_merge.run.rebuild import rebuild

        say = (lambda *a: None) if args.quiet else print
        try:
            with _library_output(args.quiet):
                rebuild(args.rebuild, args.out, device=args.device, say=say)
        except (RunError, ExpertError, ValueError) as exc:
            return _fail(f"--rebuild: {exc}", EXIT_USAGE)
        except OSError as exc:
            if file_system_fault(exc, writes_under=out) is not None:
                raise  # one line from _run_folder_errors: a write (exit 1) or an input it cannot read (exit 2)
            return _fail(f"--rebuild: {exc}", EXIT_USAGE)
        say(f"rebuilt merge in {args.out}")
        return 0
    return outcome.code


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
    try:
        return int(args.func(args))
    except KeyboardInterrupt:  # before the run folder was known (reading the config, importing): nothing to resume
        return _fail("interrupted before the run started; nothing was written", EXIT_INTERRUPTED)
