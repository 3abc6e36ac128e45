"""The optimizers the bench compares, each built the same way: ``factory(dim, seed, budget) -> Optimizer``.

Settings that differ from a class's defaults are the bench's, and are stated here: the paper preset keeps
starting rounds (instead of stopping after R = 2) so that it can use budgets above 160, and CMA-ES gets IPOP
restarts with flat-fitness tolerances relaxed, since quantised accuracies make whole generations tie.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from evogm_opt import CMAES, PRESETS, GenerativeOptimizer, ModelSwarms, Optimizer, PSOMerging, RandomSearch

Factory = Callable[[int, int, int], Optimizer]


def _evogm(preset: str, keep_going: bool = False) -> Factory:
    def build(dim: int, seed: int, budget: int) -> Optimizer:
        config = PRESETS[preset]
        if keep_going:
            config = dataclasses.replace(config, n_rounds=None)
        return GenerativeOptimizer(dim, seed=seed, maximize=True, max_evals=budget, config=config)

    return build


def _cmaes(dim: int, seed: int, budget: int) -> Optimizer:
    relaxed = {"tolflatfitness": 1000, "tolfun": 0.0, "tolfunhist": 0.0, "tolx": 1e-9}
    return CMAES(dim, seed=seed, maximize=True, max_evals=budget, restarts=9, cma_options=relaxed)


PEERS: dict[str, Factory] = {
    "evogm": _evogm("default"),
    "evogm-paper": _evogm("paper", keep_going=True),
    "evogm-paper-single-generator": _evogm("paper-single-generator", keep_going=True),
    "evogm-paper-no-rounds": _evogm("paper-no-rounds", keep_going=True),
    "cmaes": _cmaes,
    "pso-merging": lambda dim, seed, budget: PSOMerging(dim, seed=seed, maximize=True, max_evals=budget),
    "model-swarms": lambda dim, seed, budget: ModelSwarms(dim, seed=seed, maximize=True, max_evals=budget),
    "random": lambda dim, seed, budget: RandomSearch(dim, seed=seed, maximize=True, max_evals=budget),
}

DEFAULT_PEERS = ("evogm", "evogm-paper", "cmaes", "pso-merging", "model-swarms", "random")
