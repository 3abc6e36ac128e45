"""Research round three's sequential variant (evogm_bench.research.sequential) and its GP (ard_gp): LogEI stays
finite and exact, the GP fits what it is given, the acquisition's maximum is at least its best start, and the
variant asks its design first, one point at a time, never an evaluated point twice."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from evogm_bench.peers import PEERS
from evogm_bench.research import variants
from evogm_bench.research.ard_gp import ARDGaussianProcess, log_h, matern52, maximise_log_ei
from evogm_bench.research.sequential import SequentialConfig, SequentialEvoGM
from scipy import stats

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


def run(opt: SequentialEvoGM, f=sphere) -> SequentialEvoGM:
    while not opt.stop():
        x = opt.ask()
        opt.tell(x, [f(row) for row in x])
    return opt


def test_the_design_comes_first_then_model_based_asks_without_repeats():
    opt = run(SequentialEvoGM(3, seed=0, max_evals=24))
    x = opt.evaluations.x
    np.testing.assert_array_equal(x[:3], np.eye(3))
    np.testing.assert_allclose(x[3], np.full(3, 1 / 3))
    assert len(x) == 24 and len(np.unique(np.round(x, 12), axis=0)) == 24
    assert opt.best.y < min(sphere(r) for r in x[:6])  # the model-based asks improved on the design


def test_asking_several_at_once_gives_distinct_points_and_the_same_seed_the_same_run():
    opt = SequentialEvoGM(2, seed=3, max_evals=30, config=SequentialConfig(init_fraction=0.0))
    first = opt.ask(4)
    opt.tell(first, [sphere(r) for r in first])
    batch = opt.ask(3)  # kriging believer: each point is chosen with the earlier ones fantasised
    assert len(np.unique(np.round(batch, 12), axis=0)) == 3
    a = run(SequentialEvoGM(2, seed=5, max_evals=16)).evaluations.x
    b = run(SequentialEvoGM(2, seed=5, max_evals=16)).evaluations.x
    np.testing.assert_array_equal(a, b)


def test_the_variants_are_bench_peers_and_differ_only_where_they_say():
    for name in variants.SEQUENTIAL:
        assert name in set(PEERS)
    with_gen = run(SequentialEvoGM(2, seed=0, max_evals=20, config=variants.SEQUENTIAL["evogm-seq"][0]))
    nogen = run(SequentialEvoGM(2, seed=0, max_evals=20, config=variants.SEQUENTIAL["evogm-seq-nogen"][0]))
    design = len(with_gen.design)
    np.testing.assert_array_equal(with_gen.evaluations.x[:design], nogen.evaluations.x[:design])
    # the generator is trained and its proposals change where the model-based asks go
    assert with_gen.generators is not None and nogen.generators is None
    assert not np.array_equal(with_gen.evaluations.x[design:], nogen.evaluations.x[design:])


def test_a_batch_told_in_parts_does_not_re_ask_design_rows_and_replaced_asks_are_not_fantasised():
    opt = SequentialEvoGM(3, seed=1, max_evals=40, config=SequentialConfig(initial_points=6))
    first = opt.ask(4)
    opt.tell(first[:2], [sphere(r) for r in first[:2]])
    second = opt.ask(2)  # the design's rows 4 and 5, not rows 2 and 3 again
    np.testing.assert_array_equal(np.concatenate([first, second]), opt.box.to_user(opt.design))
    opt.tell(np.concatenate([first[2:], second]), [sphere(r) for r in np.concatenate([first[2:], second])])
    asked = opt.ask(1)
    replaced = np.clip(asked + 0.01, -1, 1)  # a caller evaluates another row than the one asked
    opt.tell(replaced, [sphere(replaced[0])])
    assert opt.n_pending == 1 and opt.fantasies == []  # pending in the core, not a fantasy of the next ask


def test_the_research_variant_refuses_to_write_a_checkpoint(tmp_path):
    opt = SequentialEvoGM(2, seed=0, max_evals=10)
    with pytest.raises(NotImplementedError, match="without exact resume"):
        opt.save(tmp_path / "c.npz")
