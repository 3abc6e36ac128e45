"""Moved: EvoGM's settings and presets live in :mod:`evogm_opt.evogm.config` (this name keeps old imports working)."""

from evogm_opt.evogm.config import DEFAULT, PAPER, PRESETS, EvoGMConfig, Recommendation, resolve

__all__ = ["DEFAULT", "PAPER", "PRESETS", "EvoGMConfig", "Recommendation", "resolve"]
