"""Non-dominated archive for vector-valued evaluations (one score per task), on ``moocore``.

When ``tell`` receives K ≥ 2 values per point, the optimizer searches on their weighted mean (the weights are
``objective_weights``, equal by default) and keeps every non-dominated point here, so the trade-off between
tasks is visible after the search and a point can be picked for *other* weights without evaluating anything:
the best point of any positive weighting of the objectives among those evaluated lies on this front.

Non-dominated filtering and hypervolume come from ``moocore`` (López-Ibáñez et al., maintained C code), not
from code of ours: ``pip install -e ".[mo]"`` (in a clone of the repository).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _moocore():
    try:
        import moocore
    except ImportError as exc:
        from evogm_opt.cli_faults import install_hint

        needs = "vector-valued evaluations need moocore for the Pareto archive"
        raise ImportError(f"{needs}: {install_hint('mo')}") from exc
    return moocore


@dataclass(frozen=True)
class ParetoPoint:
    x: np.ndarray
    values: np.ndarray  # the K objective values as told
    evaluation: int  # 1-based evaluation number


class ParetoArchive:
    """The non-dominated points told so far (ties: the earliest is kept)."""

    def __init__(self, dim: int, n_objectives: int, maximize: bool) -> None:
        if n_objectives < 2:
            raise ValueError("a Pareto archive needs at least two objectives")
        _moocore()
        self.dim, self.n_objectives, self.maximize = dim, n_objectives, maximize
        self.x = np.empty((0, dim))
        self.values = np.empty((0, n_objectives))
        self.evaluations = np.empty(0, dtype=np.int64)

    def add(self, x: np.ndarray, values: np.ndarray, evaluations: np.ndarray) -> None:
        """Add finite rows and drop everything they dominate."""
        finite = np.all(np.isfinite(values), axis=1)
        if not finite.any():
            return
        x_all = np.concatenate([self.x, x[finite]])
        v_all = np.concatenate([self.values, values[finite]])
        e_all = np.concatenate([self.evaluations, evaluations[finite]])
        keep = _moocore().is_nondominated(v_all, maximise=self.maximize, keep_weakly=False)
        self.x, self.values, self.evaluations = x_all[keep], v_all[keep], e_all[keep]
        order = np.argsort(self.evaluations, kind="stable")
        self.x, self.values, self.evaluations = self.x[order], self.values[order], self.evaluations[order]

    def __repr__(self) -> str:
        sense = "maximised" if self.maximize else "minimised"
        return f"ParetoArchive({len(self)} non-dominated of {self.n_objectives} {sense} objectives, dim={self.dim})"

    def __len__(self) -> int:
        return len(self.values)

    def pick(self, weights: Sequence[float]) -> ParetoPoint:
        """The archived point with the best weighted mean under ``weights`` (no new evaluation)."""
        w = np.asarray(weights, dtype=float)
        if w.shape != (self.n_objectives,) or not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be {self.n_objectives} non-negative numbers, not all zero; got {weights}")
        if len(self) == 0:
            raise ValueError("the archive is empty (no finite evaluation yet)")
        score = self.values @ (w / w.sum())
        i = int(np.argmax(score) if self.maximize else np.argmin(score))
        return ParetoPoint(self.x[i].copy(), self.values[i].copy(), int(self.evaluations[i]))

    def hypervolume(self, reference: Sequence[float]) -> float:
        """Hypervolume of the front against ``reference`` (a point worse than all of it in every objective)."""
        if len(self) == 0:
            return 0.0
        return float(_moocore().hypervolume(self.values, ref=np.asarray(reference, float), maximise=self.maximize))

    def state(self) -> dict[str, np.ndarray]:
        return {"x": self.x.copy(), "values": self.values.copy(), "evaluations": self.evaluations.copy()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.x = np.asarray(state["x"], float).reshape(-1, self.dim)
        self.values = np.asarray(state["values"], float).reshape(-1, self.n_objectives)
        self.evaluations = np.asarray(state["evaluations"], np.int64).ravel()
