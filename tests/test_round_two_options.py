"""Research round two's settings: where screening candidates come from, the posterior-top recommendation and the
high-dimensional handoff to sep-CMA-ES (docs/research.md)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from evogm_opt import PRESETS, GenerativeOptimizer, load
from evogm_opt.evogm import proposals, surrogate
from evogm_opt.evogm.config import EvoGMConfig
from tests.conftest import sphere


def run(config, dim: int = 3, evaluations: int = 60, seed: int = 0) -> GenerativeOptimizer:
    opt = GenerativeOptimizer(dim, seed=seed, config=config, max_evals=evaluations)
    while not opt.stop():
        x = opt.ask()
        opt.tell(x, [sphere(row) for row in x])
    return opt


def _finish_in_step(opt: GenerativeOptimizer, twin: GenerativeOptimizer, pending: np.ndarray) -> None:
    """Tell both the rows pending at the checkpoint, then run both to the end, asserting every ask is the same."""
    for o in (opt, twin):
        o.tell(pending, [sphere(row) for row in pending])
    while not opt.stop():
        a, b = opt.ask(), twin.ask()
        np.testing.assert_array_equal(a, b)
        opt.tell(a, [sphere(row) for row in a])
        twin.tell(b, [sphere(row) for row in b])


# ---------------------------------------------------------------------- screening candidates
def _shrink(x: np.ndarray) -> np.ndarray:
    return 0.5 * x  # a "generator" that pulls every point halfway to the origin


@pytest.mark.parametrize("source", ["noise", "generator-input", "generator-line"])
def test_each_candidate_source_keeps_the_generators_own_proposal_first_and_stays_in_the_box(source):
    rng = np.random.default_rng(0)
    population = rng.uniform(-1, 1, (5, 4))
    made = _shrink(population)
    candidates = proposals.screening_candidates(
        population, made, _shrink, source=source, variants=16, sigma=0.5, rng=rng
    )
    assert candidates.shape == (5, 16, 4)
    np.testing.assert_allclose(candidates[:, 0], made)
    assert np.all(np.abs(candidates) <= 1.0)


def test_generator_input_candidates_are_the_generators_image_of_a_neighbourhood():
    rng = np.random.default_rng(1)
    population = rng.uniform(-1, 1, (3, 4))
    candidates = proposals.screening_candidates(
        population, _shrink(population), _shrink, source="generator-input", variants=32, sigma=0.4, rng=rng
    )
    # the map halves everything: every candidate lies in [-0.5, 0.5], which plain noise around G(p) leaves
    assert np.all(np.abs(candidates) <= 0.5 + 1e-12)
    noisy = proposals.screening_candidates(
        population, _shrink(population), _shrink, source="noise", variants=32, sigma=0.4, rng=np.random.default_rng(1)
    )
    assert np.abs(noisy).max() > 0.5


def test_generator_line_candidates_lie_near_the_line_through_p_and_its_image():
    rng = np.random.default_rng(2)
    population = rng.uniform(-0.5, 0.5, (2, 3))
    made = _shrink(population)
    candidates = proposals.screening_candidates(
        population, made, _shrink, source="generator-line", variants=8, sigma=1e-9, rng=rng
    )
    for i in range(2):
        direction = made[i] - population[i]
        t = (candidates[i] - population[i]) @ direction / (direction @ direction)
        np.testing.assert_allclose(candidates[i], population[i] + t[:, None] * direction, atol=1e-6)
        assert t.min() >= 0.0 and t.max() <= 2.0 and len(np.unique(np.round(t, 6))) > 4


def test_candidate_source_changes_the_search_and_is_validated():
    base = run(PRESETS["default"])
    other = run(dataclasses.replace(PRESETS["default"], screening_candidates="generator-input"))
    assert not np.array_equal(base.evaluations.x, other.evaluations.x)
    with pytest.raises(ValueError, match="screening_candidates"):
        EvoGMConfig(screening_candidates="everywhere")


# ---------------------------------------------------------------------- recommendation
def test_posterior_top_recommends_one_of_the_best_observed_points():
    config = dataclasses.replace(PRESETS["default"], recommendation="posterior-top", recommend_top_fraction=0.1)
    opt = run(config, evaluations=80)
    rec = opt.recommend()
    y = opt.evaluations.y
    keep = max(3, int(np.ceil(0.1 * len(y))))
    assert rec.y <= np.sort(y)[keep - 1]  # among the best tenth by observed value (minimising)
    surrogate, rows = opt._fitted_surrogate()  # the GP path was taken: the choice is its masked argmin
    assert surrogate is not None
    observed = opt._history.y[rows]
    top = np.argsort(observed, kind="stable")[: max(3, int(np.ceil(0.1 * len(rows))))]
    chosen = rows[top[np.argmin(surrogate.fitted_mean()[top])]]
    assert rec.evaluation == int(opt._history.n[chosen])
    np.testing.assert_allclose(opt.evaluations.x[rec.evaluation - 1], rec.x, atol=1e-9)
    with pytest.raises(ValueError, match="recommend_top_fraction"):
        EvoGMConfig(recommend_top_fraction=0.0)


# ---------------------------------------------------------------------- handoff
def test_below_handoff_dim_nothing_changes():
    config = dataclasses.replace(PRESETS["default"], handoff_dim=4)
    np.testing.assert_array_equal(run(config).evaluations.x, run(PRESETS["default"]).evaluations.x)


def test_at_handoff_dim_the_search_continues_as_sep_cmaes_after_the_initial_population():
    config = dataclasses.replace(PRESETS["default"], handoff_dim=6)
    opt = GenerativeOptimizer(6, seed=3, config=config, max_evals=200)
    assert "strategy=sep-CMA-ES" in repr(opt) and "after the initial population" in repr(opt)
    first = opt.ask()
    assert len(first) == 12  # EvoGM's initial population: 2·dim, its one-hots first
    np.testing.assert_array_equal(first[:6], np.eye(6))
    opt.tell(first, [sphere(row - 0.2) for row in first])
    assert opt.handoff is not None and "active" in repr(opt)
    assert opt.popsize == 4 + int(3 * np.log(6)) and opt.handoff.es.opts["CMA_diagonal"] is True
    np.testing.assert_allclose(opt.handoff.es.mean, np.clip(opt.best.x, -1, 1))  # starts at the best point
    while not opt.stop():
        x = opt.ask()
        opt.tell(x, [sphere(row - 0.2) for row in x])
    assert opt.best.y < 0.05 and opt.stop_reason.startswith("evaluation budget")


def test_a_handed_off_search_resumes_exactly(tmp_path):
    config = dataclasses.replace(PRESETS["default"], handoff_dim=5)
    opt = GenerativeOptimizer(5, seed=4, config=config, max_evals=120)
    for _ in range(3):
        x = opt.ask()
        opt.tell(x, [sphere(row) for row in x])
    pending = opt.ask(4)  # asked, not yet told, at the checkpoint
    opt.save(tmp_path / "c.npz")
    twin = load(tmp_path / "c.npz")
    assert twin.handoff is not None and twin.popsize == opt.popsize
    # the checkpoint rebuilds EvoGM's P (2·dim), not sep-CMA-ES's generation
    assert opt.state_dict()["config"]["popsize"] == twin.state_dict()["config"]["popsize"] == 10
    _finish_in_step(opt, twin, pending)
    assert opt.best.y == twin.best.y


def test_a_search_that_shifted_before_handing_off_goes_on_as_evogm():
    """Earlier code shifted a handing-off search whose whole initial population failed; such a checkpoint must
    resume as it ran (EvoGM in the shifted basis), not hand off with rows labelled basis 0."""
    config = dataclasses.replace(PRESETS["default"], handoff_dim=5)
    fresh = GenerativeOptimizer(5, seed=6, config=config, max_evals=100)
    shifted = GenerativeOptimizer(5, seed=6, config=config, max_evals=100)
    shifted.basis = shifted.basis.shifted(0.9 * np.eye(5))
    assert fresh.never_shifts and not shifted.never_shifts
    for opt in (fresh, shifted):
        x = opt.ask()
        opt.tell(x, [sphere(row) for row in x])
    assert fresh.handoff is not None and shifted.handoff is None and shifted.basis_version == 1


def test_paper_never_hands_off_and_the_setting_is_validated():
    assert PRESETS["paper"].handoff_dim is None
    with pytest.raises(ValueError, match="handoff_dim"):
        EvoGMConfig(handoff_dim=1)
    with pytest.raises(ValueError, match="handoff_sigma"):
        EvoGMConfig(handoff_sigma=0.0)


def test_rows_asked_before_the_handoff_and_external_rows_are_kept_but_do_not_steer_sep_cmaes():
    """Parallel workers (Optuna, Ray) tell late: rows of the initial population told after the handoff, and rows
    never asked, go into the history and the best point, not into sep-CMA-ES (whose mean stays where it started)."""
    config = dataclasses.replace(PRESETS["default"], handoff_dim=6)
    opt = GenerativeOptimizer(6, seed=5, config=config, max_evals=300)
    first = opt.ask(24)  # the initial population (12) and 12 more asked before any result
    opt.tell(first[:12], [sphere(row - 0.2) for row in first[:12]])
    assert opt.handoff is not None
    start = opt.handoff.es.mean.copy()
    opt.tell(first[12:], [sphere(row - 0.2) for row in first[12:]])  # late rows of the old strategy
    external = np.full((1, 6), 0.2)
    opt.tell(external, [0.0])  # never asked: the best point, not a sample of sep-CMA-ES
    np.testing.assert_array_equal(opt.handoff.es.mean, start)
    assert opt.best.y == 0.0 and opt.n_evals == 25
    while not opt.stop():
        x = opt.ask()
        opt.tell(x, [sphere(row - 0.2) for row in x])
    assert opt.handoff.n_evals == opt.n_evals - 25  # every later row was its own
    assert opt.handoff.best.y < 0.01  # and it found the optimum's neighbourhood by itself


def test_cmaes_accepts_external_rows_before_its_first_ask():
    from evogm_opt.optimizers import CMAES

    opt = CMAES(4, seed=0)
    rows = np.random.default_rng(0).uniform(-1, 1, (opt.popsize, 4))
    opt.tell(rows, [sphere(r) for r in rows])  # used to raise pycma's "tell ... once per iteration"
    x = opt.ask()
    opt.tell(x, [sphere(r) for r in x])
    assert opt.n_evals == 2 * opt.popsize


# ---------------------------------------------------------------------- final replicates
def _noisy_run(config, dim: int = 4, evaluations: int = 64, seed: int = 0, ask: int | None = None):
    rng = np.random.default_rng(seed)
    opt = GenerativeOptimizer(dim, seed=seed, config=config, max_evals=evaluations)
    while not opt.stop():
        x = opt.ask(min(ask or opt.popsize, evaluations - opt.n_evals))
        opt.tell(x, [sphere(row) + 0.05 * rng.standard_normal() for row in x])
    return opt


@pytest.mark.parametrize("ask", [None, 3])
def test_the_final_evaluations_replicate_the_best_distinct_points_and_the_best_mean_is_recommended(ask):
    config = dataclasses.replace(PRESETS["default"], final_replicates_per_dim=1.0)
    opt = _noisy_run(config, ask=ask)
    x, y = opt.evaluations.x, opt.evaluations.y
    first, last = x[:-4], x[-4:]
    assert len(np.unique(first, axis=0)) == len(first)  # no repeats before the final phase
    # each of the last dim = 4 evaluations repeats a distinct earlier point: the best ones observed when asked
    matches = [np.flatnonzero(np.all(first == row, axis=1)) for row in last]
    assert all(len(m) == 1 for m in matches) and len({int(m[0]) for m in matches}) == 4
    assert {int(m[0]) for m in matches} <= set(np.argsort(y[:-4])[:8].tolist())
    # eligible: every point with a look told after the first replicate was asked (the replicated points, by the mean
    # of their looks, and new points asked beside them, by their one look)
    start = opt._final_phase_from
    assert start == len(y) - (8 if ask is None else 4)
    points = {}
    for i, row in enumerate(x):
        points.setdefault(row.tobytes(), []).append(i)
    eligible = {k: rows for k, rows in points.items() if max(rows) >= start}
    assert len(eligible) == (8 if ask is None else 4)
    key = min(eligible, key=lambda k: np.mean(y[eligible[k]]))
    rec = opt.recommend()
    assert rec.x.tobytes() == key and rec.y == pytest.approx(np.mean(y[eligible[key]]))
    assert rec.evaluation == max(eligible[key]) + 1


def test_repeats_before_the_final_phase_and_failed_replicates_do_not_mislead_the_recommendation():
    config = dataclasses.replace(PRESETS["default"], final_replicates_per_dim=1.0)
    opt = GenerativeOptimizer(3, seed=0, config=config, max_evals=30)
    warm = np.full((2, 3), -0.9)  # the same warm start told twice: not a final-phase replicate
    opt.tell(warm, [sphere(row) for row in warm])
    for _ in range(2):
        x = opt.ask()
        opt.tell(x, [sphere(row) for row in x])
    assert opt.recommend() is opt.best
    while opt.n_evals < 27:
        x = opt.ask(min(opt.popsize, 27 - opt.n_evals))
        opt.tell(x, [sphere(row) for row in x])
    best = opt.best
    x = opt.ask(3)  # the final phase: the best three, the best first
    np.testing.assert_array_equal(x[0], best.x)
    opt.tell(x, [float("nan"), *[sphere(row) for row in x[1:]]])  # the best point's replicate fails
    rec = opt.recommend()
    np.testing.assert_array_equal(rec.x, best.x)  # its one finite look still counts
    assert rec.y == best.y and rec.evaluation == best.evaluation


def test_final_replicates_need_a_budget_and_are_validated():
    config = dataclasses.replace(PRESETS["default"], final_replicates_per_dim=1.0)
    opt = GenerativeOptimizer(3, seed=0, config=config)  # no max_evals: nothing marks the end
    for _ in range(5):
        x = opt.ask()
        opt.tell(x, [sphere(row) for row in x])
    assert len(np.unique(opt.evaluations.x, axis=0)) == opt.n_evals and opt.recommend() is opt.best
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="final_replicates_per_dim"):
            EvoGMConfig(final_replicates_per_dim=bad)


def test_a_run_in_its_final_phase_resumes_exactly(tmp_path):
    config = dataclasses.replace(PRESETS["default"], final_replicates_per_dim=1.5)
    opt = GenerativeOptimizer(4, seed=2, config=config, max_evals=48)
    while opt.n_evals < 40:
        x = opt.ask()
        opt.tell(x, [sphere(row) for row in x])
    pending = opt.ask(3)  # the last of them already a replicate
    opt.save(tmp_path / "c.npz")
    twin = load(tmp_path / "c.npz")
    _finish_in_step(opt, twin, pending)
    a, b = opt.recommend(), twin.recommend()
    np.testing.assert_array_equal(a.x, b.x)
    assert (a.y, a.evaluation) == (b.y, b.evaluation)


# ---------------------------------------------------------------------- binomial-posterior recommendation
def test_binomial_smoothing_is_closer_to_the_true_accuracy_than_the_observations():
    rng = np.random.default_rng(0)
    u = rng.uniform(-1, 1, (150, 3))
    true = 0.3 + 0.5 * np.exp(-np.sum((u - 0.3) ** 2, axis=1))
    observed = rng.binomial(200, true) / 200
    smoothed = surrogate.binomial_smoothed(u, observed, 200)
    assert np.sqrt(np.mean((smoothed - true) ** 2)) < 0.6 * np.sqrt(np.mean((observed - true) ** 2))


def test_binomial_posterior_passes_over_a_lucky_lone_look_for_a_consistently_good_region():
    rng = np.random.default_rng(1)
    config = dataclasses.replace(PRESETS["default"], recommendation="binomial-posterior", binomial_trials=200)
    opt = GenerativeOptimizer(2, seed=0, maximize=True, config=config)
    good = 0.5 + 0.05 * rng.standard_normal((20, 2))  # true accuracy 0.80 here
    poor = -0.7 + 0.1 * rng.standard_normal((20, 2))  # 0.30 here ...
    lucky = np.array([[-0.7, -0.7]])  # ... where one look came out at 0.86
    opt.tell(good, 0.80 + np.array([0.01, -0.01, 0.02, -0.02, 0.0] * 4))
    opt.tell(poor, 0.30 + np.array([0.01, -0.01, 0.02, -0.02, 0.0] * 4))
    opt.tell(lucky, [0.86])
    assert opt.best.y == 0.86
    rec = opt.recommend()
    assert rec.y == pytest.approx(0.82) and np.linalg.norm(rec.x - 0.5) < 0.3  # the best look of the good region
    np.testing.assert_allclose(opt.evaluations.x[rec.evaluation - 1], rec.x, atol=1e-9)


def test_binomial_posterior_needs_accuracies_and_a_trial_count(caplog):
    with pytest.raises(ValueError, match="binomial_trials"):
        EvoGMConfig(recommendation="binomial-posterior")
    with pytest.raises(ValueError, match="binomial_trials"):
        EvoGMConfig(binomial_trials=0)
    config = dataclasses.replace(PRESETS["default"], recommendation="binomial-posterior", binomial_trials=100)
    opt = run(config, evaluations=30)  # sphere values reach above 1: not accuracies
    with caplog.at_level("WARNING", logger="evogm_opt"):
        assert opt.recommend() is opt.best
        assert opt.recommend() is opt.best
    assert sum("binomial-posterior" in r.message for r in caplog.records) == 1


# ---------------------------------------------------------------------- ablations 16 and 17
def test_screening_scales_give_candidates_of_each_scale_and_one_scale_is_the_default():
    rng = np.random.default_rng(0)
    made = np.zeros((2, 40))
    args = dict(source="noise", variants=6, sigma=0.1, rng=rng)
    plain = proposals.screening_candidates(made, made, np.array, **args)
    scaled = proposals.screening_candidates(made, made, np.array, scales=(1.0, 0.01), **args)
    spread = np.linalg.norm(scaled, axis=2)  # distance from the proposal, per candidate
    assert np.all(spread[:, 1::2] < 0.05) and np.all(spread[:, 2::2] > 0.3)  # fine and coarse alternate
    assert np.all(np.linalg.norm(plain[:, 1:], axis=2) > 0.3)
    config = dataclasses.replace(PRESETS["default"], screening_scales=[1, 0.25])
    assert config.screening_scales == (1.0, 0.25) and PRESETS["default"].screening_scales == (1.0,)
    assert EvoGMConfig.from_dict(config.to_dict()) == config
    for bad in ((), (1.0, 0.0), 0.5, ("a",)):
        with pytest.raises(ValueError, match="screening_scales"):
            dataclasses.replace(PRESETS["default"], screening_scales=bad)


def test_keeping_the_step_across_rounds_skips_the_raise_back_to_the_initial_step():
    base = dataclasses.replace(PRESETS["default"], iterations_per_round=1, max_proposal_noise=1.2)
    kept = dataclasses.replace(base, keep_step_across_rounds=True)
    steps = {}
    for name, config in (("raised", base), ("kept", kept)):
        opt = GenerativeOptimizer(4, seed=1, config=config, max_evals=200)
        x = opt.ask()  # the initial population
        opt.tell(x, [sphere(row) for row in x])
        opt.noise = 1e-3  # as if the 1/5th rule had shrunk it; the round ends with the next generation
        x = opt.ask()
        opt.tell(x, [sphere(row) for row in x])
        assert opt.round == 1
        steps[name] = opt.noise
    assert steps["raised"] >= PRESETS["default"].proposal_noise / 2 - 1e-12 and steps["kept"] < 0.01


def test_global_screening_candidates_reach_the_whole_box_and_leave_the_generators_own_first():
    config = dataclasses.replace(  # a small step: candidates near a proposal stay near it
        PRESETS["default"], screening_global=0.5, screening=8, proposal_noise=0.01, max_proposal_noise=0.02
    )
    opt = GenerativeOptimizer(3, seed=2, config=config, max_evals=200)
    seen = []
    original = proposals.screened

    def spy(candidates, *args, **kwargs):
        seen.append(candidates.copy())
        return original(candidates, *args, **kwargs)

    proposals.screened = spy
    try:
        for _ in range(3):
            x = opt.ask()
            opt.tell(x, [sphere(row - 0.8) for row in x])
    finally:
        proposals.screened = original
    candidates = seen[-1]
    near, far = candidates[:, 1:4], candidates[:, 4:]  # 8 · 0.5 = 4 drawn over the whole box
    spread = lambda c: np.linalg.norm(c - candidates[:, :1], axis=2).mean()  # noqa: E731
    assert spread(near) < 0.05 < 0.5 < spread(far) and np.all(np.abs(far) <= 1)
    with pytest.raises(ValueError, match="screening_global"):
        dataclasses.replace(PRESETS["default"], screening_global=1.0)


def test_refined_asks_climb_expected_improvement_locally_and_never_lose_it():
    """The second screening keeps the ask itself among its candidates, so EI at the ask can only rise."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (40, 3))
    gp = surrogate.GaussianProcess(x, np.array([sphere(row - 0.3) for row in x]))
    coarse = 0.3 + rng.uniform(-0.4, 0.4, (12, 3))  # near the data's best, where EI is about the mean
    projected = np.ones(12, dtype=bool)
    into_box = lambda c, _own: c  # noqa: E731
    fine, still_own = proposals.refined(coarse, projected, gp, into_box, variants=32, sigma=0.2, rng=rng)
    before, after = gp.expected_improvement(coarse), gp.expected_improvement(fine)
    assert np.all(after >= before - 1e-12) and np.mean(after > before) > 0.5
    moved = np.any(fine != coarse, axis=1)
    assert np.array_equal(still_own, ~moved)  # a row that moved is no longer the generator's own
    assert np.all(np.abs(fine - coarse) < 5 * 0.2 + 1e-12)  # polished locally, within a few fine steps


def test_screening_refine_runs_in_the_optimizer_and_checks_its_settings(monkeypatch):
    config = dataclasses.replace(PRESETS["default"], screening_refine=16)
    calls = []
    original = proposals.refined

    def spy(*args, **kwargs):
        calls.append(kwargs["sigma"])
        return original(*args, **kwargs)

    monkeypatch.setattr(proposals, "refined", spy)
    opt = GenerativeOptimizer(3, seed=0, config=config, max_evals=60)
    for _ in range(3):
        x = opt.ask()
        opt.tell(x, [sphere(row) for row in x])
    assert calls and calls[0] == pytest.approx(opt.config.screening_refine_scale * 0.6 / np.sqrt(3))
    assert EvoGMConfig.from_dict(config.to_dict()) == config
    bad_settings = ({"screening_refine": 1}, {"screening_refine": -2}, {"screening_refine": 2.5})
    for bad in (*bad_settings, {"screening_refine_scale": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            GenerativeOptimizer(3, config=bad)
