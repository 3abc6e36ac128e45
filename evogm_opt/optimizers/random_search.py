"""Uniform random search over the box: the floor every optimizer must clear."""

from __future__ import annotations

import numpy as np

from evogm_opt.base import Optimizer


class RandomSearch(Optimizer):
    """Independent uniform samples; ``popsize`` only sets the default ``ask()`` batch size."""

    name = "random"

    def _propose(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self.box.sample(self.rng, n), np.empty((n, 0))

    def _observe(self, x: np.ndarray, y: np.ndarray, payload: np.ndarray, asked: np.ndarray) -> None:
        del x, y, payload, asked
