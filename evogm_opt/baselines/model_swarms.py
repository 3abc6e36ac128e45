"""Moved to :mod:`evogm_opt.optimizers.model_swarms` (this name keeps old imports working)."""

from evogm_opt.optimizers.model_swarms import ModelSwarms

__all__ = ["ModelSwarms"]
