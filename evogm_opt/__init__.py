"""evogm-opt: expensive black-box optimisation with a learned proposal distribution (EvoGM) and its peers.

All optimizers share one ask/tell protocol (:class:`Optimizer`): numpy in, numpy out, minimised by default.
"""

from evogm_opt import registry
from evogm_opt._version import __version__
from evogm_opt.base import Best, Evaluations, Optimizer, load, registered_optimizers
from evogm_opt.evogm import PRESETS, AskedBatch, BasisShift, EvoGMConfig, GenerativeOptimizer, GeneratorConfig
from evogm_opt.loop import optimize
from evogm_opt.minimize import MinimizeResult, minimize
from evogm_opt.optimizers import CMAES, ModelSwarms, PSOMerging, RandomSearch

__all__ = [
    "CMAES",
    "PRESETS",
    "AskedBatch",
    "BasisShift",
    "Best",
    "Evaluations",
    "EvoGMConfig",
    "GenerativeOptimizer",
    "GeneratorConfig",
    "MinimizeResult",
    "ModelSwarms",
    "Optimizer",
    "PSOMerging",
    "RandomSearch",
    "__version__",
    "load",
    "minimize",
    "optimize",
    "registered_optimizers",
    "registry",
]
