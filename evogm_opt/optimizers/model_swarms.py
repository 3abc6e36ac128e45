"""Model Swarms (Feng et al., 2024) in coefficient space.

Particles: the experts (one-hots) plus ``dim`` crossovers w·e_a + (1 − w)·e_b with w ~ U(0, 2) of two distinct
random experts. Velocity starts toward a random other particle (x_j − x_i). Each step draws
r ~ U(0, 1)^4, forms weights ŵ = φ ⊙ r / Σ(φ ⊙ r) and moves
v ← ŵ_v·v + ŵ_p·(p − x) + ŵ_g·(g − x) + ŵ_w·(x − g_worst),   x ← x + η·v,
with step η starting at 1 and shrinking ×0.95 per step to at least 0.1; g_worst is the worst particle of the last
generation. A particle whose personal best has not improved for ``restart_patience`` steps restarts from its
personal best with a fresh velocity. Defaults (φ_v, φ_p, φ_g, φ_w) = (0.2, 0.3, 0.4, 0.05) and patience 3 follow
the authors' released numeric-swarm settings.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evogm_opt.bounds import BoundsLike
from evogm_opt.optimizers.swarm import SwarmOptimizer


class ModelSwarms(SwarmOptimizer):
    name = "model-swarms"

    def __init__(
        self,
        dim: int,
        bounds: BoundsLike = (-1.0, 1.0),
        *,
        popsize: int | None = None,
        seed: int | None = None,
        maximize: bool = False,
        max_evals: int | None = None,
        inertia: float = 0.2,
        cognitive: float = 0.3,
        social: float = 0.4,
        repel: float = 0.05,
        step_size: float = 1.0,
        step_decay: float = 0.95,
        min_step_size: float = 0.1,
        restart_patience: int = 3,
    ) -> None:
        self.phi = np.array([inertia, cognitive, social, repel], dtype=float)
        if np.any(self.phi < 0) or self.phi.sum() <= 0:
            raise ValueError("Model Swarms weights must be >= 0 and not all zero")
        self.initial_step, self.step_decay, self.min_step = float(step_size), float(step_decay), float(min_step_size)
        self.restart_patience = int(restart_patience)
        super().__init__(dim, bounds, popsize=popsize, seed=seed, maximize=maximize, max_evals=max_evals)

    def _initial_positions(self) -> np.ndarray:
        experts = np.eye(self.dim)
        crossovers = []
        for _ in range(max(0, self.popsize - self.dim)):
            if self.dim == 1:
                a = b = 0
            else:
                a, b = self.rng.choice(self.dim, size=2, replace=False)
            w = self.rng.uniform(0.0, 2.0)
            crossovers.append(w * experts[a] + (1.0 - w) * experts[b])
        return np.concatenate([experts, np.reshape(crossovers, (-1, self.dim))])[: self.popsize]

    def _initial_velocities(self, positions: np.ndarray) -> np.ndarray:
        return self._toward_random_other(positions, np.arange(len(positions)))

    def _toward_random_other(self, positions: np.ndarray, which: np.ndarray) -> np.ndarray:
        n = len(positions)
        out = np.zeros((len(which), self.dim))
        for k, i in enumerate(which):
            if n > 1:
                j = (int(i) + 1 + int(self.rng.integers(n - 1))) % n
                out[k] = positions[j] - positions[i]
        return out

    @property
    def step_size(self) -> float:
        return max(self.min_step, self.initial_step * self.step_decay**self.generation)

    def _move(self) -> None:
        r = self.rng.uniform(size=(len(self.x), 4)) * self.phi
        w = r / np.maximum(r.sum(axis=1, keepdims=True), 1e-12)
        worst = self.x[int(np.argmax(self.last_y))]
        self.v = (
            w[:, :1] * self.v
            + w[:, 1:2] * (self.pbest - self.x)
            + w[:, 2:3] * (self.gbest - self.x)
            + w[:, 3:4] * (self.x - worst)
        )
        self.x = self.x + self.step_size * self.v
        restart = np.flatnonzero(self.stale >= self.restart_patience)
        if restart.size:
            self.x[restart] = self.pbest[restart]
            self.v[restart] = self._toward_random_other(self.x, restart)
            self.stale[restart] = 0

    def _config(self) -> dict[str, Any]:
        inertia, cognitive, social, repel = (float(v) for v in self.phi)
        return {
            **super()._config(),
            "inertia": inertia,
            "cognitive": cognitive,
            "social": social,
            "repel": repel,
            "step_size": self.initial_step,
            "step_decay": self.step_decay,
            "min_step_size": self.min_step,
            "restart_patience": self.restart_patience,
        }
