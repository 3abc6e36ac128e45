"""Peers behind the same ask/tell protocol as ``GenerativeOptimizer``."""

from evogm_opt.optimizers.cmaes import CMAES
from evogm_opt.optimizers.model_swarms import ModelSwarms
from evogm_opt.optimizers.pso_merging import PSOMerging
from evogm_opt.optimizers.random_search import RandomSearch

__all__ = ["CMAES", "ModelSwarms", "PSOMerging", "RandomSearch"]
