"""evogm-opt: expensive black-box optimisation with a learned proposal distribution (EvoGM) and its peers.

All optimizers share one ask/tell protocol (:class:`Optimizer`): numpy in, numpy out, minimised by default.

Names are imported on first use (PEP 562): EvoGM needs torch and CMA-ES needs cma (which loads matplotlib), about
2 s together, and ``evogm-opt --help`` or a merge config mistake should not wait for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# numpy only (about 0.1 s); `minimize` must be bound here, or importing the module evogm_opt.minimize would
# leave the module, not the function, under that name
from evogm_opt import registry
from evogm_opt._version import __version__
from evogm_opt.base import Best, Evaluations, Optimizer, load
from evogm_opt.loop import optimize
from evogm_opt.minimize import MinimizeResult, minimize

if TYPE_CHECKING:
    from evogm_opt.evogm import PRESETS, AskedBatch, BasisShift, EvoGMConfig, GenerativeOptimizer, GeneratorConfig
    from evogm_opt.fidelity import FidelityBatch, FidelityScheduler
    from evogm_opt.optimizers import CMAES, ModelSwarms, PSOMerging, RandomSearch

# public name -> the module that defines it (torch for EvoGM; cma, and through it matplotlib, for the peers)
_LAZY = {
    **dict.fromkeys(
        ("PRESETS", "AskedBatch", "BasisShift", "EvoGMConfig", "GenerativeOptimizer", "GeneratorConfig"),
        "evogm_opt.evogm",
    ),
    **dict.fromkeys(("CMAES", "ModelSwarms", "PSOMerging", "RandomSearch"), "evogm_opt.optimizers"),
    **dict.fromkeys(("FidelityBatch", "FidelityScheduler"), "evogm_opt.fidelity"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'evogm_opt' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CMAES",
    "PRESETS",
    "AskedBatch",
    "BasisShift",
    "Best",
    "Evaluations",
    "EvoGMConfig",
    "FidelityBatch",
    "FidelityScheduler",
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
    "registry",
]
