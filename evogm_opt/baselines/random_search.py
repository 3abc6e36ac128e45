"""Moved to :mod:`evogm_opt.optimizers.random_search` (this name keeps old imports working)."""

from evogm_opt.optimizers.random_search import RandomSearch

__all__ = ["RandomSearch"]
