"""Peers behind the same ask/tell protocol as ``GenerativeOptimizer``."""

from evogm_opt.baselines.cmaes import CMAES
from evogm_opt.baselines.model_swarms import ModelSwarms
from evogm_opt.baselines.pso_merging import PSOMerging
from evogm_opt.baselines.random_search import RandomSearch

__all__ = ["CMAES", "ModelSwarms", "PSOMerging", "RandomSearch"]
