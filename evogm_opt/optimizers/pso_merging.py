"""PSO-Merging (Zhang et al., 2025) in coefficient space.

Particles start at the base model (λ = 0, the box centre) and at each expert alone (the one-hots); velocities
start at zero. Each step: v ← w·v + c1·r1 ⊙ (p − x) + c2·r2 ⊙ (g − x), x ← x + v, with r1, r2 ~ U(0, 1) per
coordinate and positions clipped to the box. Defaults w = 0.2, c1 = c2 = 2 are the paper's; it runs ~5 steps.
(The paper can also seed DARE-sparsified experts as particles; that needs model weights, so it is left to
adapters that can build them and inject them as told rows.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evogm_opt.bounds import BoundsLike
from evogm_opt.optimizers.swarm import SwarmOptimizer


class PSOMerging(SwarmOptimizer):
    name = "pso-merging"

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
        cognitive: float = 2.0,
        social: float = 2.0,
    ) -> None:
        self.inertia, self.cognitive, self.social = float(inertia), float(cognitive), float(social)
        super().__init__(dim, bounds, popsize=popsize, seed=seed, maximize=maximize, max_evals=max_evals)

    @staticmethod
    def default_popsize(dim: int) -> int:
        return dim + 1  # the base model and each expert

    def _initial_positions(self) -> np.ndarray:
        seeds = np.concatenate([np.zeros((1, self.dim)), np.eye(self.dim)])
        extra = max(0, self.popsize - len(seeds))
        return np.concatenate([seeds, self.rng.uniform(-1.0, 1.0, (extra, self.dim))])[: self.popsize]

    def _move(self) -> None:
        r1 = self.rng.uniform(size=self.x.shape)
        r2 = self.rng.uniform(size=self.x.shape)
        self.v = (
            self.inertia * self.v
            + self.cognitive * r1 * (self.pbest - self.x)
            + self.social * r2 * (self.gbest - self.x)
        )
        self.x = self.x + self.v

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "inertia": self.inertia, "cognitive": self.cognitive, "social": self.social}
