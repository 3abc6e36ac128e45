"""The bench at equal cost (issue 30): runs charged in validation examples, not evaluations.

A merge search pays for the examples its candidates are scored on. Here a run's budget is ``budget × n_val``
examples (the cost of ``budget`` full-fidelity evaluations); a full-fidelity peer pays n_val per evaluation and a
multi-fidelity one (benchmarks/multifidelity.py) what it chooses, a promotion only its new examples. The trace is
kept at the same grid as the plain bench's, scaled to examples, and each entry says both ``evals`` (measurements
made) and ``examples`` (spent), so ``bench report``/``bench compare`` read every run at equal cost
(``stats.value_at``). Records of the plain bench are not touched: these carry ``"cost": "examples"``, their own
key, and go to their own file.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from evogm_bench.landscapes import Landscape, make_landscape
from evogm_bench.multifidelity import FIDELITY_PEERS, Fidelity
from evogm_bench.peers import BudgetExhausted, get_peer
from evogm_bench.runner import Evaluator, drive, one_thread, trace_entry


@dataclass(frozen=True)
class CostSpec:
    """One run at equal cost: ``budget`` is in full-fidelity evaluations' worth of examples (× n_val), and
    multi-fidelity peers score no candidate on fewer than ``minimum`` examples, with promotion factor ``eta`` (their
    rungs: ``Fidelity.rungs``, benchmarks/multifidelity.py)."""

    optimizer: str
    landscape: str
    dim: int
    budget: int
    seed: int
    minimum: int
    eta: int

    @property
    def key(self) -> str:
        return (
            f"{self.optimizer}|{self.landscape}|{self.dim}|{self.budget}|{self.seed}|examples:{self.minimum}/{self.eta}"
        )


def full_fidelity(landscape: Landscape) -> int:
    """A landscape's examples at full fidelity (n_val); only merge-like landscapes have validation examples."""
    n_val = getattr(landscape, "n_val", None)
    if n_val is None or not hasattr(landscape, "correct"):
        raise ValueError(f"{landscape.name} has no validation examples; runs at equal cost take merge-like landscapes")
    return int(n_val)


class CostEvaluator(Evaluator):
    """Charges examples against ``budget × n_val`` and records the state at grid points in examples.

    ``measure(X, n, keys)`` scores row i on its first ``n[i]`` examples. ``keys[i]`` (any hashable; ``None``: a
    fresh measurement, not kept) names a candidate: a later measurement of the same key at more examples extends
    the earlier one (nested prefixes — the landscape's ``extend``) and is charged only the new examples; at fewer,
    it is the prefix of what was scored, free. ``best_seen`` and the fall-back recommendation count only
    full-fidelity measurements: a low-fidelity value is no estimate to deploy on.
    """

    def __init__(self, landscape: Landscape, budget: int, rng: np.random.Generator) -> None:
        super().__init__(landscape, budget, rng)
        self.full = full_fidelity(landscape)
        self.max_examples = budget * self.full
        self.grid = self.grid * self.full  # the cost of k full-fidelity evaluations, k on the plain bench's grid
        self.examples = 0
        self._scored: dict[Hashable, tuple[int, int]] = {}  # key -> (examples scored, of them correct)

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """A full-fidelity peer's evaluation: n_val fresh examples per row, exactly the plain bench's observation."""
        return self.measure(x, self.full)

    def measure(self, x: Any, n: Any, keys: Sequence[Hashable | None] | None = None) -> np.ndarray:
        t0 = time.perf_counter()
        x = np.atleast_2d(np.asarray(x, dtype=float))
        n = np.broadcast_to(np.asarray(n), (len(x),)).astype(int)
        keys = [None] * len(x) if keys is None else [None if k is None else _hashable(k) for k in keys]
        if x.shape[1] != self.landscape.dim or np.any(np.abs(x) > 1 + 1e-9):
            raise ValueError(f"a peer proposed points of shape {x.shape} or outside [-1, 1]^{self.landscape.dim}")
        if len(keys) != len(x):
            raise ValueError(f"a peer named {len(keys)} candidates (keys) for {len(x)} points; one key per row")
        if np.any(n < 1) or np.any(n > self.full):
            raise ValueError(f"a peer asked for {n.tolist()} examples; the landscape has 1 … {self.full}")
        charged = self._new_examples(n, keys)
        after = self.examples + charged
        if after > self.max_examples:
            raise BudgetExhausted(f"{self.examples} + {charged} > {self.max_examples} examples")
        crosses = bool(np.any((self.grid > self.examples) & (self.grid <= after)))
        if crosses and self.examples > 0:
            self._snapshot()  # the state at the last count before this batch
        if all(k is None for k in keys) and np.all(n == self.full):
            scores = self.sign * np.asarray(self.landscape.observe(x, self.rng), dtype=float)  # the plain path
        else:
            scores = self.sign * np.array([self._count(x[i : i + 1], int(n[i]), keys[i]) / n[i] for i in range(len(x))])
        for i in np.flatnonzero(n == self.full):
            if scores[i] > self.best_score:
                self.best_score, self.best_x = float(scores[i]), x[i].copy()
        self.n_evals += len(x)
        self.examples = after
        self._pending = crosses
        self.own_time += time.perf_counter() - t0
        return scores

    def _new_examples(self, n: np.ndarray, keys: list[Hashable | None]) -> int:
        """Examples this batch scores for the first time (rows of one key in a batch extend each other)."""
        seen = {k: self._scored[k][0] for k in keys if k is not None and k in self._scored}
        total = 0
        for ni, key in zip(n.tolist(), keys):
            before = seen.get(key, 0) if key is not None else 0
            total += max(0, ni - before)
            if key is not None:
                seen[key] = max(before, ni)
        return total

    def _count(self, u: np.ndarray, n: int, key: Hashable | None) -> int:
        landscape, rng = self.landscape, self.rng
        prior = None if key is None else self._scored.get(key)
        if prior is None:
            correct = int(landscape.correct(u, rng, n)[0])  # type: ignore[attr-defined]
        elif n >= prior[0]:
            correct = int(landscape.extend(u, rng, prior[0], prior[1], n)[0])  # type: ignore[attr-defined]
        elif getattr(landscape, "noise", "F") == "F":
            return int(landscape.correct(u, rng, n)[0])  # type: ignore[attr-defined]  # the fixed set's prefix
        else:  # fresh examples (R): the first n of those scored, of which prior[1] of prior[0] were right
            return int(rng.hypergeometric(prior[1], prior[0] - prior[1], n))
        if key is not None:
            self._scored[key] = (n, correct)
        return correct

    def finish(self) -> None:
        """The state at the end of the run, which a peer that stops short of the budget never crosses a grid
        point into."""
        self._pending = False
        self._snapshot()

    def _snapshot(self) -> None:
        if self.best_x is None or (self.trace and self.trace[-1]["examples"] == self.examples):
            return
        reco = self.best_x if self._recommendation is None else self._recommendation
        best = self.sign * self.best_score
        self.trace.append(trace_entry(self.landscape, best, reco, evals=self.n_evals, examples=self.examples))


def _hashable(key: Any) -> Hashable:
    return key.item() if isinstance(key, np.generic) else key


def run_cost(spec: CostSpec) -> dict[str, Any]:
    """One run at equal cost, on one thread; the record has the plain bench's fields plus ``cost``,
    ``full_fidelity``, ``examples`` and the spec's ``minimum`` and ``eta``."""
    with one_thread():
        return _run(spec)


def _run(spec: CostSpec) -> dict[str, Any]:
    landscape = make_landscape(spec.landscape, spec.dim, seed=spec.seed)
    ev = CostEvaluator(landscape, spec.budget, np.random.default_rng([spec.seed, 99]))
    start = time.perf_counter()
    if spec.optimizer in FIDELITY_PEERS:
        fidelity = Fidelity(ev.full, spec.minimum, spec.eta)
        peer = FIDELITY_PEERS[spec.optimizer].build(spec.dim, spec.seed, ev.max_examples, fidelity)
        try:
            peer.run(ev)
        except BudgetExhausted:
            pass
    else:  # a full-fidelity peer, exactly as the plain bench runs it
        drive(get_peer(spec.optimizer).build(spec.dim, spec.seed, spec.budget), ev)
    ev.finish()
    wall = time.perf_counter() - start
    return {
        "key": spec.key,
        **asdict(spec),
        "cost": "examples",
        "full_fidelity": ev.full,
        "sense": landscape.sense,
        "optimum_value": landscape.optimum_value,
        "final": ev.trace[-1] if ev.trace else {},
        "trace": ev.trace,
        "evals": ev.n_evals,
        "examples": ev.examples,
        "wall_s": wall,
        "overhead_s": wall - ev.own_time,
    }


def plan(
    optimizers: Sequence[str],
    landscapes: Sequence[str],
    dims: Sequence[int],
    budgets: Sequence[int],
    seeds: Sequence[int],
    minimum: int,
    eta: int,
) -> tuple[list[CostSpec], list[str]]:
    """The runs of a grid (``budgets`` per dimension: b·N full-fidelity evaluations' worth of examples) and a note
    per peer skipped for a missing extra; a ValueError (one line) for a name that is no peer, a landscape without
    validation examples, or a first rung beyond a landscape's n_val."""
    notes, kept = [], []
    for name in optimizers:
        try:
            peer = FIDELITY_PEERS[name] if name in FIDELITY_PEERS else get_peer(name)
        except ValueError:
            raise ValueError(
                f"unknown optimizer {name!r}; multi-fidelity: {FIDELITY_PEERS.choices()}; or any full-fidelity peer "
                "of 'evogm-opt bench -h'"
            ) from None
        if peer.available:
            kept.append(name)
        else:
            notes.append(f"note: skipping {name}: {peer.missing_note}")
    for name in landscapes:
        for dim in dims:
            full = full_fidelity(make_landscape(name, dim))
            if minimum > full:
                raise ValueError(f"--min-examples {minimum} is more than {name}'s {full} validation examples")
    specs = [
        CostSpec(o, ls, d, b * d, s, minimum, eta)
        for o in kept
        for ls in landscapes
        for d in dims
        for b in budgets
        for s in seeds
    ]
    return specs, notes


REPORT_NOTE = (
    "At equal cost: `evals` = k reads each run when it had spent k·n_val validation examples (the cost of k "
    "full-fidelity evaluations); a full-fidelity peer has then made k evaluations, a multi-fidelity one more."
)
