"""What the Optuna sampler, the Ray Tune searcher and the nevergrad registration share besides the encoding
(:mod:`evogm_opt.integrations.space`): the optimizer factory and a few small helpers.

Kept free of optuna, ray and nevergrad imports so that each integration needs only its own extra.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from evogm_opt import GenerativeOptimizer, Optimizer

OptimizerFactory = Callable[[int, int | None, bool], Optimizer]  # (dim, seed, maximize) -> Optimizer


DEFAULT_POPSIZE = 10
"""Generation size of the samplers' default optimizer (see :func:`sampler_factory`)."""


def sampler_factory(popsize: int | None = None) -> OptimizerFactory:
    """The Optuna sampler's and Ray Tune searcher's default optimizer: EvoGM's default preset with ``popsize``
    trials per generation (default :data:`DEFAULT_POPSIZE`, at most 2·dim).

    Why not the core's 2·dim: encoded HPO spaces have 10–30 coordinates (a categorical takes one per choice) and
    budgets of 30–100 trials, so 2·dim would spend most of a study on the first generation (docs/hpo.md).
    """

    def factory(dim: int, seed: int | None, maximize: bool) -> Optimizer:
        size = popsize if popsize is not None else max(2, min(DEFAULT_POPSIZE, 2 * dim))
        return GenerativeOptimizer(dim, seed=seed, maximize=maximize, popsize=size)

    return factory


def derived_seed(seed: int | None, salt: int) -> int | None:
    """A seed for an optimizer created at ``salt`` (e.g. a trial number): the same in every run with ``seed``,
    different for different salts. None stays None (fresh entropy)."""
    if seed is None:
        return None
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(salt)]).generate_state(1)[0])


def row_key(row: np.ndarray) -> bytes:
    """A hashable key of a row of the unit box, equal for rows equal on a 1e-9 grid (-0.0 and 0.0 alike)."""
    return (np.round(np.asarray(row, dtype=float) * 1e9) + 0.0).tobytes()
