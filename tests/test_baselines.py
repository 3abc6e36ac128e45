"""Baselines: each follows its published description (docstrings of evogm_opt.optimizers)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from evogm_opt import CMAES, ModelSwarms, PSOMerging, RandomSearch
from tests.conftest import sphere


def test_cmaes_starts_at_centre_or_given_x0_with_sigma0_in_box_units():
    opt = CMAES(3, bounds=(0.0, 4.0), seed=0)
    np.testing.assert_allclose(opt.es.mean, np.zeros(3))  # centre 2.0 is 0 in normalised units
    assert opt.es.sigma0 == 0.5
    opt = CMAES(3, bounds=(0.0, 4.0), seed=0, x0=[1.0, 2.0, 3.0], sigma0=0.1)
    np.testing.assert_allclose(opt.es.mean, [-0.5, 0.0, 0.5])
    assert opt.es.sigma0 == 0.1
    with pytest.raises(ValueError, match="outside the bounds"):
        CMAES(3, bounds=(0.0, 4.0), x0=[5.0, 0.0, 0.0])


def test_cmaes_default_popsize_is_cmas():
    assert CMAES(10).popsize == 4 + int(3 * np.log(10))


def test_cmaes_converges_on_a_sphere_and_keeps_asks_in_bounds():
    opt = CMAES(4, bounds=(-1.0, 1.0), seed=1, max_evals=600)
    while not opt.stop():
        x = opt.ask()
        assert np.all(np.abs(x) <= 1.0)
        opt.tell(x, [sphere(r) for r in x])
    assert opt.best.y < 1e-4


def test_cmaes_failures_rank_worst_not_median(monkeypatch):
    opt = CMAES(3, seed=2)
    x = opt.ask()
    told = {}
    original = opt.es.tell

    def spy(solutions, values):
        told["values"] = list(values)
        return original(solutions, values)

    monkeypatch.setattr(opt.es, "tell", spy)
    y = [sphere(r) for r in x]
    y[0] = np.nan
    opt.tell(x, y)
    assert told["values"][0] > max(y[1:])


def test_cmaes_takes_two_generations_of_rows_in_one_tell_and_resumes_exactly():
    # cma refuses a second tell without an ask in between; external rows can fill two batches in one call
    rng = np.random.default_rng(0)
    opt = CMAES(3, seed=0)
    x = opt.ask(3)
    extra = rng.uniform(-1.0, 1.0, (2 * opt.popsize - 3, 3))
    rows = np.concatenate([x, extra])
    opt.tell(rows, [sphere(r) for r in rows])
    assert opt.n_evals == 2 * opt.popsize and opt.n_pending == 0
    clone = CMAES.from_state_dict(opt.state_dict())
    np.testing.assert_array_equal(clone.ask(), opt.ask())


def test_cmaes_restarts_with_larger_population_when_cma_stops():
    opt = CMAES(2, seed=3, restarts=2, cma_options={"tolfun": 1e-3, "tolflatfitness": 1})
    first = opt.es.popsize
    for _ in range(200):
        x = opt.ask()
        opt.tell(x, [1.0] * len(x))  # flat: cma stops quickly
        if opt.restarts_done == 2:
            break
    assert opt.restarts_done == 2 and opt.es.popsize == 4 * first


def test_pso_merging_starts_at_base_and_experts_and_follows_its_velocity_rule():
    opt = PSOMerging(3, seed=4)
    x = opt.ask()
    np.testing.assert_array_equal(x, np.concatenate([np.zeros((1, 3)), np.eye(3)]))
    y = np.array([sphere(r) for r in x])
    rng_before = copy.deepcopy(opt.rng)
    opt.tell(x, y)
    r1 = rng_before.uniform(size=x.shape)
    r2 = rng_before.uniform(size=x.shape)
    g = x[np.argmin(y)]
    v = 0.2 * 0 + 2.0 * r1 * (x - x) + 2.0 * r2 * (g - x)
    np.testing.assert_allclose(opt.ask(), np.clip(x + v, -1, 1))


def test_model_swarms_initial_particles_are_experts_and_crossovers():
    opt = ModelSwarms(4, seed=5)
    x = opt.ask()
    assert x.shape == (8, 4)
    np.testing.assert_array_equal(x[:4], np.eye(4))
    for row in x[4:]:
        nonzero = np.flatnonzero(np.abs(row) > 0)
        assert len(nonzero) <= 2
        # clip(w·e_a + (1 − w)·e_b, -1, 1): sums to 1 unless w > 1 was clipped to 1
        assert row.sum() == pytest.approx(1.0) or (row.max() == 1.0 and -1.0 <= row.min() < 0)
    v0 = opt.v
    assert np.all(np.linalg.norm(v0, axis=1) > 0)  # velocity toward another particle


def test_model_swarms_step_size_decays_to_its_floor():
    opt = ModelSwarms(2, seed=6)
    sizes = []
    for _ in range(60):
        x = opt.ask()
        opt.tell(x, [sphere(r) for r in x])
        sizes.append(opt.step_size)
    assert sizes[0] == pytest.approx(0.95)
    assert min(sizes) == pytest.approx(0.1) and all(a >= b for a, b in zip(sizes, sizes[1:]))


def test_swarms_improve_on_random_search_on_a_sphere():
    def final(opt):
        while not opt.stop():
            x = opt.ask()
            opt.tell(x, [sphere(r) for r in x])
        return opt.best.y

    pso = np.median([final(PSOMerging(5, seed=s, max_evals=200)) for s in range(5)])
    swarm = np.median([final(ModelSwarms(5, seed=s, max_evals=200)) for s in range(5)])
    rand = np.median([final(RandomSearch(5, seed=s, max_evals=200)) for s in range(5)])
    assert pso < rand and swarm < rand


def test_random_search_is_uniform_in_the_box():
    x = RandomSearch(2, bounds={"lower": [0, 10], "upper": [1, 20]}, seed=7).ask(4000)  # 2×2 pairs: ambiguous
    assert abs(x[:, 0].mean() - 0.5) < 0.03 and abs(x[:, 1].mean() - 15) < 0.3
