"""EvoGM's sequential shape (evogm_opt.evogm.sequential) and its GP (ard_gp): LogEI stays finite and exact, the GP
fits what it is given, the acquisition's maximum is at least its best start; the optimizer asks its design first,
one point at a time, never an evaluated point twice, builds batches by kriging believer, resumes exactly and
refuses a state no run could write; ``"evogm"`` picks it by its stated rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from evogm_bench.research import variants
from evogm_bench.research.sequential import SequentialEvoGM
from scipy import stats

import evogm_opt
from evogm_opt import GenerativeOptimizer, registry
from evogm_opt.evogm import ard_gp, shape
from evogm_opt.evogm.ard_gp import ARDGaussianProcess, log_h, matern52, maximise_log_ei
from evogm_opt.evogm.sequential import SequentialConfig, SequentialOptimizer
from tests.conftest import sphere


def test_log_h_matches_the_direct_formula_where_it_is_exact_and_stays_finite_far_below():
    z = np.linspace(-25.0, 6.0, 200)
    direct = np.log(stats.norm.pdf(z) + z * stats.norm.cdf(z))
    np.testing.assert_allclose(log_h(torch.as_tensor(z)).numpy(), direct, rtol=1e-9, atol=1e-9)
    far = log_h(torch.tensor([-40.0, -1e3, -1e6], dtype=torch.float64)).numpy()
    assert np.all(np.isfinite(far)) and np.all(np.diff(far) < 0)
    # the tail's series against mpmath-free high precision: h(z) ~ φ(z)/z² (1 − 3/z²) at z = −40
    expected = -0.5 * 40.0**2 - 0.5 * math.log(2 * math.pi) - 2 * math.log(40.0) + math.log1p(-3 / 1600)
    assert abs(far[0] - expected) < 1e-6


def test_the_kernel_is_scikit_learns_ard_matern_and_its_gradient_is_finite_where_points_coincide():
    kernels = pytest.importorskip("sklearn.gaussian_process.kernels")
    rng = np.random.default_rng(1)
    # 16 coordinates, length scales down to the fit's lower bound e^-6: |a|² of ~10^6, where the cancellation of
    # |a|² + |b|² − 2a·b at coinciding points goes below zero and only the clamp keeps the root real
    scales = np.exp(np.linspace(-6.0, 4.0, 16))
    x1, x2 = rng.uniform(0, 1, (60, 16)), rng.uniform(0, 1, (40, 16))
    x2[:5] = x1[:5]  # coinciding points
    ours = matern52(torch.as_tensor(x1), torch.as_tensor(x2), torch.as_tensor(scales)).numpy()
    assert np.all(np.isfinite(ours))
    np.testing.assert_allclose(ours, kernels.Matern(length_scale=scales, nu=2.5)(x1, x2), rtol=0, atol=1e-8)
    log_scales = torch.as_tensor(np.log(scales), dtype=torch.float64).requires_grad_()
    x = torch.as_tensor(x1)
    matern52(x, x, torch.exp(log_scales)).sum().backward()
    assert log_scales.grad is not None and torch.all(torch.isfinite(log_scales.grad))


def test_the_closed_form_gradients_are_autograds_of_the_torch_definitions():
    """Ablation 37: the fit and the climb take their gradients in closed form (NumPy); the torch forms, which
    autograd differentiates, are the definitions — values and gradients agree to rounding, tied length scales,
    a point on a training point and LogEI's far tail included."""
    rng = np.random.default_rng(0)
    for scale_of in (None, np.array([0, 1, 1, 2])):
        x = rng.uniform(-1, 1, (30, 4))
        gp = ARDGaussianProcess(x, np.sin(3 * x[:, 0]) + x[:, 1] ** 2, scale_of=scale_of)
        for _ in range(4):
            params = gp.log_params + rng.normal(0.0, 0.7, len(gp.log_params))
            value, grad = gp._log_posterior_and_grad(params)
            p = torch.tensor(params, requires_grad=True)
            reference = gp.neg_log_posterior(p)
            reference.backward()
            assert value == pytest.approx(reference.item(), rel=1e-11)
            np.testing.assert_allclose(grad, p.grad.numpy(), rtol=1e-8, atol=1e-9 * np.abs(grad).max())
        points = rng.uniform(0, 1, (6, 4))
        points[0] = gp.x[0].numpy()
        for incumbent in (gp.incumbent(), gp.incumbent() - 40.0):  # the second deep in log_h's tail
            values, grads = gp.log_ei_and_grad(points, incumbent)
            p = torch.tensor(points, requires_grad=True)
            reference = gp.log_ei(p, incumbent)
            reference.sum().backward()
            np.testing.assert_allclose(values, reference.detach().numpy(), rtol=1e-9, atol=1e-8)
            np.testing.assert_allclose(grads, p.grad.numpy(), rtol=1e-7, atol=1e-8)
    z = np.concatenate([np.linspace(-45.0, 8.0, 400), [-30.0, -1e3]])
    zt = torch.tensor(z, requires_grad=True)
    log_h(zt).sum().backward()
    values, slopes = ard_gp._log_h_and_slope(z)
    np.testing.assert_allclose(values, log_h(torch.as_tensor(z)).numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(slopes, zt.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_a_covariance_that_is_not_positive_definite_gets_the_torch_forms_penalty_and_no_gradient(monkeypatch):
    x = np.random.default_rng(1).uniform(-1, 1, (10, 2))
    gp = ARDGaussianProcess(x, x[:, 0])

    def refuse(*args, **kwargs):
        raise ard_gp.linalg.LinAlgError("not positive definite")

    monkeypatch.setattr(ard_gp.linalg, "cholesky", refuse)
    value, grad = gp._log_posterior_and_grad(gp.log_params)
    assert value == 1e10 and not grad.any()


def test_the_gp_interpolates_a_smooth_function_and_learns_which_coordinate_matters():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (40, 3))
    y = np.sin(3 * x[:, 0]) + 0.01 * x[:, 2]  # the first coordinate matters, the third barely
    gp = ARDGaussianProcess(x, y)
    test = rng.uniform(-1, 1, (50, 3))
    err = np.abs(gp.mean(test) - (np.sin(3 * test[:, 0]) + 0.01 * test[:, 2]))
    assert np.median(err) < 0.05
    ls = gp.length_scales.numpy()
    assert ls[0] < ls[2]


def test_the_acquisition_maximum_is_at_least_its_best_start_and_inside_the_box():
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (12, 2))
    gp = ARDGaussianProcess(x, np.array([sphere(r - 0.3) for r in x]))
    pool = rng.uniform(-1, 1, (64, 2))
    point, value = maximise_log_ei(gp, pool, n_starts=4)
    assert np.all(np.abs(point) <= 1.0)
    with torch.no_grad():
        pool_scores = gp.log_ei(torch.as_tensor((pool + 1) / 2), gp.incumbent()).numpy()
    assert value >= pool_scores.max() - 1e-12


def run(opt: SequentialOptimizer, f=sphere, stop_at: int | None = None) -> SequentialOptimizer:
    while not opt.stop() and (stop_at is None or opt.n_evals < stop_at):
        x = opt.ask()
        opt.tell(x, [f(row) for row in x])
    return opt


def test_the_design_comes_first_then_model_based_asks_without_repeats():
    opt = run(SequentialOptimizer(3, seed=0, max_evals=24))
    x = opt.evaluations.x
    np.testing.assert_array_equal(x[:3], np.eye(3))
    np.testing.assert_allclose(x[3], np.full(3, 1 / 3))
    assert len(opt.design) == 15  # 5·dim, more than a quarter of 24 (ablation 35)
    assert len(x) == 24 and len(np.unique(np.round(x, 12), axis=0)) == 24
    assert opt.best.y < min(sphere(r) for r in x[:6])  # the model-based asks improved on the design


def test_asking_several_at_once_gives_distinct_points_and_the_same_seed_the_same_run():
    opt = SequentialOptimizer(2, seed=3, max_evals=30, config={"init_fraction": 0.0})
    first = opt.ask(4)
    opt.tell(first, [sphere(r) for r in first])
    batch = opt.ask(3)  # kriging believer: each point is chosen with the earlier ones fantasised
    assert len(np.unique(np.round(batch, 12), axis=0)) == 3 and len(opt.fantasies) == 3
    a = run(SequentialOptimizer(2, seed=5, max_evals=16)).evaluations.x
    b = run(SequentialOptimizer(2, seed=5, max_evals=16)).evaluations.x
    np.testing.assert_array_equal(a, b)


def test_a_batch_told_in_parts_does_not_re_ask_design_rows():
    opt = SequentialOptimizer(3, seed=1, max_evals=24)  # a design of 15 rows
    first = opt.ask(4)
    opt.tell(first[:2], [sphere(r) for r in first[:2]])
    second = opt.ask(2)  # the design's rows 4 and 5, not rows 2 and 3 again
    np.testing.assert_array_equal(np.concatenate([first, second]), opt.box.to_user(opt.design[:6]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_row_told_from_a_batch_leaves_the_others_fantasies_so_the_next_ask_avoids_them(seed):
    """Workers that finish one at a time: the rows still in flight stay in the GP as fantasies."""
    opt = run(SequentialOptimizer(2, seed=seed, max_evals=40), stop_at=10)  # past the design
    batch = opt.ask(4)
    opt.tell(batch[:1], [sphere(batch[0])])
    assert len(opt.fantasies) == 3 and opt.n_pending == 3
    nxt = opt.ask(1)[0]
    assert np.min(np.max(np.abs(batch[1:] - nxt), axis=1)) > 0.05  # not on (or next to) a row in flight
    opt.tell(batch[1:], [sphere(r) for r in batch[1:]])
    assert len(opt.fantasies) == 1  # only the last ask is still pending


def test_rows_told_before_the_first_ask_replace_sobol_rows_not_the_experts():
    opt = SequentialOptimizer(3, seed=0, max_evals=40)  # design: 3 experts, the mix, 11 Sobol rows
    warm = np.array([[0.2, 0.1, -0.3], [-0.5, 0.4, 0.0]])
    opt.tell(warm, [sphere(r) for r in warm])
    n = len(opt.design) - 2  # the design less the 2 rows told
    asked = np.concatenate([opt.ask() for _ in range(n)])
    np.testing.assert_array_equal(asked[:3], np.eye(3))  # each expert alone first, all the same
    np.testing.assert_array_equal(asked, opt.box.to_user(opt.design[:n]))
    opt.tell(asked, [sphere(r) for r in asked])
    assert not np.any(np.all(np.isclose(opt.ask(), opt.box.to_user(opt.design[n:])), axis=1))  # now model-based


def test_without_a_budget_the_default_stop_waits_for_the_design_and_counts_the_population_patience():
    opt = SequentialOptimizer(8, seed=0)  # design of 40 rows (a quarter of 20·dim)
    while not opt.stop() and opt.n_evals < 45:
        x = opt.ask()
        opt.tell(x, [1.0] * len(x))  # never an improvement after the first
    assert opt.n_evals == 45 and not opt.stop()  # 25 asks would have been the generations' rule
    opt.tell(np.zeros((1, 8)) + 0.1, [1.0])
    while not opt.stop():
        opt.tell(opt.ask(), [1.0])
    assert opt.n_evals == 1 + 25 * 2 * 8 and "25 generations of the population shape" in opt.stop_reason


def test_the_core_runs_exactly_as_the_measured_research_variant():
    """evogm-seq-fast's records (docs/research.md, ablations 29 and 33) are the core's sequential shape."""
    config = variants.SEQUENTIAL["evogm-seq-fast"][0]
    core = SequentialOptimizer(3, seed=7, max_evals=30, maximize=True)
    research = SequentialEvoGM(3, seed=7, max_evals=30, maximize=True, config=config)
    for _ in range(30):
        a, b = core.ask(), research.ask()
        np.testing.assert_array_equal(a, b)
        value = [-sphere(r - 0.2) for r in a]
        core.tell(a, value)
        research.tell(b, value)


@pytest.mark.parametrize("stop_at", [3, 11, 17])  # in the design (10 rows), at the first model-based asks, later
def test_a_checkpoint_resumes_exactly_even_with_a_batch_in_flight(tmp_path, stop_at):
    f = lambda r: sphere(r - 0.3)  # noqa: E731
    whole = run(SequentialOptimizer(2, bounds=(0.0, 2.0), seed=4, max_evals=20, popsize=2), f)
    opt = run(SequentialOptimizer(2, bounds=(0.0, 2.0), seed=4, max_evals=20, popsize=2), f, stop_at=stop_at)
    pending = opt.ask(2)  # asked, not told: fantasies of the next ask, saved with the rest
    opt.save(tmp_path / "c.npz")
    loaded = evogm_opt.load(tmp_path / "c.npz")
    assert type(loaded) is SequentialOptimizer and loaded.n_pending == 2 and len(loaded.fantasies) == 2
    for o in (opt, loaded):
        o.tell(pending, [f(r) for r in pending])
        run(o, f)
    np.testing.assert_array_equal(loaded.evaluations.x, opt.evaluations.x)
    np.testing.assert_array_equal(loaded.evaluations.y, opt.evaluations.y)
    np.testing.assert_array_equal(whole.evaluations.x, opt.evaluations.x)  # as if it had never stopped
    assert len(whole.evaluations.y) == len(opt.evaluations.y) == 20


@pytest.mark.parametrize(
    ("field", "edit", "message"),
    [
        ("design_given", lambda s: 99, "beyond the design"),
        ("told_u", lambda s: s[:-1], "algorithm.told_u"),
        ("told_u", lambda s: s * 3.0, "outside the normalised box"),
        ("told_y", lambda s: np.where(np.arange(len(s)) == 0, np.nan, s), "holds NaN"),
        ("fantasies", lambda s: np.zeros((3, 2)), "only 0 are pending"),
        ("told_since_training", lambda s: 10**6, "beyond"),
        ("gp_warm", lambda s: np.append(s, 0.0), r"algorithm.gp_warm has shape \(5,\); expected \(4,\)"),
        ("generators", lambda s: {**s, "weights": s["weights"][:-16]}, "generators.weights has"),
        ("generators", lambda s: {**s, "adam_exp_avg_sq": s["adam_exp_avg_sq"][:3]}, "adam_exp_avg_sq has 3"),
    ],
)
def test_a_state_no_run_could_write_is_refused_in_one_line_naming_the_field(tmp_path, field, edit, message):
    opt = run(SequentialOptimizer(2, seed=0, max_evals=20), stop_at=12)
    state = opt.state_dict()
    state["algorithm"][field] = edit(state["algorithm"][field])
    with pytest.raises(ValueError, match=message) as caught:
        SequentialOptimizer.from_state_dict(state)
    assert "\n" not in str(caught.value)


def test_a_budget_below_20_per_coordinate_keeps_the_design_of_20_per_coordinate():
    """Ablation 35: a run given max_evals = 10·dim is the first half of the run given 20·dim, step for step."""
    short = run(SequentialOptimizer(4, seed=2, max_evals=40))
    long = run(SequentialOptimizer(4, seed=2, max_evals=80), stop_at=40)
    assert len(short.design) == len(long.design) == 20
    np.testing.assert_array_equal(short.evaluations.x, long.evaluations.x)


def test_an_ask_runs_blas_and_torch_on_the_optimizers_thread_count_and_restores_the_callers(monkeypatch):
    """The GP is NumPy/SciPy since ablation 37: without a limit its BLAS would take one thread per core (1.2–2.3×
    slower at n ≤ 80 on 2 cores) whatever ``torch_threads`` says."""
    import threadpoolctl  # a core dependency since the BLAS limit

    def blas_counts() -> list[int]:
        return [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]

    seen = []
    next_point = SequentialOptimizer.next_point

    def recording(self, pending):
        seen.append((torch.get_num_threads(), blas_counts()))
        return next_point(self, pending)

    monkeypatch.setattr(SequentialOptimizer, "next_point", recording)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        before = blas_counts()
        run(SequentialOptimizer(2, seed=0, max_evals=14), stop_at=12)
        after = blas_counts()
    assert before and after == before
    assert seen and all(torch_count == 1 and set(blas) == {1} for torch_count, blas in seen)


def test_unknown_or_bad_settings_are_refused_in_one_line():
    with pytest.raises(ValueError, match="unknown setting 'n_start'"):
        SequentialOptimizer(2, config={"n_start": 3})
    with pytest.raises(ValueError, match=r"unknown generator settings \['hiden'\]"):  # not dataclasses' TypeError
        SequentialOptimizer(2, config={"generator": {"hiden": [8]}})
    with pytest.raises(ValueError, match="n_starts must be an integer >= 1"):
        SequentialConfig(n_starts=0)
    with pytest.raises(TypeError, match="SequentialConfig"):
        SequentialOptimizer(2, config=3)


def test_evogm_takes_the_sequential_shape_where_its_rule_says_and_the_repr_says_so():
    def built(dim, **options):
        return type(registry.create("evogm", dim, seed=0, **options))

    assert built(4, max_evals=80) is SequentialOptimizer
    assert built(np.int64(4), max_evals=np.int64(80)) is SequentialOptimizer
    assert built(4, max_evals=80, on_basis_shift=lambda shift: None) is GenerativeOptimizer
    assert built(1, max_evals=20) is SequentialOptimizer
    assert built(4, max_evals=81) is GenerativeOptimizer  # beyond 20·dim: not measured
    assert built(5, max_evals=40) is GenerativeOptimizer
    assert built(4) is GenerativeOptimizer  # no budget to size the design by
    for option in ({"preset": "default"}, {"popsize": 8}, {"config": {"screening": 32}}):
        assert built(4, max_evals=80, **option) is GenerativeOptimizer  # the population shape asked by name
    opt = registry.create("evogm", 4, seed=0, max_evals=80)
    assert shape.RULE in repr(opt) and "strategy=sequential" in repr(opt)
    assert "strategy=population" in repr(registry.create("evogm", 8, seed=0, max_evals=80))
    assert registry.create("evogm-sequential", 12, seed=0).popsize == 1  # by name at any size
    with pytest.raises(ValueError, match="max_evals must be a positive integer"):
        registry.create("evogm", 4, max_evals=0)


def test_the_bench_runs_both_shapes_under_their_names():
    from evogm_bench.peers import get_peer

    assert type(get_peer("evogm").build(4, 0, 80).opt) is SequentialOptimizer
    assert type(get_peer("evogm-population").build(4, 0, 80).opt) is GenerativeOptimizer
    assert type(get_peer("evogm").build(4, 0, 81).opt) is GenerativeOptimizer
