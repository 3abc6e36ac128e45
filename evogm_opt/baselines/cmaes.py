"""Moved to :mod:`evogm_opt.optimizers.cmaes` (this name keeps old imports working)."""

from evogm_opt.optimizers.cmaes import CMAES

__all__ = ["CMAES"]
