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


class _Sphere:
    """The cheapest landscape the runner accepts, so a run's time is the optimizer's own."""

    sense = "max"
    optimum_value = 0.0

    def __init__(self, dim: int) -> None:
        self.dim, self.name = dim, "sphere"

    def observe(self, u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return -np.sum((np.atleast_2d(u) - 0.3) ** 2, axis=1)

    true_value = test_value = lambda self, u: self.observe(u, None)


def _whole_run(name: str, dim: int, budget: int, seed: list[int]) -> None:
    from evogm_bench.peers import PEERS
    from evogm_bench.runner import Evaluator, drive

    seed[0] += 1
    peer = PEERS[name].build(dim, seed[0], budget)
    drive(peer, Evaluator(_Sphere(dim), budget, np.random.default_rng(0)))


def _peer_names() -> list[str]:
    """Every peer but the slow Bayesian optimisers (seconds per evaluation: tests/test_bench.py smoke-tests them)."""
    from evogm_bench.peers import PEERS

    return sorted(name for name, peer in PEERS.items() if not peer.slow)


@pytest.mark.parametrize("dim", [10, 32])
@pytest.mark.parametrize("name", _peer_names())
def test_per_evaluation_overhead(benchmark, name, dim):
    """ask + tell per evaluation, from whole runs of 10·N evaluations (construction included) of every peer.

    Divide the reported time by ``extra_info['evaluations']`` for the per-evaluation figure.
    """
    from evogm_bench.peers import PEERS

    if not PEERS[name].available:
        pytest.skip(PEERS[name].missing_note)
    budget = 10 * dim
    seed = [0]
    if not benchmark.disabled:
        _whole_run(name, dim, budget, seed)  # warm-up: imports, torch's first use
    benchmark.extra_info["evaluations"] = budget
    benchmark.pedantic(_whole_run, args=(name, dim, budget, seed), rounds=3, iterations=1)
