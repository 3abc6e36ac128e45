"""What the Optuna sampler, the Ray Tune searcher and the nevergrad registration share besides the encoding
(:mod:`evogm_opt.integrations.space`): the optimizer factory and a few small helpers.

Kept free of optuna, ray and nevergrad imports so that each integration needs only its own extra.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from evogm_opt import GenerativeOptimizer, Optimizer

OptimizerFactory = Callable[[int, int | None, bool], Optimizer]  # (dim, seed, maximize) -> Optimizer


def default_factory(dim: int, seed: int | None, maximize: bool) -> Optimizer:
    return GenerativeOptimizer(dim, seed=seed, maximize=maximize)


def derived_seed(seed: int | None, salt: int) -> int | None:
    """A seed for an optimizer created at ``salt`` (e.g. a trial number): the same in every run with ``seed``,
    different for different salts. None stays None (fresh entropy)."""
    if seed is None:
        return None
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(salt)]).generate_state(1)[0])


def row_key(row: np.ndarray) -> bytes:
    """A hashable key of a row of the unit box, equal for rows equal on a 1e-9 grid (-0.0 and 0.0 alike)."""
    return (np.round(np.asarray(row, dtype=float) * 1e9) + 0.0).tobytes()
