"""Moved: the basis of the basis shift lives in :mod:`evogm_opt.evogm.basis` (this name keeps old imports working)."""

from evogm_opt.evogm.basis import Basis, BasisShift, Boundary, fold_into_box

__all__ = ["Basis", "BasisShift", "Boundary", "fold_into_box"]
