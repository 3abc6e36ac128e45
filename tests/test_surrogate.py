"""The GP surrogate that screens proposals: fits what it should, ranks as it should, stays out of the paper preset."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from evogm_opt import GenerativeOptimizer
from evogm_opt.evogm.config import PRESETS, EvoGMConfig
from evogm_opt.evogm.surrogate import GaussianProcess, copula


def test_copula_preserves_order_shares_ties_and_is_standard_normal_like():
    y = np.array([3.0, 1.0, 2.0, 2.0, 10.0])
    t = copula(y)
    assert t[1] < t[2] == t[3] < t[0] < t[4]
    big = copula(np.random.default_rng(0).standard_exponential(2000))
    assert abs(big.mean()) < 1e-9 and abs(big.std() - 1) < 0.05


def test_gp_interpolates_a_smooth_function_and_is_uncertain_far_from_data():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (80, 2))
    f = lambda z: np.sum((z - 0.2) ** 2, axis=1)  # noqa: E731
    gp = GaussianProcess(x, f(x))
    test = rng.uniform(-0.8, 0.8, (200, 2))
    mean, sd = gp.predict(test)
    assert stats.spearmanr(mean, f(test)).statistic > 0.95  # the copula scale keeps the order
    _, sd_far = gp.predict(np.array([[8.0, 8.0]]))
    assert sd_far[0] > 5 * np.median(sd)


def test_the_optimizers_gp_is_fitted_on_the_copula_of_its_window_and_shared_within_a_generation():
    opt = GenerativeOptimizer(3, seed=0)
    for _ in range(2):
        x = opt.ask()
        opt.tell(x, [float(np.sum(row**2)) for row in x])
    gp = opt._surrogate()
    rows = opt._history.window(opt._history.finite_rows(), opt.config.surrogate_points)
    np.testing.assert_array_equal(gp.t.numpy(), copula(opt._history.y[rows]))  # ranks, not the raw values
    assert opt._surrogate() is gp  # the same history: one fit


def test_expected_improvement_prefers_the_predicted_minimum_region():
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (60, 2))
    gp = GaussianProcess(x, np.sum((x - 0.5) ** 2, axis=1))
    ei = gp.expected_improvement(np.array([[0.5, 0.5], [-0.9, -0.9]]))
    assert ei[0] > ei[1] >= 0


def test_gp_needs_two_points():
    with pytest.raises(ValueError, match="at least two"):
        GaussianProcess(np.zeros((1, 2)), np.zeros(1))


def test_screening_is_off_in_the_paper_presets_and_on_in_default():
    assert all(PRESETS[name].screening == 0 for name in PRESETS if name.startswith("paper"))
    assert PRESETS["default"].screening > 0


def test_bad_surrogate_settings_are_refused():
    with pytest.raises(ValueError, match="screening"):
        EvoGMConfig(screening=-1)
    with pytest.raises(ValueError, match="surrogate_points"):
        EvoGMConfig(surrogate_points=4)


def test_recommend_is_the_best_observed_point_and_survives_a_checkpoint(tmp_path):
    opt = GenerativeOptimizer(3, seed=0)
    for _ in range(4):
        x = opt.ask()
        opt.tell(x, np.sum((x - 0.4) ** 2, axis=1))
    opt.save(tmp_path / "c.npz")
    again = GenerativeOptimizer.load(tmp_path / "c.npz")
    np.testing.assert_array_equal(again.recommend().x, opt.recommend().x)
    assert again.recommend().evaluation == opt.recommend().evaluation and opt.recommend() is opt.best
    plain = GenerativeOptimizer(3, seed=0)
    x = plain.ask()
    plain.tell(x, np.sum(x**2, axis=1))
    assert plain.recommend() is plain.best


def test_training_window_keeps_the_most_recent_and_the_best_points():
    config = PRESETS["default"].to_dict() | {"train_window": 16}
    opt = GenerativeOptimizer(2, seed=0, config=config, popsize=8)
    rng = np.random.default_rng(0)
    for _ in range(6):
        x = opt.ask()
        opt.tell(x, rng.uniform(0, 1, len(x)))
    history = opt._history
    rows = np.arange(len(history))
    window = history.window(rows, 16)
    assert len(window) <= 16
    best_two = np.argsort(history.y, kind="stable")[:2]
    assert set(best_two) <= set(window.tolist())  # the best eighth (16 // 8 = 2) is always in
    assert set(rows[-14:]) <= set(window.tolist())  # and the most recent rows fill the rest
    np.testing.assert_array_equal(history.window(rows[:10], 16), rows[:10])
    with pytest.raises(ValueError, match="train_window"):
        EvoGMConfig(train_window=3)
