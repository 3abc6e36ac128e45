"""The ask/tell contract every optimizer shares (docs/api.md)."""

from __future__ import annotations

import numpy as np
import pytest

from evogm_opt import CMAES, GenerativeOptimizer, Optimizer, RandomSearch
from tests.conftest import sphere


def run_generations(opt: Optimizer, n: int, f=sphere) -> list[np.ndarray]:
    asks = []
    for _ in range(n):
        x = opt.ask()
        asks.append(x)
        opt.tell(x, [f(row) for row in x])
    return asks


def test_ask_returns_popsize_rows_inside_per_dimension_bounds(make_optimizer):
    bounds = np.array([[-1.0, 1.0], [0.0, 2.0], [-5.0, -4.0], [10.0, 30.0]])
    opt = make_optimizer(4, bounds=bounds, seed=0)
    for _ in range(4):
        x = opt.ask()
        assert x.shape == (opt.popsize, 4) and x.dtype == np.float64
        assert np.all(x >= bounds[:, 0]) and np.all(x <= bounds[:, 1])
        opt.tell(x, [sphere(r) for r in x])


def test_ask_n_returns_n_rows(make_optimizer):
    opt = make_optimizer(3, seed=1)
    assert opt.ask(5).shape == (5, 3)
    assert opt.ask(1).shape == (1, 3)


def test_default_popsize_is_twice_dim_for_evogm():
    assert GenerativeOptimizer(7).popsize == 14


def test_tell_accepts_subset_reordered_and_unasked_rows(make_optimizer):
    opt = make_optimizer(3, seed=2)
    x = opt.ask()
    order = np.random.default_rng(0).permutation(len(x))[: len(x) - 1]
    external = np.array([[0.3, 0.3, 0.3], [0.1, -0.2, 0.5]])
    rows = np.concatenate([x[order], external])
    opt.tell(rows, [sphere(r) for r in rows])
    assert opt.n_evals == len(rows)
    assert opt.n_pending == 1  # the row that was never told stays pending
    np.testing.assert_array_equal(opt.best.x, external[0])
    run_generations(opt, 3)


def test_failed_evaluations_rank_worst_and_never_become_best(make_optimizer):
    opt = make_optimizer(3, seed=3)
    x = opt.ask(8)
    y = [np.nan, np.inf, -np.inf, None] + [sphere(r) for r in x[4:]]
    opt.tell(x, y)
    assert opt.n_evals == len(x) and opt.n_failed == 4
    assert opt.best is not None and np.isfinite(opt.best.y)
    assert opt.best.y == min(sphere(r) for r in x[4:])
    run_generations(opt, 3)
    assert np.isfinite(opt.best.y)


def test_all_failed_leaves_best_empty(make_optimizer):
    opt = make_optimizer(2, seed=4)
    x = opt.ask()
    opt.tell(x, [np.nan] * len(x))
    assert opt.best is None and opt.n_failed == len(x)
    x2 = opt.ask()
    assert np.all(np.isfinite(x2))


def test_maximize_flips_direction(make_optimizer):
    opt = make_optimizer(2, seed=5, maximize=True)
    x = opt.ask()
    values = [-sphere(r) for r in x]
    opt.tell(x, values)
    assert opt.best.y == max(values)


def test_max_evals_stops(make_optimizer):
    opt = make_optimizer(2, seed=6, max_evals=9)
    while not opt.stop():
        x = opt.ask()
        opt.tell(x, [sphere(r) for r in x])
    assert opt.n_evals >= 9
    assert opt.stop_reason == f"evaluation budget: {opt.n_evals} of 9 evaluations used"


def test_same_seed_same_asks_and_global_rng_untouched(make_optimizer):
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = run_generations(make_optimizer(3, seed=9), 3)
    assert np.array_equal(np.random.get_state()[1], before)
    b = run_generations(make_optimizer(3, seed=9), 3)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        (np.zeros((2, 4)), [1.0, 2.0], r"shape \(n, 3\)"),
        (np.zeros(3), [1.0], r"shape \(n, 3\)"),
        (np.zeros((2, 3)), [1.0], "y has 1 values but X has 2 rows"),
        (np.zeros((2, 3)), np.ones((2, 2, 2)), "one value per row"),  # (n, K) is a vector tell: tests/test_pareto.py
        (np.array([[0.0, np.nan, 0.0]]), [1.0], "non-finite"),
        (np.array([[0.0, 1.5, 0.0]]), [1.0], r"outside the bounds: x\[1\]"),
        (np.zeros((1, 3)), ["abc"], "sequence of 1 numbers"),
    ],
)
def test_bad_tell_raises_and_loses_nothing(make_optimizer, x, y, match):
    opt = make_optimizer(3, seed=7)
    asked = opt.ask()
    opt.tell(asked[:2], [sphere(r) for r in asked[:2]])
    before = opt.state_dict()
    with pytest.raises(ValueError, match=match):
        opt.tell(x, y)
    after = opt.state_dict()
    assert after["core"]["n_evals"] == before["core"]["n_evals"] == 2
    np.testing.assert_array_equal(after["core"]["pending_x"], before["core"]["pending_x"])
    opt.tell(asked[2:], [sphere(r) for r in asked[2:]])  # the run goes on
    assert opt.n_evals == len(asked)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dim": 0}, "dim must be a positive integer"),
        ({"dim": 2.5}, "dim must be a positive integer"),
        ({"dim": 2, "bounds": (1.0, 1.0)}, "lower < upper"),
        ({"dim": 2, "bounds": [[0, 3], [3, 2]]}, "dimension 1 has lower=3.0 >= upper=2.0"),
        ({"dim": 2, "bounds": [[0, 1]]}, r"shape \(2, 2\)"),
        ({"dim": 2, "bounds": (0, np.inf)}, "finite"),
        ({"dim": 2, "popsize": 0}, "popsize"),
        ({"dim": 2, "max_evals": 0}, "max_evals"),
        ({"dim": 2, "seed": -1}, "seed"),
    ],
)
def test_bad_construction_raises(make_optimizer, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_optimizer(**kwargs)


def test_bad_ask_count_raises():
    with pytest.raises(ValueError, match="positive integer"):
        RandomSearch(2).ask(0)


def test_unknown_preset_and_tiny_popsize_are_refused():
    with pytest.raises(ValueError, match="unknown preset"):
        GenerativeOptimizer(3, preset="fast")
    with pytest.raises(ValueError, match="popsize >= 2"):
        GenerativeOptimizer(3, popsize=1)
    with pytest.raises(ValueError, match="popsize >= 3"):
        CMAES(3, popsize=2)


def test_told_rows_within_float_noise_of_the_box_are_clipped_not_refused():
    opt = RandomSearch(2, bounds=(0.0, 1.0))
    opt.tell([[1.0 + 1e-12, 0.5]], [1.0])
    assert opt.best.x[0] == 1.0
