"""Multi-fidelity search around any optimizer: successive halving inside each generation (issue 30).

The inner optimizer asks a generation; every candidate is measured at the lowest fidelity, the best 1/η of them at
the next, and so on up to the full fidelity; only then is the inner optimizer told the generation, each candidate
once. A fidelity is an integer count in the caller's unit of cost — validation examples for a merge — because
cost and binomial noise are functions of counts and nested prefixes are defined on them (a fraction would leave
each caller to round it, per task, the same way at every rung). :func:`evogm_opt.optimize` drives it: ``ask``
returns a :class:`FidelityBatch` and ``evaluate`` receives it.

What the inner optimizer is told (:func:`pessimistic_values`): a candidate that reached full fidelity, its value;
one eliminated at a lower rung, its value at that rung, lowered if needed so that it ranks just below every
candidate of its generation promoted past that rung. So a told value is never better than what was measured, the
order successive halving found is kept (no ties, as telling eliminated candidates as failures would make), and the
best value of every generation — hence ``best`` and the recommendation — was measured at full fidelity.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from evogm_opt import _state
from evogm_opt._fidelity_state import Generation, load_progress
from evogm_opt.base import Best, Optimizer

#: marks a scheduler's checkpoint (``evogm_opt.load`` of one names the class that loads it)
STATE_NAME = "fidelity-scheduler"
STATE_VERSION = 1


@dataclass(frozen=True)
class FidelityBatch:
    """Rows to measure: row i of ``x`` at ``fidelity[i]`` examples. ``previous[i]`` examples of that candidate were
    measured before (0: a new candidate) — a caller whose measurements nest scores only the examples after them;
    ``candidate[i]`` names the candidate across its promotions."""

    x: np.ndarray
    fidelity: np.ndarray
    previous: np.ndarray
    candidate: np.ndarray

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class Measurements:
    """Every measurement told to the scheduler, in order: the row, its fidelity, its value as told (NaN: failed)
    and the candidate it belongs to (a promoted candidate appears once per rung)."""

    x: np.ndarray
    fidelity: np.ndarray
    y: np.ndarray
    candidate: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


def rung_fidelities(full: int, minimum: int, eta: int) -> tuple[int, ...]:
    """Successive halving's rungs, built downward from ``full``: ⌊full/η^K⌋, …, ⌊full/η⌋, ``full``, where K is the
    largest k with ⌊full/η^k⌋ ≥ ``minimum`` (one rung, ``(full,)``, when ``minimum`` is above full/η).

    Downward, as Hyperband (Li et al., 2018) and SMAC3 build them, so that the top rung is full fidelity and each
    rung below it has 1/η of the next one's examples. Built upward from ``minimum`` (minimum·η^k while below
    ``full``), a rung just short of ``full`` appears — (22, 66, 198, 200) for full 200, minimum 22 — whose candidates
    cost nearly a full measurement each and are then thrown away as "not full": (22, 66, 200) costs about the same
    per generation and measures η times as many candidates in full. The price: ``minimum`` is a floor, not always
    the first rung (minimum 25 gives (66, 200)). Rounded down, so that the first rung times η^k never passes rung
    k: Optuna's ``HyperbandPruner``, which places its rungs at min_resource·η^k, decides at exactly these rungs
    (the bench's multi-fidelity peers all measure at them, benchmarks/multifidelity.py).
    """
    rungs, power = [full], eta
    while full // power >= minimum:
        rungs.append(full // power)
        power *= eta
    return tuple(reversed(rungs))


def promoted(n: int, eta: int) -> int:
    """How many of a rung's n candidates go on: ⌊n/η⌋, at least one, so every generation reaches full fidelity."""
    return max(1, n // eta)


def pessimistic_values(measured: np.ndarray, reached: np.ndarray, last: int) -> np.ndarray:
    """The values (minimised, +inf = failure) the inner optimizer is told for one generation.

    ``measured[c]`` is candidate c's value at ``reached[c]``, the highest rung it was measured at; ``last`` is the
    full-fidelity rung. From the top down, the candidates eliminated at rung k are told their rung-k values, all
    raised by the one amount that puts the best of them just above (worse than) the worst finite value told for a
    candidate that went past rung k — no change when already there: order and spacing kept, never better than
    measured. Without a finite value above them (everyone promoted failed) they are told as failures.
    """
    told = np.where(reached == last, measured, np.inf)
    for k in range(last - 1, -1, -1):
        out = reached == k
        if not out.any():
            continue
        above = told[reached > k]
        above = above[np.isfinite(above)]
        values = measured[out]
        finite = np.isfinite(values)
        if above.size == 0 or not finite.any():
            told[out] = np.inf
            continue
        limit = np.nextafter(above.max(), np.inf)
        shift = max(0.0, limit - values[finite].min())
        told[out] = np.where(finite, np.maximum(values + shift, limit), np.inf)  # the max: rounding never ties
    return told


def _integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _one_value_per_row(y: Any, n: int) -> None:
    """Refuse K values per row in the scheduler's own words (an optimizer takes them; the scheduler does not)."""
    try:
        shape = np.shape(np.asarray(y, dtype=float))
    except (TypeError, ValueError):
        return  # None among the values, or not numbers: Optimizer._validate_values words it
    if len(shape) > 1 and shape[1:] != (1,):
        raise ValueError(
            f"y must be one value per row, shape ({n},); got shape {shape}: a FidelityScheduler promotes by one "
            "value per candidate, so combine several (one per task) into one before the tell"
        )


class FidelityScheduler:
    """Successive halving inside each generation of any :class:`Optimizer`, measured in examples.

    >>> from evogm_opt import RandomSearch
    >>> sched = FidelityScheduler(RandomSearch(2, seed=0, popsize=9), full=90, minimum=10, eta=3, nested=True)
    >>> batch = sched.ask()                      # 9 candidates at 10 examples each
    >>> sched.tell(batch.x, [float(r.sum()) for r in batch.x], fidelity=batch.fidelity)
    >>> sched.ask().fidelity.tolist()            # the best 3 (minimised), extended to 30 examples
    [30, 30, 30]

    Args:
        optimizer: the inner optimizer; it asks each generation and is told it once, when its last rung is in.
        full: examples at full fidelity (what a candidate is worth recommending at).
        minimum: the fewest examples a candidate is measured on: the rungs are ⌊full/η^k⌋ down to the last that is
            at least ``minimum``, then ``full`` (:func:`rung_fidelities`). ``None`` (``full``), or any ``minimum``
            above full/η: one rung, and the scheduler asks, tells and recommends exactly what the optimizer alone
            would.
        eta: the promotion factor η: the best ⌊n/η⌋ (at least one) of a rung's n candidates go on to the next
            rung, with η times the examples.
        nested: the caller's measurements nest (a promotion scores only the examples after those already scored),
            so a promotion costs only its new examples; ``False`` counts every measurement in full.
        max_examples: a budget in examples. A generation is asked only as large as fits in what is left (its cost
            is known before it starts); ``stop()`` once not even one candidate fits. The inner optimizer's default
            stopping rules are then off, as a budget turns them off for a plain optimizer.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        full: int,
        minimum: int | None = None,
        eta: int = 3,
        nested: bool = False,
        max_examples: int | None = None,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise ValueError(f"optimizer must be an evogm_opt.Optimizer, got {type(optimizer).__name__}")
        if not _integer(full) or full < 1:
            raise ValueError(f"full must be a positive integer (examples at full fidelity), got {full!r}")
        minimum = full if minimum is None else minimum
        if not _integer(minimum) or not 1 <= minimum <= full:
            raise ValueError(f"minimum must be an integer from 1 to full = {full} (examples), got {minimum!r}")
        if not _integer(eta) or eta < 2:
            raise ValueError(f"eta must be an integer >= 2 (the best 1/eta of a rung are promoted), got {eta!r}")
        if not isinstance(nested, bool):
            raise ValueError(f"nested must be True or False, got {nested!r}")
        if max_examples is not None and (not _integer(max_examples) or max_examples < 1):
            raise ValueError(f"max_examples must be a positive integer or None, got {max_examples!r}")
        self.inner = optimizer
        self.full, self.minimum, self.eta, self.nested = int(full), int(minimum), int(eta), nested
        self.max_examples = None if max_examples is None else int(max_examples)
        self.rungs = rung_fidelities(self.full, self.minimum, self.eta)
        self.examples = 0  # examples spent: Σ fidelity − (previous rung's, when nested) over measurements told
        self.n_evals = 0  # measurements told
        self.n_asked = 0  # measurements asked
        self._next_candidate = 0
        self._generation: Generation | None = None
        self._record: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    # ------------------------------------------------------------------ what the loop reads
    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def popsize(self) -> int:
        return self.inner.popsize

    @property
    def maximize(self) -> bool:
        return self.inner.maximize

    @property
    def n_pending(self) -> int:
        return 0 if self._generation is None else len(self._generation.pending)

    @property
    def in_flight(self) -> int:
        """Candidates of the generation in flight: asked of the inner optimizer and not told to it yet (0 between
        generations). :func:`evogm_opt.optimize` warns when it ends with some."""
        return 0 if self._generation is None else len(self._generation.x)

    def cost(self, rung: int) -> int:
        """Examples one measurement at ``rung`` costs: the rung's fidelity, less the previous rung's if nested."""
        previous = self.rungs[rung - 1] if self.nested and rung > 0 else 0
        return self.rungs[rung] - previous

    def generation_cost(self, size: int) -> int:
        """Examples a generation of ``size`` candidates costs at most (fewer if failures are not promoted)."""
        total, n = 0, size
        for k in range(len(self.rungs)):
            total += n * self.cost(k)
            n = promoted(n, self.eta)
        return total

    # ------------------------------------------------------------------ ask / tell
    def ask(self, n: int | None = None) -> FidelityBatch:
        """Up to ``n`` (default ``popsize``) rows to measure: a new generation's first rung, or candidates promoted
        to the next rung. One generation at a time: a rung's promotions are known once all of it is told."""
        if n is None:
            n = self.popsize
        if not _integer(n) or n < 1:
            raise ValueError(f"ask(n) needs a positive integer n, got {n!r}")
        if self._generation is None:
            size = self._generation_size(int(n))
            if size == 0:
                raise RuntimeError(f"nothing to ask: {self.stop_reason}")
            self._generation = Generation.start(self.inner.ask(size), self._next_candidate, len(self.rungs))
            self._next_candidate += len(self._generation.x)
        gen = self._generation
        if len(gen.queue) == 0:
            raise RuntimeError(
                f"{len(gen.pending)} measurements at {self.rungs[gen.rung]} examples are not told yet; the next "
                "rung's candidates are known once they are"
            )
        take, gen.queue = gen.queue[:n], gen.queue[n:]
        gen.pending = np.concatenate([gen.pending, take])
        self.n_asked += len(take)
        k = gen.rung
        return FidelityBatch(
            x=gen.x[take].copy(),
            fidelity=np.full(len(take), self.rungs[k], dtype=np.int64),
            previous=np.full(len(take), self.rungs[k - 1] if k else 0, dtype=np.int64),
            candidate=gen.first + take.astype(np.int64),
        )

    def tell(self, x: Any, y: Any, fidelity: Any = None) -> None:
        """Values of asked rows (any subset, any order; NaN/None: failed), measured at ``fidelity`` (checked against
        the ask when given). Validated before anything changes. The inner optimizer is told a generation once its
        last rung is in."""
        gen = self._generation
        points = np.array(x, dtype=float)
        if points.ndim != 2 or points.shape[1] != self.dim:
            raise ValueError(f"X must have shape (n, {self.dim}) (one row per point); got shape {points.shape}")
        _one_value_per_row(y, len(points))
        values = Optimizer._validate_values(y, len(points))
        slots = self._match(points)
        k = -1 if gen is None else gen.rung
        if fidelity is not None:
            told = np.asarray(fidelity).reshape(-1)
            if len(told) != len(points):
                raise ValueError(f"fidelity has {len(told)} values but X has {len(points)} rows")
            for i, f in enumerate(told.tolist()):
                if f != self.rungs[k]:
                    raise ValueError(f"row {i} was asked at {self.rungs[k]} examples but told at {f!r}")
        if len(points) == 0 or gen is None:
            return
        gen.values[slots, k] = np.where(np.isfinite(values), values, np.nan)
        gen.measured[slots] = k
        gen.pending = gen.pending[~np.isin(gen.pending, slots)]
        self._record.append(
            (
                points.copy(),
                np.full(len(points), self.rungs[k], dtype=np.int64),
                np.where(np.isfinite(values), values, np.nan),
                gen.first + slots.astype(np.int64),
            )
        )
        self.n_evals += len(points)
        self.examples += len(points) * self.cost(k)
        if len(gen.queue) == 0 and len(gen.pending) == 0:
            self._rung_done()

    def _match(self, points: np.ndarray) -> np.ndarray:
        """The candidate index of the pending measurement each row is (by value; each pending one matches once)."""
        gen = self._generation
        free: dict[bytes, list[int]] = {}
        if gen is not None:
            for c in gen.pending:
                free.setdefault(gen.x[c].tobytes(), []).append(int(c))
        slots = np.empty(len(points), dtype=np.int64)
        for i, row in enumerate(points):
            bucket = free.get(row.tobytes())
            if not bucket:
                raise ValueError(
                    f"row {i} is not a measurement this scheduler asked and awaits (rows measured outside it go to "
                    "the inner optimizer before it is wrapped)"
                )
            slots[i] = bucket.pop(0)
        return slots

    def _rung_done(self) -> None:
        """Promote the best of the finished rung, or, at the last rung (or with no finite value), tell the inner
        optimizer the generation."""
        gen = self._generation
        assert gen is not None
        k = gen.rung
        members = np.flatnonzero(gen.admitted == k)
        internal = self._internal(gen.values[members, k])
        chosen = self.promote(internal, k, gen.x[members]) if k + 1 < len(self.rungs) else np.empty(0, np.int64)
        if len(chosen) > 0:
            best = members[np.asarray(chosen, dtype=np.int64)]
            gen.rung = k + 1
            gen.admitted[best] = k + 1
            gen.queue = np.sort(best)
            return
        self._generation = None
        reached = gen.measured
        at_reach = self._internal(gen.values[np.arange(len(reached)), reached])
        told = pessimistic_values(at_reach, reached, len(self.rungs) - 1)
        user = np.where(np.isfinite(told), -told if self.maximize else told, np.nan)
        self.inner.tell(gen.x, user)

    def promote(self, values: np.ndarray, rung: int, points: np.ndarray) -> np.ndarray:
        """Which of a finished rung's candidates go on (positions in ``values``: their values at ``rung``,
        minimised, +inf for failures; ``points``: their rows). Successive halving: the best ⌊n/η⌋, at least one,
        never a failure. The one seam a promotion rule of research overrides (one that reads the known noise at n,
        or a surrogate at the points)."""
        del rung, points
        count = min(promoted(len(values), self.eta), int(np.isfinite(values).sum()))
        return np.argsort(values, kind="stable")[:count]

    def _internal(self, values: np.ndarray) -> np.ndarray:
        """User values as minimised ones, failures (NaN) as +inf."""
        signed = -values if self.maximize else values
        return np.where(np.isnan(signed), np.inf, signed)

    def _generation_size(self, n: int) -> int:
        """The largest generation of at most ``n`` whose whole cost fits the example budget and, with several
        rungs, the inner optimizer's ``max_evals`` (a generation cannot stop half-way, so its size is chosen before
        it starts). With one rung the inner optimizer asks what it would alone — which may pass its
        ``max_evals``, as alone it does when a loop without a budget asks whole generations — so that one rung
        changes nothing."""
        if self.inner.max_evals is not None and len(self.rungs) > 1:
            n = min(n, self.inner.max_evals - self.inner.n_evals)
        if self.max_examples is not None:
            left = self.max_examples - self.examples
            while n > 0 and self.generation_cost(n) > left:
                n -= 1
        return max(n, 0)

    # ------------------------------------------------------------------ results and stopping
    @property
    def measurements(self) -> Measurements:
        """Every measurement told, in order (``best.evaluation`` indexes it, 1-based)."""
        if not self._record:
            return Measurements(np.empty((0, self.dim)), np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64))
        if len(self._record) > 1:  # joined once, so that reading it each generation stays linear
            self._record = [tuple(np.concatenate(parts) for parts in zip(*self._record))]  # type: ignore[list-item]
        return Measurements(*self._record[0])

    @property
    def best(self) -> Best | None:
        """The best measurement at full fidelity (``evaluation``: its 1-based place in :attr:`measurements`)."""
        m = self.measurements
        full = np.flatnonzero((m.fidelity == self.full) & np.isfinite(m.y))
        if full.size == 0:
            return None
        i = full[int(np.argmin(self._internal(m.y[full])))]
        return Best(x=m.x[i].copy(), y=float(m.y[i]), evaluation=int(i) + 1)

    def recommend(self) -> Best | None:
        """The inner optimizer's recommendation — always a point measured at full fidelity (:func:`pessimistic_values`
        makes it so for every optimizer that recommends its best told point); should an inner optimizer recommend
        a point told at a lower rung, the best full-fidelity measurement instead."""
        choice = self.inner.recommend()
        if choice is None:
            return None
        m = self.measurements
        same = np.flatnonzero((m.fidelity == self.full) & np.all(m.x == choice.x, axis=1) & np.isfinite(m.y))
        if same.size == 0:
            return self.best
        i = int(same[-1])
        return Best(x=m.x[i].copy(), y=float(m.y[i]), evaluation=i + 1)

    def stop(self, default_rules: bool = True) -> bool:
        """Whether to stop, checked between generations only (a started one finishes its promotions): the example
        budget cannot pay for one more candidate, or the inner optimizer's own rules."""
        return self._stop_reason(default_rules) is not None

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason(default_rules=True)

    def _stop_reason(self, default_rules: bool) -> str | None:
        if self._generation is not None:
            return None
        if self.max_examples is not None and self.generation_cost(1) > self.max_examples - self.examples:
            return f"example budget: {self.examples} of {self.max_examples} examples used"
        return self.inner._stop_reason(default_rules and self.max_examples is None)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to go on exactly here, mid-promotion included, as plain data (the inner optimizer's
        own state nested under ``inner``)."""
        m = self.measurements
        return {
            "scheduler": STATE_NAME,
            "scheduler_version": STATE_VERSION,
            "settings": {
                "full": self.full,
                "minimum": self.minimum,
                "eta": self.eta,
                "nested": self.nested,
                "max_examples": self.max_examples,
            },
            "progress": {
                "examples": self.examples,
                "n_evals": self.n_evals,
                "n_asked": self.n_asked,
                "next_candidate": self._next_candidate,
            },
            "generation": None if self._generation is None else self._generation.state(),
            "record": {"x": m.x, "fidelity": m.fidelity, "y": m.y, "candidate": m.candidate},
            "inner": self.inner.state_dict(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], **runtime: Any) -> FidelityScheduler:
        """Rebuild a scheduler from :meth:`state_dict`; ``runtime``: the inner optimizer's non-data arguments."""
        if not isinstance(state, dict) or state.get("scheduler") != STATE_NAME:
            raise ValueError("not a FidelityScheduler state (no 'scheduler' entry); load it with evogm_opt.load")
        try:
            try:
                inner = Optimizer.from_state_dict(state["inner"], **runtime)
            except _state.InvalidState as exc:
                raise exc.within("inner") from None
            sched = cls(inner, **state["settings"])
            sched._load_progress(state)
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"FidelityScheduler state is incomplete or malformed: {exc!r}") from exc
        return sched

    def _load_progress(self, state: dict[str, Any]) -> None:
        """Restore counters, the record and the generation in flight, refusing what no run could have written."""
        costs = [self.cost(k) for k in range(len(self.rungs))]
        progress = load_progress(state, dim=self.dim, rungs=self.rungs, costs=costs, inner_pending=self.inner.n_pending)
        self.examples, self.n_evals = progress.examples, progress.n_evals
        self.n_asked, self._next_candidate = progress.n_asked, progress.next_candidate
        self._record = [progress.record] if progress.n_evals else []
        self._generation = progress.generation

    def save(self, path: str | os.PathLike[str], *, owner: str | None = None) -> None:
        """Atomic checkpoint in the format every optimizer writes (``load`` it with :meth:`load`)."""
        _state.save_state(path, self.state_dict(), owner=owner)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, owner: str | None = None, **runtime: Any) -> FidelityScheduler:
        """The scheduler a checkpoint holds, mid-promotion included; one-line ``ValueError`` for a damaged, edited,
        impossible or (with ``owner``) foreign file."""
        checkpoint = _state.read_checkpoint(path)
        _state.check_owner(path, checkpoint.owner, owner)
        return cls._from_checkpoint(path, checkpoint.state, runtime)

    @classmethod
    def load_with_owner(cls, path: str | os.PathLike[str], **runtime: Any) -> tuple[FidelityScheduler, str | None]:
        """The scheduler and the owner it was saved with (``None``: without one), from one read of the file — to
        resume a run and tell "another run's" from "damaged" (as ``evogm_opt.resume.load_checkpoint``)."""
        checkpoint = _state.read_checkpoint(path)
        return cls._from_checkpoint(path, checkpoint.state, runtime), checkpoint.owner

    @classmethod
    def _from_checkpoint(cls, path: Any, state: dict[str, Any], runtime: dict[str, Any]) -> FidelityScheduler:
        try:
            return cls.from_state_dict(state, **runtime)
        except _state.InvalidState as exc:
            raise exc.at(path) from None
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc

    def __repr__(self) -> str:
        budget = "" if self.max_examples is None else f"/{self.max_examples}"
        gen = self._generation
        where = "" if gen is None else f", rung {gen.rung + 1} of {len(self.rungs)}"
        return (
            f"FidelityScheduler(rungs={self.rungs}, eta={self.eta}, nested={self.nested}, "
            f"examples={self.examples}{budget}, measurements={self.n_evals}{where}, inner={self.inner!r})"
        )
