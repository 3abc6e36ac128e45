"""evogm-opt: expensive black-box optimisation with a learned proposal distribution (EvoGM) and its peers.

All optimizers share one ask/tell protocol (:class:`Optimizer`): numpy in, numpy out, minimised by default.
"""

from evogm_opt import registry
from evogm_opt._version import __version__
from evogm_opt.base import Best, Optimizer, load, registered_optimizers
from evogm_opt.baselines import CMAES, ModelSwarms, PSOMerging, RandomSearch
from evogm_opt.config import PRESETS, EvoGMConfig
from evogm_opt.generator import GeneratorConfig
from evogm_opt.minimize import MinimizeResult, minimize
from evogm_opt.optimizer import GenerativeOptimizer

__all__ = [
    "CMAES",
    "PRESETS",
    "Best",
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
    "registered_optimizers",
    "registry",
]
