"""Moved: the GP surrogate lives in :mod:`evogm_opt.evogm.surrogate` (this name keeps old imports working)."""

from evogm_opt.evogm.surrogate import GaussianProcess, copula, distances, matern52

__all__ = ["GaussianProcess", "copula", "distances", "matern52"]
