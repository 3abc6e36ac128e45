"""Moved to :mod:`evogm_opt.optimizers.pso_merging` (this name keeps old imports working)."""

from evogm_opt.optimizers.pso_merging import PSOMerging

__all__ = ["PSOMerging"]
