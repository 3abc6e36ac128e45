"""Moved: ``GenerativeOptimizer`` lives in :mod:`evogm_opt.evogm.optimizer` (this name keeps old imports working)."""

from evogm_opt.evogm.optimizer import AskedBatch, BasisHook, GenerativeOptimizer

__all__ = ["AskedBatch", "BasisHook", "GenerativeOptimizer"]
