"""Run optimizers × landscapes × dims × budgets × seeds, one JSONL record per run, resumable, in parallel."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from evogm_bench.landscapes import Landscape, make_landscape
from evogm_bench.peers import BudgetExhausted, get_peer

from evogm_opt.loop import optimize

J = TypeVar("J")
R = TypeVar("R")


@dataclass(frozen=True)
class RunSpec:
    optimizer: str
    landscape: str
    dim: int
    budget: int
    seed: int

    @property
    def key(self) -> str:
        return f"{self.optimizer}|{self.landscape}|{self.dim}|{self.budget}|{self.seed}"


CHECKPOINTS_PER_DIM = (1, 2, 5, 10, 20, 50, 100, 200)


def trace_grid(dim: int, budget: int) -> np.ndarray:
    """Evaluation counts at which the state is recorded: ~30 log-spaced points plus every k·dim checkpoint."""
    points = set(np.unique(np.round(np.geomspace(1, budget, 30)).astype(int)).tolist())
    points |= {k * dim for k in CHECKPOINTS_PER_DIM if k * dim <= budget} | {budget}
    return np.array(sorted(points))


class Evaluator:
    """Counts evaluations against the budget and records, for each grid point g, the state at the last count ≤ g.

    The state is best-seen (observed) and the true/test value of the peer's recommendation. Scores handed to
    peers are always "larger is better" (the observation negated for minimised landscapes).
    """

    def __init__(self, landscape: Landscape, budget: int, rng: np.random.Generator) -> None:
        self.landscape, self.budget, self.rng = landscape, budget, rng
        self.sign = 1.0 if landscape.sense == "max" else -1.0
        self.grid = trace_grid(landscape.dim, budget)
        self.n_evals = 0
        self.best_x: np.ndarray | None = None
        self.best_score = -np.inf
        self.trace: list[dict[str, float]] = []
        # (evaluation count, best observed value) at every improvement, in the order the peer listed its points:
        # COCO's anytime view, which counts evaluations one by one however a peer batches them
        self.improvements: list[tuple[int, float]] = []
        self.own_time = 0.0  # time spent here (evaluating, re-scoring), subtracted from wall time for overhead
        self._recommendation: np.ndarray | None = None
        self._pending = False

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        x = np.atleast_2d(np.asarray(x, dtype=float))
        if self.n_evals + len(x) > self.budget:
            raise BudgetExhausted(f"{self.n_evals} + {len(x)} > budget {self.budget}")
        if x.shape[1] != self.landscape.dim or np.any(np.abs(x) > 1 + 1e-9):
            raise ValueError(f"a peer proposed points of shape {x.shape} or outside [-1, 1]^{self.landscape.dim}")
        after = self.n_evals + len(x)
        crosses = bool(np.any((self.grid > self.n_evals) & (self.grid <= after)))
        if crosses and self.n_evals > 0:
            self._snapshot()  # the state at the last count before this batch
        scores = self.sign * np.asarray(self.landscape.observe(x, self.rng), dtype=float)
        for i, score in enumerate(scores):
            if score > self.best_score:
                self.best_score, self.best_x = float(score), x[i].copy()
                self.improvements.append((self.n_evals + i + 1, self.sign * self.best_score))
        self.n_evals = after
        self._pending = crosses
        self.own_time += time.perf_counter() - t0
        return scores

    def record(self, recommendation: np.ndarray | None) -> None:
        """The peer's recommendation after a tell (None: its best observed point); kept at grid points."""
        t0 = time.perf_counter()
        self._recommendation = None if recommendation is None else np.asarray(recommendation, dtype=float)
        if self._pending:
            self._snapshot()
            self._pending = False
        self.own_time += time.perf_counter() - t0

    def _snapshot(self) -> None:
        if self.best_x is None or (self.trace and self.trace[-1]["evals"] == self.n_evals):
            return
        reco = self.best_x if self._recommendation is None else self._recommendation
        self.trace.append(trace_entry(self.landscape, self.sign * self.best_score, reco, evals=self.n_evals))


def trace_entry(landscape: Any, best_seen: float, recommendation: np.ndarray, **counts: int) -> dict[str, Any]:
    """One entry of a record's trace: the counts so far (``evals``, and ``examples`` when charged in examples),
    the best observed value and the recommendation's true and test values."""
    reco = recommendation.reshape(1, -1)
    return {
        **counts,
        "best_seen": best_seen,
        "true_of_best": float(landscape.true_value(reco)[0]),
        "test_of_best": float(landscape.test_value(reco)[0]),
    }


def drive(peer: Any, ev: Any) -> None:
    """Run a peer until ``ev`` (anything with ``evaluate``, ``record``, ``n_evals``, ``budget``) is spent."""
    if hasattr(peer, "run"):  # a driver peer: it calls evaluate itself

        def evaluate(x: np.ndarray) -> np.ndarray:
            scores = ev.evaluate(x)
            ev.record(None)
            return scores

        try:
            peer.run(evaluate)
        except BudgetExhausted:
            pass
        return
    # an ask/tell peer: the core's one loop, recording the recommendation after every tell
    optimize(peer, ev.evaluate, budget=ev.budget, after_tell=lambda p: ev.record(p.recommend()))


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the body on one core: torch's threads and numpy's BLAS/OpenMP pools limited to one, and joblib's
    ``Parallel`` (scikit-learn's forests, SMAC3's random forest, which asks for every core) sequential; restored after.

    One run (or tuning job) per process and the processes already use the cores; oversubscribed threads would
    fight over the machine's few cores and distort the overhead figures."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1), contextlib.ExitStack() as stack:
            if importlib.util.find_spec("joblib") is not None:  # scikit-learn's; absent, nothing here uses it
                import joblib

                # per thread, as joblib keeps it: the bench runs each job on its process's main thread
                sequential = getattr(joblib, "parallel_config", None) or joblib.parallel_backend  # the latter < 1.3
                stack.enter_context(sequential(backend="sequential"))
            yield
    finally:
        torch.set_num_threads(threads)


def in_parallel(func: Callable[[J], R], jobs: Sequence[J], workers: int) -> Iterator[tuple[J, R | BaseException]]:
    """``func(job)`` for every job, in this process (``workers == 1``) or in a pool of processes; yields each job
    with its result, or the exception it raised, as soon as it finishes, so a caller can keep what is done."""
    if workers == 1:
        for job in jobs:
            try:
                result: R | BaseException = func(job)
            except Exception as exc:
                result = exc
            yield job, result
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(func, job): job for job in jobs}
        for future in as_completed(futures):
            yield futures[future], future.exception() or future.result()


def run_one(spec: RunSpec) -> dict[str, Any]:
    """One optimisation run; records best-seen and the true/test value of the recommendation on a grid."""
    with one_thread():
        return _run(spec)


def _run(spec: RunSpec) -> dict[str, Any]:
    landscape = make_landscape(spec.landscape, spec.dim, seed=spec.seed)
    peer = get_peer(spec.optimizer).build(spec.dim, spec.seed, spec.budget)
    ev = Evaluator(landscape, spec.budget, np.random.default_rng([spec.seed, 99]))
    start = time.perf_counter()
    drive(peer, ev)
    wall = time.perf_counter() - start
    return {
        "key": spec.key,
        **asdict(spec),
        "sense": landscape.sense,
        "optimum_value": landscape.optimum_value,
        "final": ev.trace[-1] if ev.trace else {},
        "trace": ev.trace,
        "improvements": ev.improvements,
        "evals": ev.n_evals,
        "wall_s": wall,
        "overhead_s": wall - ev.own_time,
    }


def finished_keys(path: Path) -> set[str]:
    if not path.exists():
        return set()
    keys = set()
    for line in path.read_text().splitlines():
        try:
            keys.add(json.loads(line)["key"])
        except (json.JSONDecodeError, KeyError):
            continue  # a torn last line from an interrupted run: that run is simply redone
    return keys


def _drop_torn_tail(path: Path) -> None:
    """An interrupted run can leave a half-written last line; cut it so the next append starts on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        with path.open("r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)


def run_grid(
    specs: Iterable[Any],
    out: Path,
    workers: int | None = None,
    progress: bool = True,
    run: Callable[[Any], dict[str, Any]] = run_one,
) -> list[dict[str, Any]]:
    """Run every spec not already in ``out``; append each record as soon as it finishes.

    A run that raises is reported and left out of ``out`` (so the next invocation retries it); the grid goes on
    and a RuntimeError listing the failures is raised at the end. ``run``: what one spec's run is (a picklable
    function of a spec with a ``key``; the runs at equal cost in examples, benchmarks/cost.py, bring their own).
    """
    from tqdm import tqdm

    out.parent.mkdir(parents=True, exist_ok=True)
    _drop_torn_tail(out)
    done = finished_keys(out)
    todo = [s for s in specs if s.key not in done]
    workers = workers or max(1, min(len(todo), os.cpu_count() or 1))
    records: list[dict[str, Any]] = []
    failures: list[str] = []

    def keep(spec: RunSpec, result: Any) -> None:
        if isinstance(result, BaseException):
            failures.append(f"{spec.key}: {type(result).__name__}: {result}")
            bar.write(f"run failed: {failures[-1]}")
        else:
            fh.write(json.dumps(result) + "\n")
            fh.flush()
            records.append(result)
        bar.update()

    with out.open("a") as fh, tqdm(total=len(todo), disable=not progress, desc="bench runs") as bar:
        for spec, result in in_parallel(run, todo, workers):
            keep(spec, result)
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(todo)} runs failed:\n" + "\n".join(failures))
    return records


def load_records(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
