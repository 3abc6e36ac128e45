from __future__ import annotations

import numpy as np
import pytest

from evogm_opt import CMAES, GenerativeOptimizer, ModelSwarms, PSOMerging, RandomSearch

# Small but real settings: the paper preset's generator is full size, only its epochs are cut for speed where the
# test is about the protocol rather than the preset (those use FAST_PAPER).
FAST_CONFIG = {
    "generator": {
        "hidden": [16, 16],
        "learning_rate": 1e-3,
        "epochs": 5,
        "cycle_weight": 100.0,
        "pull_weight": 1.0,
        "dual": True,
    },
    "winner_fraction": 0.3,
    "iterations_per_round": 2,
    "n_rounds": None,
    "reset_history_each_round": False,
    "reinit_each_round": False,
    "proposal_noise": 0.2,
    "adapt_noise": True,
    "deduplicate": True,
}

FACTORIES = {
    "evogm-default": lambda dim, **kw: GenerativeOptimizer(dim, **kw),
    "evogm-fast": lambda dim, **kw: GenerativeOptimizer(dim, config=FAST_CONFIG, **kw),
    "cmaes": lambda dim, **kw: CMAES(dim, **kw),
    "pso-merging": lambda dim, **kw: PSOMerging(dim, **kw),
    "model-swarms": lambda dim, **kw: ModelSwarms(dim, **kw),
    "random": lambda dim, **kw: RandomSearch(dim, **kw),
}


def sphere(x: np.ndarray) -> float:
    return float(np.sum((np.asarray(x) - 0.3) ** 2))


@pytest.fixture(params=sorted(FACTORIES))
def make_optimizer(request):
    return FACTORIES[request.param]
