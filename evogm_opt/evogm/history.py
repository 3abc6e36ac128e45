"""H, EvoGM's history of evaluated points (paper Alg. 1): what the generator and the surrogate learn from."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from evogm_opt.evogm.basis import Basis


@dataclass(frozen=True, eq=False)
class History:
    """One row per told evaluation, in the order told; immutable (every change returns a new History).

    ``c``: current coordinates (what the generator sees); ``u``: original normalised coordinates (what the
    surrogate sees: stable across basis shifts); ``y``: minimised value, failures ``+inf``; ``n``: 1-based
    evaluation number (the index of the told row among all evaluations).
    """

    c: np.ndarray
    u: np.ndarray
    y: np.ndarray
    n: np.ndarray

    def __post_init__(self) -> None:
        if not (len(self.c) == len(self.u) == len(self.y) == len(self.n)):
            lengths = [len(a) for a in (self.c, self.u, self.y, self.n)]
            raise ValueError(f"history arrays have different lengths (c, u, y, n: {lengths})")
        for array in (self.c, self.u, self.y, self.n):
            array.setflags(write=False)

    @classmethod
    def empty(cls, dim: int) -> History:
        """Paper Alg. 1: H = {} at the start of a round."""
        return cls(np.empty((0, dim)), np.empty((0, dim)), np.empty(0), np.empty(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.y)

    def appended(self, c: np.ndarray, u: np.ndarray, y: np.ndarray, n: np.ndarray) -> History:
        """H ∪ the told rows."""
        return History(
            np.concatenate([self.c, c]),
            np.concatenate([self.u, u]),
            np.concatenate([self.y, y]),
            np.concatenate([self.n, n]),
        )

    def in_basis(self, basis: Basis) -> History:
        """The same points in the coordinates of a new basis (ours: the reference throws H away at each round)."""
        return replace(self, c=basis.to_current(self.u))

    def ranked(self) -> np.ndarray:
        """Row indices, best first (ties in the order told)."""
        return np.argsort(self.y, kind="stable")

    def finite_rows(self) -> np.ndarray:
        return np.flatnonzero(np.isfinite(self.y))

    def window(self, rows: np.ndarray, limit: int | None) -> np.ndarray:
        """At most ``limit`` of ``rows``: the most recent ones plus the best eighth (ours, research ablation 4:
        a bounded cost per generation)."""
        if limit is None or len(rows) <= limit:
            return rows
        best = rows[np.argsort(self.y[rows], kind="stable")[: limit // 8]]
        return np.union1d(rows[-(limit - len(best)) :], best)

    def winners_and_losers(self, winner_fraction: float, window: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Paper Alg. 1: winners W are the best max(1, int(ρ|H|)) of H, losers L the rest (current coordinates);
        H limited to ``window`` rows first (``train_window``; the reference uses all of H)."""
        rows = self.window(np.arange(len(self)), window)
        order = rows[np.argsort(self.y[rows], kind="stable")]
        n_winners = max(1, int(winner_fraction * len(order)))
        return self.c[order[:n_winners]], self.c[order[n_winners:]]

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, np.ndarray]:
        return {"hist_c": self.c.copy(), "hist_u": self.u.copy(), "hist_y": self.y.copy(), "hist_n": self.n.copy()}

    @classmethod
    def from_state(cls, state: dict[str, Any], dim: int) -> History:
        return cls(
            np.array(state["hist_c"], dtype=float).reshape(-1, dim),
            np.array(state["hist_u"], dtype=float).reshape(-1, dim),
            np.array(state["hist_y"], dtype=float).ravel(),
            np.array(state["hist_n"], dtype=np.int64).ravel(),
        )
