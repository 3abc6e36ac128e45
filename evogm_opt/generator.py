"""Moved: EvoGM's generators live in :mod:`evogm_opt.evogm.generator` (this name keeps old imports working)."""

from evogm_opt.evogm.generator import PAPER_HIDDEN, GeneratorConfig, GeneratorPair
from evogm_opt.evogm.generator import _backward as _backward
from evogm_opt.evogm.generator import _forward as _forward

__all__ = ["PAPER_HIDDEN", "GeneratorConfig", "GeneratorPair"]
