from __future__ import annotations

import numpy as np
import pytest

from evogm_opt import registry

# Small but real settings over the paper preset (a small generator, few epochs, rounds that never end), for tests
# about the protocol rather than a preset: "evogm-fast" below.
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


def _registered(name: str):
    return lambda dim, **kw: registry.create(name, dim, **kw)


# The contract suite's optimizers, built through the registry as every entry point builds them (the paper presets'
# full-size generators are pinned by test_paper_preset.py; "evogm-fast" keeps the contract tests quick)
FACTORIES = {
    "evogm-default": _registered("evogm"),
    "evogm-fast": lambda dim, **kw: registry.create("evogm", dim, preset="paper", config=FAST_CONFIG, **kw),
    "cmaes": _registered("cmaes"),
    "pso-merging": _registered("pso-merging"),
    "model-swarms": _registered("model-swarms"),
    "random": _registered("random"),
}


def sphere(x: np.ndarray) -> float:
    return float(np.sum((np.asarray(x) - 0.3) ** 2))


@pytest.fixture(params=sorted(FACTORIES))
def make_optimizer(request):
    return FACTORIES[request.param]
