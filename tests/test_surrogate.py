"""The GP surrogate that screens proposals: fits what it should, ranks as it should, stays out of the paper preset."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from evogm_opt import GenerativeOptimizer
from evogm_opt.config import PRESETS, EvoGMConfig
from evogm_opt.surrogate import GaussianProcess, copula


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


def test_standardized_values_are_an_affine_map_of_y_and_locate_a_bowls_bottom():
    """z-scores keep the values' shape (the copula keeps only their order), which is what ablation 17 measured."""
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.uniform(-1, 1, (30, 2)), 0.35 + 0.05 * rng.standard_normal((30, 2))])
    y = np.sum((x - 0.3) ** 2, axis=1)
    gp = GaussianProcess(x, y, values="standardized")
    t = gp.t.numpy()
    assert np.corrcoef(t, y)[0, 1] == pytest.approx(1.0) and np.std(t) == pytest.approx(1.0)
    assert np.corrcoef(GaussianProcess(x, y).t.numpy(), y)[0, 1] < 0.99  # ranks bend a quadratic
    grid = np.stack(np.meshgrid(np.linspace(0, 0.6, 61), np.linspace(0, 0.6, 61)), -1).reshape(-1, 2)
    mean, _ = gp.predict(grid)
    assert np.linalg.norm(grid[np.argmin(mean)] - 0.3) <= 0.015  # within one grid step of the bottom
    assert np.all(GaussianProcess(x, np.ones(60), values="standardized").t.numpy() == 0)  # all equal: no NaN
    with pytest.raises(ValueError, match="values"):
        GaussianProcess(x, y, values="ranks")
    with pytest.raises(ValueError, match="noise_floor"):
        GaussianProcess(x, y, noise_floor=float("nan"))


def test_a_noise_floor_makes_a_plateau_of_noise_sized_bumps_look_flat():
    """Accuracies at chance level that differ only by a smooth validation-set field of amplitude 0.02: rescaled to unit
    spread they look like signal, and the GP's mean ranges as widely as on a real slope; told that the noise is
    0.03 in the values' own units, the GP calls the plateau (almost) flat, and a real slope stays a slope."""
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (40, 3))
    bumps = 0.27 + 0.02 * np.sin(4 * x[:, 0]) * np.cos(3 * x[:, 1])
    slope = 0.27 + 0.3 * (x[:, 0] + 1)
    grid = rng.uniform(-1, 1, (500, 3))
    span = lambda gp: float(np.ptp(gp.predict(grid)[0]))  # noqa: E731
    free, floored = GaussianProcess(x, -bumps), GaussianProcess(x, -bumps, noise_floor=0.03)
    assert floored.noise >= (0.03 / np.std(bumps)) ** 2 - 1e-12 and floored.noise > free.noise
    assert span(floored) < 0.5 * span(free)
    assert stats.spearmanr(GaussianProcess(x, -slope, noise_floor=0.03).predict(grid)[0], -grid[:, 0]).statistic > 0.9
    assert GaussianProcess(x, np.full(40, 0.27), noise_floor=0.03).noise == 1e3  # all equal: nothing but noise


def test_the_optimizers_gp_takes_the_surrogate_settings():
    fits = {}
    for name, config in (("set", {"surrogate_values": "standardized", "surrogate_noise_floor": 0.5}), ("plain", {})):
        opt = GenerativeOptimizer(3, seed=0, config=config)
        for _ in range(2):
            x = opt.ask()
            opt.tell(x, [float(np.sum(row**2)) for row in x])
        gp, rows = opt._fitted_surrogate()
        fits[name] = gp, opt._history.y[rows]
    (gp, y), (plain, plain_y) = fits["set"], fits["plain"]
    assert np.corrcoef(gp.t.numpy(), y)[0, 1] == pytest.approx(1.0)  # z-scores
    assert gp.noise >= (0.5 / np.std(y)) ** 2 - 1e-12  # the floor reached the fit
    assert np.corrcoef(plain.t.numpy(), plain_y)[0, 1] < 0.99 and plain.noise < gp.noise  # the default: ranks


def test_fitted_mean_matches_predict_at_the_data():
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (40, 3))
    gp = GaussianProcess(x, np.sin(3 * x[:, 0]) + 0.1 * rng.standard_normal(40))
    np.testing.assert_allclose(gp.fitted_mean(), gp.predict(x)[0], atol=1e-8)


def test_expected_improvement_prefers_the_predicted_minimum_region():
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (60, 2))
    gp = GaussianProcess(x, np.sum((x - 0.5) ** 2, axis=1))
    ei = gp.expected_improvement(np.array([[0.5, 0.5], [-0.9, -0.9]]))
    assert ei[0] > ei[1] >= 0


def test_a_believed_point_keeps_the_mean_and_removes_the_improvement_expected_there():
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (30, 2))
    gp = GaussianProcess(x, np.sum((x - 0.5) ** 2, axis=1))
    peak, elsewhere = np.array([[0.5, 0.5]]), np.array([[0.5, -0.5], [-0.6, 0.2]])
    believed = gp.believing(peak)
    np.testing.assert_allclose(believed.predict(elsewhere)[0], gp.predict(elsewhere)[0], atol=0.05)
    np.testing.assert_allclose(believed.predict(peak)[0], gp.predict(peak)[0], atol=1e-6)
    assert believed.predict(peak)[1][0] < 0.5 * gp.predict(peak)[1][0]
    assert believed.expected_improvement(peak)[0] < 0.5 * gp.expected_improvement(peak)[0]
    assert believed.incumbent == min(gp.incumbent, gp.predict(peak)[0][0]) and len(gp.x) == 30  # original kept


def test_a_believer_batch_spreads_picks_that_independent_screening_stacks():
    """Two proposals with the same candidates: independently both ask the EI peak; believing, the second moves."""
    from evogm_opt.evogm.proposals import screened

    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, (30, 2))
    gp = GaussianProcess(x, np.sum((x - 0.5) ** 2, axis=1))
    shared = rng.uniform(-1, 1, (64, 2))
    candidates = np.stack([shared, shared])
    identity = lambda u, own: u  # noqa: E731
    independent, _ = screened(candidates, gp, identity, exploit=0)
    believer, _ = screened(candidates, gp, identity, exploit=0, believer=True)
    np.testing.assert_array_equal(independent[0], independent[1])
    np.testing.assert_array_equal(believer[0], independent[0])  # the first pick is the same
    assert not np.array_equal(believer[1], believer[0])
    with pytest.raises(ValueError, match="screening_batch"):
        EvoGMConfig(screening_batch="kriging")


def test_gp_needs_two_points():
    with pytest.raises(ValueError, match="at least two"):
        GaussianProcess(np.zeros((1, 2)), np.zeros(1))


def test_screening_is_off_in_the_paper_presets_and_on_in_default():
    assert all(PRESETS[name].screening == 0 for name in PRESETS if name.startswith("paper"))
    assert PRESETS["default"].screening > 0


def test_bad_surrogate_settings_are_refused():
    with pytest.raises(ValueError, match="screening"):
        EvoGMConfig(screening=-1)
    with pytest.raises(ValueError, match="recommendation"):
        EvoGMConfig(recommendation="luckiest")
    with pytest.raises(ValueError, match="surrogate_values"):
        GenerativeOptimizer(3, config={"surrogate_values": "ranks"})
    with pytest.raises(ValueError, match="surrogate_noise_floor"):
        GenerativeOptimizer(3, config={"surrogate_noise_floor": -0.1})


def test_posterior_recommendation_is_a_told_point_with_its_own_evaluation_number():
    """(Whether it beats the luckiest point is a benchmark question: docs/research.md, where it did not.)"""
    config = PRESETS["default"].to_dict() | {"recommendation": "posterior"}
    opt = GenerativeOptimizer(3, seed=0, config=config, maximize=True)
    rng = np.random.default_rng(0)
    told_x, told_y = [], []
    for _ in range(6):
        x = opt.ask()
        y = -np.sum((x - 0.4) ** 2, axis=1) + 0.3 * rng.standard_normal(len(x))
        opt.tell(x, y)
        told_x.append(x)
        told_y.append(y)
    all_x, all_y = np.concatenate(told_x), np.concatenate(told_y)
    reco = opt.recommend()
    i = reco.evaluation - 1
    np.testing.assert_allclose(all_x[i], reco.x, atol=1e-12)
    assert reco.y == all_y[i]


def test_recommend_is_best_by_default_and_survives_a_checkpoint(tmp_path):
    opt = GenerativeOptimizer(3, seed=0, config=PRESETS["default"].to_dict() | {"recommendation": "posterior"})
    for _ in range(4):
        x = opt.ask()
        opt.tell(x, np.sum((x - 0.4) ** 2, axis=1))
    opt.save(tmp_path / "c.npz")
    again = GenerativeOptimizer.load(tmp_path / "c.npz")
    np.testing.assert_array_equal(again.recommend().x, opt.recommend().x)
    assert again.recommend().evaluation == opt.recommend().evaluation
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
