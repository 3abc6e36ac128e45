"""What the Optuna sampler and the Ray Tune searcher share: the optimizer factory and the parameter ↔ box map.

Kept free of optuna and ray imports so that each integration needs only its own extra.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from evogm_opt.base import Optimizer
from evogm_opt.optimizer import GenerativeOptimizer

OptimizerFactory = Callable[[int, int | None, bool], Optimizer]  # (dim, seed, maximize) -> Optimizer


def default_factory(dim: int, seed: int | None, maximize: bool) -> Optimizer:
    return GenerativeOptimizer(dim, seed=seed, maximize=maximize)


@dataclass(frozen=True)
class ParameterAxis:
    """One numeric hyperparameter <-> one coordinate in [-1, 1] (log-scaled ones in log space).

    On the way out a value is clamped to [low, high], snapped to the grid ``step_origin + k·step`` when a step is
    given, clamped again, and rounded for integer parameters.
    """

    low: float
    high: float
    log: bool = False
    integer: bool = False
    step: float | None = None
    step_origin: float = 0.0
    _lo: float = field(init=False, repr=False)
    _hi: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_lo", math.log(self.low) if self.log else float(self.low))
        object.__setattr__(self, "_hi", math.log(self.high) if self.log else float(self.high))

    def to_unit(self, value: float) -> float:
        v = math.log(value) if self.log else float(value)
        return float(np.clip(2.0 * (v - self._lo) / (self._hi - self._lo) - 1.0, -1.0, 1.0))

    def from_unit(self, u: float) -> float | int:
        v = self._lo + (float(u) + 1.0) * 0.5 * (self._hi - self._lo)
        v = min(max(math.exp(v) if self.log else v, self.low), self.high)
        if self.step is not None:
            v = self.step_origin + round((v - self.step_origin) / self.step) * self.step
            v = min(max(v, self.low), self.high)
        return int(round(v)) if self.integer else float(v)
