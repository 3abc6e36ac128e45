"""The merge search: a thin caller of :func:`evogm_opt.loop.optimize` that journals every step.

One step is the loop's: ask a generation, score it (one in-place rebuild per candidate, or all candidates in
shared batched-λ forwards), append the log lines (before the ``tell``, fsynced), tell, checkpoint, check the
stopping rules. A resumed run replays what the journal holds first — the stopping monitor is fed the logged
generations again and a nonlinear merge is rebased through the recorded basis shifts — so the continuation is
the same as an uninterrupted run (on the same device and torch thread count).

For nonlinear merges (TIES, DARE) under EvoGM, a basis shift materialises the shift's top merges as the new
experts (:meth:`MergeFitness.rebase`) and candidates are scored at the optimizer's current coordinates, which
come with the asked rows (``ask_with_coordinates``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from evogm_opt import AskedBatch, BasisShift, GenerativeOptimizer, Optimizer, registry
from evogm_opt.loop import optimize
from evogm_opt.stopping import StoppingMonitor, StoppingRules, budget_reason
from llm_merge.model.fitness import MergeFitness
from llm_merge.run.config import MergeRunConfig, rebase_bounds_problem
from llm_merge.run.journal import Journal, RunError


@dataclass
class Searched:
    entries: list[dict[str, Any]]  # the log's evaluation lines, resumed ones included
    reason: str  # why the search ended


def new_optimizer(cfg: MergeRunConfig, dim: int) -> Optimizer:
    """The configured optimizer from :mod:`evogm_opt.registry`, maximising; with several seen tasks it is told
    one score per task, searches on their weighted mean and archives the Pareto front."""
    spec = cfg.optimizer
    kwargs: dict[str, Any] = {"seed": spec.seed, "maximize": True, **spec.options}
    if spec.popsize is not None:
        kwargs["popsize"] = spec.popsize
    opt = registry.create(spec.name, dim, **kwargs)
    if len(cfg.seen) >= 2:
        opt.objective_weights = np.array([t.weight for t in cfg.seen])
    return opt


def open_optimizer(cfg: MergeRunConfig, journal: Journal, fitness: MergeFitness, say: Callable[..., Any]) -> Optimizer:
    """The checkpointed optimizer of a resumed run, or a new one; refused where the merge cannot follow it."""
    fresh = new_optimizer(cfg, fitness.dim)
    opt = journal.load_optimizer(fitness.dim, fresh)
    if opt is not None:
        say(f"resuming from {journal.checkpoint} at evaluation {opt.n_evals}")
    else:
        opt = fresh
    problem = rebase_bounds_problem(opt, fitness.method, cfg.method)  # the grouped layouts' optimizer is built here
    if problem is not None:
        raise RunError(problem)
    shifts = isinstance(opt, GenerativeOptimizer) and opt.config.n_rounds != 1 and not opt.never_shifts
    if shifts and not fitness.method.linear and len(fitness.layout.group_names) > 1:
        raise RunError(
            f"{cfg.method} with the {cfg.layout} layout under EvoGM's basis shifts is not defined (a shift makes "
            "whole merges the new experts); use task_arithmetic, layout per_expert, or an optimizer without shifts "
            f"(EvoGM with optimizer.options.config.handoff_dim <= {opt.dim}, this search's dimension, hands off first)"
        )
    return opt


def replay_monitor(cfg: MergeRunConfig, entries: list[dict[str, Any]]) -> tuple[StoppingMonitor, str | None]:
    """The stopping monitor, fed the logged generations again (so a resumed run counts stagnation exactly)."""
    s = cfg.stopping
    monitor = StoppingMonitor(StoppingRules(cfg.optimizer.budget, s.max_seconds, s.patience, s.min_improvement), True)
    reason = None
    for i, e in enumerate(entries):
        if i + 1 == len(entries) or entries[i + 1]["generation"] != e["generation"]:
            reason = monitor.update(e["best"], e["evaluation"], e["elapsed_s"])
    return monitor, reason


class _Asking:
    """The optimizer as the loop drives it; with ``coordinates``, ``ask`` keeps the asked rows' basis version and
    current coordinates (:class:`AskedBatch`) for the step that scores them."""

    def __init__(self, opt: Optimizer, coordinates: bool, owner: str | None = None) -> None:
        self.opt, self.coordinates, self.owner = opt, coordinates, owner
        self.asked: AskedBatch | None = None  # the last ask's rows, basis version and coordinates

    def ask(self, n: int) -> np.ndarray:
        if not self.coordinates:
            return self.opt.ask(n)
        self.asked = self.opt.ask_with_coordinates(n)  # type: ignore[attr-defined]  # GenerativeOptimizer only
        return self.asked.x

    def tell(self, x: np.ndarray, y: Any) -> None:
        self.opt.tell(x, y)

    def save(self, path: Any) -> None:
        """The checkpoint, carrying the run's owner string (which proves on resume whose checkpoint it is)."""
        self.opt.save(path, owner=self.owner)

    def stop(self, default_rules: bool = True) -> bool:
        # forwarded: optimize() keeps the optimizer's default rules off, since the run has a budget of its own
        return self.opt.stop(default_rules=default_rules)

    @property
    def stop_reason(self) -> str | None:
        return self.opt.stop_reason if self.stop(default_rules=False) else None

    @property
    def best(self) -> Any:
        return self.opt.best

    @property
    def n_evals(self) -> int:
        return self.opt.n_evals

    @property
    def popsize(self) -> int:
        return self.opt.popsize


class _Step:
    """Scores one generation and journals it; what the log lines need is kept between the two calls."""

    def __init__(self, cfg: MergeRunConfig, fitness: MergeFitness, asking: _Asking, journal: Journal, entries) -> None:
        self.cfg, self.fitness, self.asking, self.journal, self.entries = cfg, fitness, asking, journal, entries
        self.generation = entries[-1]["generation"] if entries else 0
        self.best = max((e["score"] for e in entries if e["score"] is not None), default=float("-inf"))
        self.start = time.perf_counter() - (entries[-1]["elapsed_s"] if entries else 0.0)
        self.version: int | None = None
        self.coordinates: np.ndarray | None = None
        self.scores: list[list[float]] = []
        self.told = 0  # rows of the last generation

    def evaluate(self, x: np.ndarray) -> Any:
        """Per-task scores of each row; told as one value per row (one task) or one per task."""
        self.version, self.coordinates = self._coordinates()
        self.generation += 1
        path = "rebuild" if self.asking.coordinates else self.cfg.eval_path
        if path == "auto":
            path = self.fitness.choose_path(len(x))
        if path == "batched":
            self.scores = self.fitness.task_scores_batched(x)
        else:
            rows = x if self.coordinates is None else self.coordinates
            self.scores = [self.fitness.task_scores(row) for row in rows]
        if len(self.fitness.tasks) >= 2:
            return np.asarray(self.scores, dtype=float)
        return [self.fitness.combine(s) for s in self.scores]

    def _coordinates(self) -> tuple[int | None, np.ndarray | None]:
        if not self.asking.coordinates:
            return None, None
        asked = self.asking.asked
        assert asked is not None  # set by the ask of this step
        if asked.basis_version != self.fitness.basis_version:
            raise RunError(f"asked rows of basis {asked.basis_version}, experts are at {self.fitness.basis_version}")
        return int(asked.basis_version), np.asarray(asked.coordinates)

    def write_log(self, x: np.ndarray, _told: Any) -> None:
        """The generation's log lines, on disk before the tell: a crash before the checkpoint re-runs the step."""
        lines = [self._line(i, row, scores) for i, (row, scores) in enumerate(zip(x, self.scores))]
        self.journal.append(lines)
        self.entries += lines
        self.told = len(lines)

    def _line(self, i: int, row: np.ndarray, scores: list[float]) -> dict[str, Any]:
        value = self.fitness.combine(scores)
        if np.isfinite(value):
            self.best = max(self.best, value)
        return {
            "evaluation": self.asking.n_evals + i + 1,
            "generation": self.generation,
            "lambda": row.tolist(),
            "basis_version": self.version,
            "coordinates": None if self.coordinates is None else self.coordinates[i].tolist(),
            "score": value if np.isfinite(value) else None,
            "tasks": {t.name: s for t, s in zip(self.fitness.tasks, scores)},
            "best": self.best if np.isfinite(self.best) else None,
            "elapsed_s": round(time.perf_counter() - self.start, 3),
        }


def search(
    cfg: MergeRunConfig,
    fitness: MergeFitness,
    opt: Optimizer,
    journal: Journal,
    progress: bool,
    say: Callable[..., Any] | None = None,
) -> Searched:
    """Run (or resume) the search until the budget, the optimizer or the stopping rules end it. ``say`` hears
    of a log set aside on resume."""
    entries = journal.replay(opt, say)
    rebasing = isinstance(opt, GenerativeOptimizer) and not fitness.method.linear
    if rebasing:
        for rows in opt.shift_rows:  # replay the shifts a resumed run has been through
            fitness.rebase(rows)

        def rebase(shift: BasisShift) -> None:  # the shift's top merges become the experts
            fitness.rebase(shift.rows)

        opt.on_basis_shift = rebase
    asking = _Asking(opt, coordinates=rebasing, owner=journal.owner)
    step = _Step(cfg, fitness, asking, journal, entries)
    monitor, reason = replay_monitor(cfg, entries)
    bar = _Progress(cfg, opt, step, progress)
    try:
        if reason is None:
            reason = optimize(
                asking,
                step.evaluate,
                budget=cfg.optimizer.budget,
                monitor=monitor,
                checkpoint=journal.checkpoint,
                before_tell=step.write_log,
                after_tell=bar.advance,
                elapsed=entries[-1]["elapsed_s"] if entries else 0.0,
            )
    finally:  # also on Ctrl-C or a full disk: the bar ends its line before the command's one-line message
        bar.close()
    fitness.restore()
    reason = reason or budget_reason(opt.n_evals, cfg.optimizer.budget)
    journal.append_event({"event": "stop", "reason": reason, "evaluations": opt.n_evals})
    return Searched(entries, reason)


class _Progress:
    """tqdm over evaluations, with the best score and the generation (``after_tell``)."""

    def __init__(self, cfg: MergeRunConfig, opt: Optimizer, step: _Step, progress: bool) -> None:
        from tqdm.auto import tqdm

        self.step = step
        self.bar = tqdm(
            total=cfg.optimizer.budget, initial=opt.n_evals, unit="eval", desc="merge search", disable=not progress
        )
        if np.isfinite(step.best):
            self.bar.set_postfix(best=f"{step.best:.4f}", generation=step.generation)

    def advance(self, _opt: Any = None) -> None:
        self.bar.update(self.step.told)
        self.bar.set_postfix(best=f"{self.step.best:.4f}", generation=self.step.generation)

    def close(self) -> None:
        self.bar.close()
