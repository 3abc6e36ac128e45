"""The merge search: a thin caller of :func:`evogm_opt.loop.optimize` that journals every step.

One step is the loop's: ask a generation, score it (one in-place rebuild per candidate, or all candidates in
shared batched-λ forwards), append the log lines (before the ``tell``, fsynced), tell, checkpoint, check the
stopping rules. A resumed run replays what the journal holds first — the stopping monitor is fed the logged
generations again and a nonlinear merge is rebased through the recorded basis shifts — so the continuation is
the same as an uninterrupted run (on the same device and torch thread count).

For nonlinear merges (TIES, DARE) under EvoGM, a basis shift materialises the shift's top merges as the new
experts (:meth:`MergeFitness.rebase`) and candidates are scored at the optimizer's current coordinates, which
come with the asked rows (``ask_with_coordinates``).

With ``fidelity:`` (issue 30) the loop drives an ``evogm_opt.fidelity.FidelityScheduler`` around the optimizer,
one rung a step (``_search_with_fidelity``, at the end of this module):

**Prefixes.** Each seen task's examples are put once in a fixed order, a permutation seeded by ``fidelity.seed``
and the task's name; a candidate is scored on a prefix of it. A promotion scores only the examples after the
prefix already scored and adds their correct answers to the counts kept for the candidate (in memory, and in its
log line, so a resume after ``kill -9`` has them too): a candidate promoted to full fidelity has the same score as
if it had been scored on every example at once (accuracy is a count over the examples, whatever their order). An
lm-eval seen task is cut the same way from its pool of documents (the first ``limit`` of its evaluation documents):
a rung scores its new documents with ``simple_evaluate(samples=...)`` and adds their per-document 0/1 scores
(``LmEvalTask.fidelity_problem`` says which tasks cannot be: :func:`pool_size`, :func:`pool_subset`).

**Tasks of different sizes.** The scheduler's fidelity is in examples of all seen tasks together: full fidelity is
their total ``F = Σ N_j``, and fidelity ``f`` scores ``n_j(f) = max(min(m, N_j), ⌊f · N_j / F⌋)`` examples of task j
— the same fraction of every task, but never fewer than ``m = min_examples`` (a task smaller than that, whole).
The rungs are the scheduler's, built downward from ``F`` while at least ``m`` per task on average
(``minimum = min(F, m · T)`` for T tasks). Each task's score is its own accuracy on its prefix and the value is
the weighted mean of those with the tasks' ``weight``\\ s, so a task's share of the value does not depend on its
size or on the rung.

**What the optimizer sees.** One value per candidate (the weighted mean; with several tasks there is no Pareto
archive), told once per generation by the scheduler: full-fidelity values as measured, eliminated candidates at
their last rung's value lowered just below those promoted past them. The recommendation is always a candidate
measured at full fidelity.

**Tokens.** A measurement costs the tokens of the examples it scores (:func:`llm_merge.tasks.jsonl.example_tokens`:
multiple choice, each (prompt, option) row's tokens; generation, the prompt's and ``max_new_tokens``; an lm-eval
document, its requests' as the harness encodes them, ``LmEvalTask.document_tokens``), a promotion only its new
examples'. The log, the progress line, ``results.json`` and the report show them.

**Budget.** ``optimizer.budget`` counts candidates the optimizer proposes (what it is told), as without fidelity:
generations are as large as they would be, each is finished whole (a budget never ends a search mid-promotion),
and the stopping rules are checked when a generation is told.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evogm_opt import AskedBatch, BasisShift, GenerativeOptimizer, Optimizer, registry
from evogm_opt.evogm import shape
from evogm_opt.fidelity import FidelityBatch, FidelityScheduler
from evogm_opt.loop import optimize
from evogm_opt.objectives import weighted_mean
from evogm_opt.stopping import StoppingMonitor, StoppingRules, budget_reason
from llm_merge.model.fitness import MergeFitness
from llm_merge.run.config import MergeRunConfig, rebase_bounds_problem
from llm_merge.run.journal import Journal, RunError
from llm_merge.run.schema import FidelitySpec
from llm_merge.tasks.jsonl import Task, TaskError, example_tokens, is_seq2seq


@dataclass
class Searched:
    entries: list[dict[str, Any]]  # the log's evaluation lines, resumed ones included
    reason: str  # why the search ended
    cost: dict[str, Any] | None = None  # with fidelity: measurements, tokens and examples spent, the plan


def optimizer_options(cfg: MergeRunConfig) -> dict[str, Any]:
    """The optimizer's constructor options: the config's, maximising, and without ``fidelity:`` the budget as
    ``max_evals`` (``"evogm"``'s rule reads it: the sequential shape at ≤ 4 experts and a budget ≤ 20 per expert;
    with ``fidelity:`` the scheduler needs generations, which the population shape has)."""
    spec = cfg.optimizer
    kwargs: dict[str, Any] = {"seed": spec.seed, "maximize": True, **spec.options}
    if spec.popsize is not None:
        kwargs["popsize"] = spec.popsize
    if cfg.fidelity is None:
        kwargs.setdefault("max_evals", spec.budget)
    return kwargs


def new_optimizer(cfg: MergeRunConfig, dim: int, name: str | None = None, **settings: Any) -> Optimizer:
    """The configured optimizer from :mod:`evogm_opt.registry`, maximising; with several seen tasks it is told
    one score per task, searches on their weighted mean and archives the Pareto front. ``name`` and ``settings``:
    another registry name and options for the same run (``"evogm"`` in the shape its checkpoint holds)."""
    opt = registry.create(name or cfg.optimizer.name, dim, **(settings or optimizer_options(cfg)))
    if len(cfg.seen) >= 2 and cfg.fidelity is None:  # with fidelity: told the weighted mean (one value)
        opt.objective_weights = np.array([t.weight for t in cfg.seen])
    return opt


def checkpointed_shape(cfg: MergeRunConfig, dim: int) -> Callable[[str], Optimizer | None]:
    """For ``"evogm"``: the optimizer this config builds in the shape a checkpoint holds (a run keeps the shape it
    began with, whatever the rule says for its budget now), or ``None`` for any other checkpoint or name."""

    def expected(checkpoint_name: str) -> Optimizer | None:
        if cfg.optimizer.name != "evogm":
            return None
        other = shape.as_checkpointed(checkpoint_name, optimizer_options(cfg))
        return None if other is None else new_optimizer(cfg, dim, other[0], **other[1])

    return expected


def open_optimizer(
    cfg: MergeRunConfig, journal: Journal, fitness: MergeFitness, say: Callable[..., Any]
) -> Optimizer | FidelityScheduler:
    """The checkpointed optimizer of a resumed run, or a new one; refused where the merge cannot follow it. With
    ``fidelity:``, the scheduler around it (its checkpoint is the scheduler's)."""
    fresh = new_optimizer(cfg, fitness.dim)
    if cfg.fidelity is not None:
        sched = PrefixPlan.of(fitness, cfg.fidelity).scheduler(fresh)
        loaded = journal.load_scheduler(sched)
        if loaded is not None:
            told = loaded.inner.n_evals
            say(f"resuming from {journal.checkpoint} at measurement {loaded.n_evals} ({told} candidates told)")
        return loaded or sched
    opt = journal.load_optimizer(fitness.dim, fresh, checkpointed_shape(cfg, fitness.dim))
    if opt is not None:
        say(f"resuming from {journal.checkpoint} at evaluation {opt.n_evals}")
        opt.max_evals = fresh.max_evals  # a larger budget resumes the run: the optimizer's own stop follows it
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
    if isinstance(opt, FidelityScheduler):
        return _search_with_fidelity(cfg, fitness, opt, journal, progress, say)
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


# ---------------------------------------------------------------------------------------------- with fidelity


def permutation(n: int, seed: int, name: str) -> np.ndarray:
    """The fixed order of a task's ``n`` examples whose prefixes are scored (seeded by the fidelity seed and the
    task's name, so that adding or reordering other tasks does not move it)."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))]).permutation(n)


def pool_size(task: Any) -> int:
    """What a seen task's prefixes are cut from: a JSONL task's examples, an lm-eval task's pool of documents (the
    first ``limit`` of its evaluation documents; one it cannot extend document by document is refused)."""
    if isinstance(task, Task):
        return len(task.examples)
    problem = task.fidelity_problem()
    if problem is not None:
        raise TaskError(problem)
    return task.pool_size()


def pool_tokens(task: Any, tokenizer: Any, seq2seq: bool, model_config: Any = None) -> list[int]:
    """Tokens of each example (JSONL, :func:`example_tokens`) or pool document (lm-eval,
    ``LmEvalTask.document_tokens``: its requests as the harness encodes them and, given the base's
    ``model_config``, truncates them to the model's length), in pool order."""
    if isinstance(task, Task):
        return example_tokens(tokenizer, task, seq2seq)
    from llm_merge.tasks.lm_eval_tasks import harness_max_length

    max_length = None if model_config is None else harness_max_length(model_config, tokenizer)
    return task.document_tokens(tokenizer, seq2seq, max_length)


def pool_subset(task: Any, indices: np.ndarray) -> Any:
    """Examples ``indices`` of a seen task as ``MergeFitness.correct_counts`` scores them: a JSONL task of those
    examples, or an lm-eval task's documents (``LmEvalDocs``, scored with ``simple_evaluate(samples=...)``)."""
    if isinstance(task, Task):
        return Task(task.name, task.kind, [task.examples[i] for i in indices], task.max_new_tokens)
    from llm_merge.tasks.lm_eval_tasks import LmEvalDocs

    return LmEvalDocs(task, tuple(int(i) for i in indices))


class PrefixPlan:
    """Which examples of each seen task a fidelity scores, and what they cost in tokens. A seen task is a JSONL
    :class:`Task` or an ``LmEvalTask`` (its pool of documents cut the same way)."""

    def __init__(
        self, tasks: Sequence[Any], spec: FidelitySpec, tokenizer: Any, seq2seq: bool, model_config: Any = None
    ) -> None:
        """``model_config``: the base's (``transformers`` config), for the length lm-eval truncates requests to."""
        self.tasks, self.spec = list(tasks), spec
        self.sizes = [pool_size(t) for t in self.tasks]
        self.full = sum(self.sizes)
        self.minimum = min(self.full, spec.min_examples * len(self.tasks))
        self.orders = [permutation(n, spec.seed, t.name) for t, n in zip(self.tasks, self.sizes)]
        costs = [np.asarray(pool_tokens(t, tokenizer, seq2seq, model_config), dtype=np.int64) for t in self.tasks]
        self._tokens = [np.concatenate([[0], np.cumsum(c[order])]) for c, order in zip(costs, self.orders)]

    @classmethod
    def of(cls, fitness: Any, spec: FidelitySpec) -> PrefixPlan:
        return cls(
            fitness.tasks, spec, fitness.tokenizer, is_seq2seq(fitness.model), getattr(fitness.model, "config", None)
        )

    def scheduler(self, inner: Optimizer) -> FidelityScheduler:
        return FidelityScheduler(inner, full=self.full, minimum=self.minimum, eta=self.spec.eta, nested=True)

    def examples(self, fidelity: int) -> list[int]:
        """Examples of each task scored at ``fidelity`` (0: none)."""
        if fidelity <= 0:
            return [0] * len(self.sizes)
        m = self.spec.min_examples
        return [max(min(m, n), fidelity * n // self.full) for n in self.sizes]

    def tokens(self, previous: int, fidelity: int) -> int:
        """Tokens of the examples scored at ``fidelity`` that were not scored at ``previous``."""
        now, before = self.examples(fidelity), self.examples(previous)
        return int(sum(cum[b] - cum[a] for cum, a, b in zip(self._tokens, before, now)))

    def full_tokens(self) -> int:
        """Tokens of one measurement at full fidelity (every example of every seen task)."""
        return int(sum(cum[-1] for cum in self._tokens))

    def new_examples(self, previous: int, fidelity: int) -> list[Any]:
        """Per task, the examples scored at ``fidelity`` and not at ``previous``, as a task to score
        (:func:`pool_subset`)."""
        now, before = self.examples(fidelity), self.examples(previous)
        return [pool_subset(t, order[a:b]) for t, order, a, b in zip(self.tasks, self.orders, before, now)]

    def describe(self, rungs: Sequence[int]) -> dict[str, Any]:
        """The settings and what they mean for these tasks (``results.json``)."""
        return {
            **self.spec.model_dump(),
            "rungs": list(rungs),
            "full": self.full,
            "examples": {t.name: [self.examples(f)[j] for f in rungs] for j, t in enumerate(self.tasks)},
            "tokens_per_full_measurement": self.full_tokens(),
        }


@dataclass
class Measured:
    """One rung's measurements of a batch: per row, the correct answers and examples of each task so far, the new
    tokens spent."""

    correct: np.ndarray  # (P, T) integers: correct answers on the prefix
    examples: list[int]  # per task, the prefix's length
    tokens: int  # per row: the new examples' tokens

    def scores(self) -> list[list[float]]:
        """Per row, each task's accuracy on its prefix."""
        return [[int(c) / n for c, n in zip(row, self.examples)] for row in self.correct]

    def values(self, weights: Sequence[float] | None = None) -> list[float]:
        """Per row, the value the run tells: the tasks' accuracies' weighted mean, as ``MergeFitness.combine``
        with the same ``weights`` (default equal) gives it, for a driver with no fitness in its process."""
        return [float(weighted_mean(np.asarray(s, dtype=float), weights)) for s in self.scores()]


class PrefixScorer:
    """Scores a :class:`FidelityBatch` on the plan's prefixes, extending each promoted candidate's counts.
    ``fitness``: anything with ``MergeFitness.correct_counts`` (the run's fitness, or a Ray actor pool)."""

    def __init__(self, plan: PrefixPlan, fitness: Any, entries: Sequence[dict[str, Any]] = ()) -> None:
        self.plan, self.fitness = plan, fitness
        names = [t.name for t in plan.tasks]
        self.counts: dict[int, np.ndarray] = {}  # candidate -> correct answers on its prefix, per task
        for e in entries:  # a resumed run: the counts its log lines hold
            if "candidate" in e and isinstance(e.get("correct"), dict):
                self.counts[int(e["candidate"])] = np.array([e["correct"][n] for n in names], dtype=np.int64)

    def measure(self, batch: FidelityBatch, path: str) -> Measured:
        fidelity, previous = int(batch.fidelity[0]), int(batch.previous[0])
        if np.any(batch.fidelity != fidelity) or np.any(batch.previous != previous):
            raise ValueError("one rung per batch: every row at the same fidelity, from the same prefix")
        new = self.fitness.correct_counts(batch.x, self.plan.new_examples(previous, fidelity), path)
        if previous:
            missing = [int(c) for c in batch.candidate if int(c) not in self.counts]
            if missing:
                raise RuntimeError(f"candidates {missing} are promoted but their earlier counts are not known")
            new = new + np.stack([self.counts[int(c)] for c in batch.candidate])
        for c, row in zip(batch.candidate, new):
            self.counts[int(c)] = row
        return Measured(new, self.plan.examples(fidelity), self.plan.tokens(previous, fidelity))


class MeasurementsView:
    """A scheduler as :meth:`llm_merge.run.journal.Journal.replay` reads an optimizer: ``n_evals`` log lines (one
    per measurement), their record (``evaluations``: ``x`` and the value told) and the box λ is clipped to."""

    def __init__(self, sched: FidelityScheduler) -> None:
        self.n_evals = sched.n_evals
        self.evaluations = sched.measurements
        self.box = sched.inner.box


class FidelityAsking(_Asking):
    """The scheduler as the loop drives it (:class:`_Asking`'s forwarding: save with the owner, stop, popsize):
    ``n_evals`` counts candidates told to the optimizer (what ``optimizer.budget`` counts), so a generation is
    asked as large as the budget leaves and never cut."""

    def __init__(self, sched: FidelityScheduler, owner: str | None) -> None:
        super().__init__(sched, coordinates=False, owner=owner)  # type: ignore[arg-type]  # ask/tell/save/stop
        self.sched = sched

    def tell(self, x: np.ndarray, y: Any, fidelity: Any = None) -> None:
        self.sched.tell(x, y, fidelity=fidelity)

    @property
    def n_evals(self) -> int:
        return self.sched.inner.n_evals

    @property
    def in_flight(self) -> int:
        return self.sched.in_flight


def replay_fidelity_monitor(
    rules: StoppingRules, entries: Sequence[dict[str, Any]], in_flight: bool
) -> tuple[StoppingMonitor, str | None]:
    """The stopping monitor fed the logged generations again, as the live search feeds it: once per generation
    told to the optimizer, with the best full-fidelity score and the candidates told so far (``in_flight``: the
    log's last generation is still being promoted, not told)."""
    monitor, reason, candidates = StoppingMonitor(rules, True), None, 0
    last = entries[-1]["generation"] if entries else None
    for i, e in enumerate(entries):
        candidates += e["rung"] == 0
        end = i + 1 == len(entries) or entries[i + 1]["generation"] != e["generation"]
        if end and not (in_flight and e["generation"] == last):
            reason = monitor.update(e["best"], candidates, e["elapsed_s"])
    return monitor, reason


def with_fidelity_column(table: str, label: str) -> str:
    """A markdown table with a last column saying at which fidelity each row's numbers were measured."""
    lines = table.split("\n")
    if len(lines) < 2 or not lines[0].startswith("|"):
        return table
    out = [lines[0] + " fidelity |", lines[1] + "---|"]
    out += [line + f" {label} |" if line.startswith("|") else line for line in lines[2:]]
    return "\n".join(out)


def human_tokens(n: int) -> str:
    """``1234567`` as ``1.23M`` (the progress line)."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


class _FidelityStep:
    """Scores one rung of a generation on the plan's prefixes and journals it (one log line per measurement,
    with the prefix's correct answers, so that a resume extends promoted candidates exactly)."""

    def __init__(
        self,
        cfg: MergeRunConfig,
        fitness: MergeFitness,
        sched: FidelityScheduler,
        plan: PrefixPlan,
        journal: Journal,
        entries: list[dict[str, Any]],
    ) -> None:
        self.cfg, self.fitness, self.sched, self.plan, self.journal, self.entries = (
            cfg, fitness, sched, plan, journal, entries,
        )  # fmt: skip
        self.scorer = PrefixScorer(plan, fitness, entries)
        self.generation = entries[-1]["generation"] if entries else 0
        full = [e["score"] for e in entries if e["fidelity"] == plan.full and e["score"] is not None]
        self.best = max(full, default=float("-inf"))
        self.tokens = entries[-1]["tokens_spent"] if entries else 0
        self.start = time.perf_counter() - (entries[-1]["elapsed_s"] if entries else 0.0)
        self.batch: FidelityBatch | None = None
        self.scores: list[list[float]] = []
        self.correct: np.ndarray = np.empty((0, len(plan.tasks)), dtype=np.int64)
        self.examples: list[int] = []
        self.new_tokens = 0
        self.rung = 0
        self.monitor: StoppingMonitor | None = None
        self.reason: str | None = None  # why the monitor stopped the search

    def evaluate(self, batch: FidelityBatch) -> list[float]:
        """The weighted mean of the tasks' prefix accuracies of each row (one value per row: the scheduler's)."""
        self.batch = batch
        self.rung = self.sched.rungs.index(int(batch.fidelity[0]))
        if self.rung == 0:
            self.generation += 1
        path = self.cfg.eval_path
        if path == "auto":
            path = self.fitness.choose_path(len(batch))
        measured = self.scorer.measure(batch, path)
        self.correct, self.examples, self.new_tokens = measured.correct, measured.examples, measured.tokens
        self.scores = measured.scores()
        return [self.fitness.combine(s) for s in self.scores]

    def write_log(self, x: np.ndarray, _told: Any) -> None:
        """The rung's log lines, on disk before the tell (a crash before the checkpoint re-runs the rung)."""
        lines = [self._line(i, row) for i, row in enumerate(x)]
        self.journal.append(lines)
        self.entries += lines

    def _line(self, i: int, row: np.ndarray) -> dict[str, Any]:
        assert self.batch is not None
        names = [t.name for t in self.plan.tasks]
        scores = self.scores[i]
        value = self.fitness.combine(scores)
        fidelity = int(self.batch.fidelity[i])
        if np.isfinite(value) and fidelity == self.plan.full:
            self.best = max(self.best, value)
        self.tokens += self.new_tokens
        return {
            "evaluation": self.sched.n_evals + i + 1,
            "generation": self.generation,
            "candidate": int(self.batch.candidate[i]),
            "rung": self.rung,
            "fidelity": fidelity,
            "examples": dict(zip(names, self.examples)),
            "lambda": row.tolist(),
            "basis_version": None,
            "coordinates": None,
            "score": value if np.isfinite(value) else None,
            "tasks": dict(zip(names, scores)),
            "correct": {n: int(c) for n, c in zip(names, self.correct[i])},
            "tokens": self.new_tokens,
            "tokens_spent": self.tokens,
            "best": self.best if np.isfinite(self.best) else None,
            "elapsed_s": round(time.perf_counter() - self.start, 3),
        }

    def after_tell(self, _opt: Any = None) -> bool:
        """The stopping rules, once a generation is told to the optimizer (never mid-promotion)."""
        if self.sched.in_flight or self.monitor is None:
            return False
        best = self.best if np.isfinite(self.best) else None
        self.reason = self.monitor.update(best, self.sched.inner.n_evals, time.perf_counter() - self.start)
        return self.reason is not None

    def cost(self, measurements: int) -> dict[str, Any]:
        """What the search spent, for ``results.json`` and the report."""
        examples = 0
        for e in self.entries:
            examples += sum(e["examples"].values())
            if e["rung"]:
                examples -= sum(self.plan.examples(self.sched.rungs[e["rung"] - 1]))
        candidates = self.sched.inner.n_evals + self.sched.in_flight
        return {
            "fidelity": self.plan.describe(self.sched.rungs),
            "measurements": measurements,
            "candidates": candidates,
            "tokens_spent": self.tokens,
            "examples_spent": examples,
            "tokens_at_full_fidelity": candidates * self.plan.full_tokens(),
        }


def _search_with_fidelity(
    cfg: MergeRunConfig,
    fitness: MergeFitness,
    sched: FidelityScheduler,
    journal: Journal,
    progress: bool,
    say: Callable[..., Any] | None,
) -> Searched:
    """:func:`search` with ``fidelity:``: the loop drives the scheduler, one rung a step."""
    plan = PrefixPlan.of(fitness, cfg.fidelity)  # type: ignore[arg-type]  # set: the caller checked
    entries = journal.replay(MeasurementsView(sched), say)
    step = _FidelityStep(cfg, fitness, sched, plan, journal, entries)
    s = cfg.stopping
    rules = StoppingRules(cfg.optimizer.budget, s.max_seconds, s.patience, s.min_improvement)
    step.monitor, reason = replay_fidelity_monitor(rules, entries, sched.in_flight > 0)
    asking = FidelityAsking(sched, journal.owner)
    bar = _FidelityProgress(cfg, sched, step, progress)
    try:
        if reason is None:

            def after_tell(opt: Any) -> bool:
                stop = step.after_tell(opt)
                bar.advance()
                return stop

            reason = optimize(
                asking,
                step.evaluate,
                budget=cfg.optimizer.budget,
                checkpoint=journal.checkpoint,
                before_tell=step.write_log,
                after_tell=after_tell,
                elapsed=entries[-1]["elapsed_s"] if entries else 0.0,
            )
            reason = step.reason or reason
    finally:
        bar.close()
    fitness.restore()
    n = sched.inner.n_evals
    reason = reason or budget_reason(n, cfg.optimizer.budget)
    cost = step.cost(sched.n_evals)
    event = {"event": "stop", "reason": reason, "evaluations": n, "measurements": sched.n_evals}
    journal.append_event({**event, "tokens_spent": step.tokens})
    return Searched(entries, reason, cost)


class _FidelityProgress:
    """tqdm over candidates told to the optimizer, with the best full-fidelity score, the rung and tokens spent."""

    def __init__(self, cfg: MergeRunConfig, sched: FidelityScheduler, step: _FidelityStep, progress: bool) -> None:
        from tqdm.auto import tqdm

        self.sched, self.step = sched, step
        self.shown = sched.inner.n_evals
        self.bar = tqdm(
            total=cfg.optimizer.budget, initial=self.shown, unit="cand", desc="merge search", disable=not progress
        )
        self._postfix()

    def _postfix(self) -> None:
        step = self.step
        best = f"{step.best:.4f}" if np.isfinite(step.best) else "–"
        rung = f"{step.rung + 1}/{len(self.sched.rungs)}"
        self.bar.set_postfix(best=best, generation=step.generation, rung=rung, tokens=human_tokens(step.tokens))

    def advance(self) -> None:
        now = self.sched.inner.n_evals
        self.bar.update(now - self.shown)
        self.shown = now
        self._postfix()

    def close(self) -> None:
        self.bar.close()
