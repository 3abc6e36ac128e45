"""Overhead per generation (ask + tell) at dim 10 — pytest-benchmark, not a timed test.

Run: ``.venv/bin/python -m pytest benchmarks/perf --benchmark-only`` (figures in docs/performance.md).
The fitness is a trivial sphere, so the time is the optimizer's own. Each benchmark round runs one *whole*
EvoGM round (init + T iterations) so generations with and without training are averaged as in a real run.
"""

from __future__ import annotations

import numpy as np
import pytest

from evogm_opt import CMAES, GenerativeOptimizer, ModelSwarms, PSOMerging, RandomSearch

DIM = 10


def sphere_batch(x: np.ndarray) -> list[float]:
    return np.sum((x - 0.3) ** 2, axis=1).tolist()


def generations(opt, n: int) -> None:
    for _ in range(n):
        x = opt.ask()
        opt.tell(x, sphere_batch(x))


@pytest.mark.parametrize("preset", ["paper", "default"])
def test_evogm_generation_overhead(benchmark, preset):
    opt = GenerativeOptimizer(DIM, preset=preset, seed=0, config=None)
    generations(opt, 4)  # warm-up: first torch use, first round
    per_round = 1 + opt.config.iterations_per_round
    benchmark.extra_info["generations_per_round"] = per_round
    benchmark.pedantic(generations, args=(opt, per_round), rounds=3, iterations=1)


@pytest.mark.parametrize("cls", [CMAES, PSOMerging, ModelSwarms, RandomSearch], ids=lambda c: c.__name__)
def test_baseline_generation_overhead(benchmark, cls):
    opt = cls(DIM, seed=0)
    generations(opt, 2)
    benchmark.pedantic(generations, args=(opt, 4), rounds=5, iterations=1)
