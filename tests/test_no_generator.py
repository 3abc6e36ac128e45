"""The no-generator ablation (research.md, round two): proposals are the top-P population, all else equal."""

from __future__ import annotations

import dataclasses

import numpy as np

from evogm_opt import PRESETS, GenerativeOptimizer
from tests.conftest import sphere


def run(config, evaluations: int = 60) -> GenerativeOptimizer:
    opt = GenerativeOptimizer(3, seed=0, config=config, max_evals=evaluations)
    while not opt.stop():
        x = opt.ask()
        opt.tell(x, [sphere(row) for row in x])
    return opt


def test_without_the_generator_nothing_is_trained_and_the_search_still_runs():
    ablation = run(dataclasses.replace(PRESETS["default"], use_generator=False))
    assert ablation.generators is None and np.isnan(ablation.last_loss)
    assert ablation.n_evals == 60 and ablation.best.y < sphere(np.zeros(3))


def test_the_generator_is_what_differs():
    with_generator = run(PRESETS["default"])
    without = run(dataclasses.replace(PRESETS["default"], use_generator=False))
    assert np.isfinite(with_generator.last_loss)  # it trained (generators are dropped at each round end)
    assert not np.array_equal(with_generator.evaluations.x, without.evaluations.x)
    first = with_generator.popsize  # the initial population is the same for both
    np.testing.assert_array_equal(with_generator.evaluations.x[:first], without.evaluations.x[:first])


def test_both_presets_use_the_generator():
    assert PRESETS["paper"].use_generator and PRESETS["default"].use_generator
