"""Moved: the optimizer peers live in :mod:`evogm_opt.optimizers` ("baselines" collided with ``llm_merge.baselines``,
the reference merges). This package keeps old imports working."""

from evogm_opt.optimizers import CMAES, ModelSwarms, PSOMerging, RandomSearch

__all__ = ["CMAES", "ModelSwarms", "PSOMerging", "RandomSearch"]
