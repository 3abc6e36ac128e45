"""Moved to :mod:`evogm_opt.optimizers.swarm` (this name keeps old imports working)."""

from evogm_opt.optimizers.swarm import SwarmOptimizer

__all__ = ["SwarmOptimizer"]
