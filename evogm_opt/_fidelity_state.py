"""Private: a :class:`evogm_opt.fidelity.FidelityScheduler`'s generation in flight and the checks of its checkpoint.

Kept apart from the scheduler so that ``fidelity.py`` reads as the rule (rungs, promotion, what the inner optimizer is
told) and this as the bookkeeping that makes a run resume exactly mid-promotion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evogm_opt import _state


@dataclass
class Generation:
    """One generation in flight: its candidates, the values measured at each rung (NaN: not measured or failed),
    the highest rung each was admitted to and measured at, and which of the current rung are queued or out."""

    x: np.ndarray
    first: int  # candidate id of row 0
    values: np.ndarray  # (m, rungs)
    admitted: np.ndarray  # (m,) highest rung admitted to
    measured: np.ndarray  # (m,) highest rung measured at (-1: none yet)
    rung: int
    queue: np.ndarray  # candidate indices of the current rung not asked yet
    pending: np.ndarray  # asked, not told

    @classmethod
    def start(cls, x: np.ndarray, first: int, rungs: int) -> Generation:
        m = len(x)
        none = np.empty(0, dtype=np.int64)
        return cls(
            np.asarray(x, float), first, np.full((m, rungs), np.nan), np.zeros(m, np.int64), np.full(m, -1), 0,
            np.arange(m, dtype=np.int64), none,
        )  # fmt: skip

    def state(self) -> dict[str, Any]:
        return {
            "x": self.x.copy(),
            "first": self.first,
            "values": self.values.copy(),
            "admitted": self.admitted.copy(),
            "measured": self.measured.copy(),
            "rung": self.rung,
            "queue": self.queue.copy(),
            "pending": self.pending.copy(),
        }

    @classmethod
    def load(cls, state: dict[str, Any], dim: int, rungs: int) -> Generation:
        require, field = _state.require, "generation."
        x = _state.array(state["x"], field + "x", (None, dim))
        m = len(x)
        require(m >= 1, field + "x", "has no candidates")
        rung = _state.count(state["rung"], field + "rung")
        require(rung < rungs, field + "rung", f"is {rung}; there are {rungs} rungs")
        values = _state.array(state["values"], field + "values", (m, rungs), finite=False)
        admitted = _state.array(state["admitted"], field + "admitted", (m,), dtype=np.int64)
        measured = _state.array(state["measured"], field + "measured", (m,), dtype=np.int64)
        queue = _state.array(state["queue"], field + "queue", (None,), dtype=np.int64)
        pending = _state.array(state["pending"], field + "pending", (None,), dtype=np.int64)
        require(not np.isinf(values).any(), field + "values", "holds infinite values (failures are NaN)")
        require(((admitted >= 0) & (admitted <= rung)).all(), field + "admitted", f"is not within 0..{rung}")
        require(((measured >= admitted - 1) & (measured <= admitted)).all(), field + "measured", "skips a rung")
        out = np.concatenate([queue, pending])
        require(
            len(np.unique(out)) == len(out) and ((out >= 0) & (out < m)).all(),
            field + "queue",
            "and pending name a candidate twice or one that does not exist",
        )
        require(
            np.array_equal(np.sort(out), np.flatnonzero((admitted == rung) & (measured < rung))),
            field + "queue",
            "and pending are not the current rung's unmeasured candidates",
        )
        first = _state.count(state["first"], field + "first")
        return cls(x, first, values, admitted, measured, rung, queue, pending)


@dataclass(frozen=True)
class Progress:
    """What a checkpoint says the scheduler had done: its counters, every measurement told (the record) and the
    generation in flight."""

    examples: int
    n_evals: int
    n_asked: int
    next_candidate: int
    record: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x, fidelity, y, candidate
    generation: Generation | None


def load_progress(
    state: dict[str, Any], *, dim: int, rungs: Sequence[int], costs: Sequence[int], inner_pending: int
) -> Progress:
    """Counters, the record and the generation in flight of a scheduler's state (``costs[k]``: the examples one
    measurement at rung k costs; ``inner_pending``: the asks the inner optimizer awaits), refusing what no run
    could have written (:class:`evogm_opt._state.InvalidState` naming the field)."""
    progress, record = state["progress"], state["record"]
    n = _state.count(progress["n_evals"], "progress.n_evals")
    fidelity = _state.array(record["fidelity"], "record.fidelity", (n,), dtype=np.int64)
    x = _state.array(record["x"], "record.x", (n, dim))
    y = _state.array(record["y"], "record.y", (n,), finite=False)
    candidate = _state.array(record["candidate"], "record.candidate", (n,), dtype=np.int64)
    _state.require(np.isin(fidelity, rungs).all(), "record.fidelity", f"holds fidelities off {tuple(rungs)}")
    _state.require(not np.isinf(y).any(), "record.y", "holds infinite values (failures are NaN)")
    spent = sum(costs[list(rungs).index(int(f))] for f in fidelity)
    examples = _state.count(progress["examples"], "progress.examples")
    _state.require(examples == spent, "progress.examples", f"is {examples}; the record's measurements cost {spent}")
    n_asked = _state.count(progress["n_asked"], "progress.n_asked", low=n)
    next_candidate = _state.count(progress["next_candidate"], "progress.next_candidate")
    generation = None
    if state["generation"] is not None:
        generation = Generation.load(state["generation"], dim, len(rungs))
        _state.require(
            inner_pending >= len(generation.x),
            "generation.x",
            f"has {len(generation.x)} candidates the inner optimizer is not waiting for",
        )
    return Progress(
        examples=examples,
        n_evals=n,
        n_asked=n_asked,
        next_candidate=next_candidate,
        record=(x, fidelity, y, candidate),
        generation=generation,
    )
