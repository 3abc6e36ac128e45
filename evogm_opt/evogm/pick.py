"""The factory behind the registry's ``"evogm"``: the shape :mod:`evogm_opt.evogm.shape`'s rule picks, built.

Its own module because the rule is read by both shapes (the sequential one names it in its repr) and this factory
imports both: kept apart, nothing imports in a circle.
"""

from __future__ import annotations

from typing import Any

from evogm_opt.base import Optimizer
from evogm_opt.evogm.optimizer import GenerativeOptimizer
from evogm_opt.evogm.sequential import SequentialOptimizer
from evogm_opt.evogm.shape import choose


def build(dim: int, **options: Any) -> Optimizer:
    """``"evogm"``: the sequential shape where :func:`~evogm_opt.evogm.shape.choose` says so, else the population
    shape's default preset."""
    if choose(dim, options) == "sequential":
        return SequentialOptimizer(dim, **options)
    return GenerativeOptimizer(dim, **{"preset": "default", **options})
