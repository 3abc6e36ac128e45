"""``evogm-opt merge CONFIG.yaml``: search merge coefficients, checkpointing every step, and report.

The output folder holds:

- ``run.lock`` — held by the one process working in the folder (a second one is refused, naming the holder);
- ``run.json`` — the resolved config, its fingerprint and the content identity of the inputs (a resume with
  another config, or with an expert, base or task file whose content changed, is refused);
- ``checkpoint.evogm`` — the optimizer, saved atomically after every ``tell``;
- ``log.jsonl`` — one line per evaluation (λ, per-task scores, best so far), written *before* the ``tell`` it
  belongs to, so after a crash the log's lines past the checkpoint are set aside (the whole old log is kept as
  ``log-aside-<time>.jsonl``) and the step is re-run; since evaluation is
  deterministic and the optimizer resumes exactly, the continuation is the same as an uninterrupted run (on the
  same device and torch thread count);
- at the end: ``results.json`` (best λ and baselines on val/test of seen and unseen tasks), ``convergence.png``
  and ``merged/`` (the best merge as a Hugging Face folder: safetensors, config, tokenizer).

A run is four steps, one module each: ``assemble`` (the fitness from the config), ``journal`` (the run folder),
``search`` (the ask/tell loop) and ``report`` (scores, tables, plots, ``--pick``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evogm_opt.threads import torch_threads
from llm_merge.run.assemble import assemble_run, load_tasks
from llm_merge.run.config import MergeRunConfig
from llm_merge.run.journal import Journal, RunError
from llm_merge.run.report import pick as pick_point
from llm_merge.run.report import pick_refusal, report
from llm_merge.run.search import open_optimizer, search

__all__ = ["RunError", "RunResult", "run_merge"]


@dataclass
class RunResult:
    results: dict[str, Any]
    table: str
    output: Path
    seconds: float
    complete: bool = False  # True: the run had already finished; nothing was searched or scored this time


def run_merge(
    cfg: MergeRunConfig,
    *,
    restart: bool = False,
    progress: bool = True,
    say: Callable[..., Any] = print,
    pick: dict[str, float] | None = None,
) -> RunResult:
    """Search (or resume), then report. With ``pick`` (task -> weight), no search step is added: the archived
    Pareto point with the best weighted mean is scored on every task and saved to ``merged-pick/``."""
    with torch_threads(cfg.threads) if cfg.threads else nullcontext():
        return _run(cfg, restart, progress, say, pick)


def _run(
    cfg: MergeRunConfig, restart: bool, progress: bool, say: Callable[..., Any], pick: dict[str, float] | None
) -> RunResult:
    start = time.perf_counter()
    refusal = None if pick is None else pick_refusal(cfg, pick)
    if refusal is not None:  # a typo in --pick is known from the config: say it before the folder or the model
        raise RunError(refusal)
    journal = Journal.claim(cfg, restart)  # the folder is locked before anything heavy loads
    try:
        return _claimed(cfg, journal, start, progress, say, pick)
    finally:
        journal.release()


def _claimed(
    cfg: MergeRunConfig,
    journal: Journal,
    start: float,
    progress: bool,
    say: Callable[..., Any],
    pick: dict[str, float] | None,
) -> RunResult:
    """The run, while this process holds the folder's lock."""
    for note in (journal.lock.note, _taken_over(journal)):
        if note:
            say(note)
    done = journal.completed(cfg) if pick is None else None
    if done is not None:  # nothing to search: say so instead of re-scoring and rewriting merged/
        say(
            f"{journal.folder} holds a complete run of this config ({done['n_evals']} evaluations; stopped: "
            f"{done.get('stop_reason')}); results.json and merged/ are from it. To continue it, raise "
            f"optimizer.budget (now {cfg.optimizer.budget}) or loosen stopping: and run again; --restart starts over "
            "(the old run is moved to previous-*/)."
        )
        return RunResult(done, done.get("table", ""), journal.folder, time.perf_counter() - start, complete=True)
    # the base, experts and task files are what the run started with; the thread count, said where it changed
    for note in (journal.verify_inputs(cfg), journal.threads_note(cfg)):
        if note:
            say(note)
    tasks = load_tasks(cfg)
    asm = assemble_run(cfg, tasks)
    names = ", ".join(e.name for e in asm.experts)
    say(f"{len(asm.experts)} experts ({names}), {len(tasks)} task splits, on {asm.model.device}")
    opt = open_optimizer(cfg, journal, asm.fitness, say)
    searched = search(cfg, asm.fitness, opt, journal, progress, say=say)
    say(f"search ended: {searched.reason}")
    if pick is not None:
        results, table = pick_point(cfg, pick, opt, searched.entries, asm, tasks, journal)
    else:
        results, table = report(cfg, opt, searched, asm, tasks, journal)
    return RunResult(results, table, journal.folder, time.perf_counter() - start)


def _taken_over(journal: Journal) -> str | None:
    """A line about the record a killed process left in the lock file (its lock went with it)."""
    held = journal.lock.taken_over
    if not held:
        return None
    saved = journal.checkpoint.exists()  # a run killed before its first checkpoint (or set aside by --restart)
    then = "continuing from its checkpoint" if saved else "no checkpoint here: starting from the first evaluation"
    return (
        f"{journal.folder}: the run of pid {held.get('pid')} on {held.get('host')} (since {held.get('started')}) "
        f"ended without releasing the folder; {then}"
    )
