"""Ablation 29's cheaper fit and ablation 30's mixed-space sequential variant (evogm_bench.research.mixed): a
categorical's coordinates share one length scale, told rows enter the surrogate canonical, the climb keeps the
categoricals fixed, and a GenerativeSampler over the variant tunes a mixed Optuna space without repeats."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from evogm_bench.hpo.run import SAMPLERS
from evogm_bench.research.mixed import MixedSpaceSequential, sampler_factory
from evogm_bench.research.sequential import SequentialEvoGM, variant
from evogm_bench.research.variants import FAST, SEQUENTIAL

from evogm_opt.evogm import ard_gp
from evogm_opt.evogm.ard_gp import ARDGaussianProcess, maximise_log_ei
from evogm_opt.integrations.space import Categorical, Integer, Real, SearchSpace
from tests.conftest import sphere

SPACE = SearchSpace(
    {
        "lr": Real(1e-4, 1e-1, log=True),
        "kernel": Categorical(["rbf", "poly", "linear"]),
        "depth": Integer(1, 6),
        "balanced": Categorical([False, True]),
    }
)


def test_tied_coordinates_share_one_length_scale_and_the_priors_count_variables():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (20, 4))
    y = x[:, 0] ** 2 + rng.normal(0, 0.01, 20)
    gp = ARDGaussianProcess(x, y, scale_of=np.array([0, 1, 1, 2]))
    assert gp.n_scales == 3 and len(gp.log_params) == 3 + 2
    ls = gp.length_scales.numpy()
    assert ls[1] == ls[2] and ls[0] != ls[1]
    with pytest.raises(ValueError, match="scale_of"):
        ARDGaussianProcess(x, y, scale_of=np.array([0, 2, 2, 3]))  # scale 1 unused


def test_a_warm_fit_without_the_mode_start_runs_one_climb_and_reaches_the_same_posterior(monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (30, 3))
    y = np.sin(2 * x[:, 0]) + x[:, 1]
    first = ARDGaussianProcess(x[:25], y[:25])
    calls: list[np.ndarray] = []
    minimize = ard_gp.optimize.minimize

    def counted(fun, x0, **kwargs):  # the real L-BFGS-B, its starts recorded
        calls.append(np.array(x0))
        return minimize(fun, x0, **kwargs)

    monkeypatch.setattr(ard_gp.optimize, "minimize", counted)
    both = ARDGaussianProcess(x, y, warm=first.log_params)
    assert len(calls) == 2  # the previous fit's values, then the prior's mode
    calls.clear()
    warm_only = ARDGaussianProcess(x, y, warm=first.log_params, mode_start=False)
    assert len(calls) == 1 and np.array_equal(calls[0], first.log_params)
    calls.clear()
    ARDGaussianProcess(x, y, mode_start=False)  # no previous fit: the mode is the only start
    assert len(calls) == 1 and not np.array_equal(calls[0], first.log_params)
    test = rng.uniform(-1, 1, (40, 3))
    np.testing.assert_allclose(warm_only.mean(test), both.mean(test), atol=0.05)


def test_fixed_coordinates_stay_where_each_start_put_them():
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (15, 3))
    gp = ARDGaussianProcess(x, np.array([sphere(r - 0.2) for r in x]))
    pool = rng.uniform(-1, 1, (50, 3))
    point, _ = maximise_log_ei(gp, pool, n_starts=4, fixed=np.array([False, True, False]))
    assert np.min(np.abs(pool[:, 1] - point[1])) < 1e-12  # coordinate 1 is one of the pool's own values
    # one mask per start, from a function of the starts: here every start keeps coordinate 2 and the starts with
    # a positive first coordinate keep it too
    point, _ = maximise_log_ei(
        gp,
        pool,
        n_starts=4,
        fixed=lambda starts: np.stack(
            [starts[:, 0] > 0, np.zeros(len(starts), bool), np.ones(len(starts), bool)], axis=1
        ),
    )
    assert np.min(np.abs(pool[:, 2] - point[2])) < 1e-12
    if point[0] > 0:
        assert np.min(np.abs(pool[:, 0] - point[0])) < 1e-12


def test_canonical_rows_and_category_moves():
    opt = MixedSpaceSequential(SPACE, seed=0)
    s = SPACE.slices["kernel"]
    row = np.zeros(SPACE.dim)
    row[s] = [0.1, 0.7, -0.3]
    row[SPACE.slices["balanced"]] = 0.2
    canon = opt.canonical(row[None])[0]
    np.testing.assert_array_equal(canon[s], [-0.5, 0.5, -0.5])
    assert canon[SPACE.slices["balanced"]][0] == 0.5
    assert canon[SPACE.slices["lr"]][0] == row[SPACE.slices["lr"]][0]  # numeric coordinates untouched
    moves = opt.moves(canon[None])
    assert len(moves) == 2 + 1  # the kernel's two other choices, the flag's other value
    decoded = [SPACE.decode(m)[0] for m in moves]
    assert sorted(d["kernel"] for d in decoded) == ["linear", "poly", "rbf"]  # the flag move keeps poly
    # the GP sees the kernel as one variable: its three coordinates share a scale
    assert len(set(opt.scale_of[s])) == 1 and opt.scale_of.max() + 1 == 4


def test_told_rows_enter_canonical_and_the_asks_never_repeat_a_told_row():
    opt = MixedSpaceSequential(SPACE, seed=3, max_evals=30, config=variant(init_fraction=0.3, informed_start=False))

    def f(row: np.ndarray) -> float:
        values, _ = SPACE.decode(row)
        return (np.log10(values["lr"]) + 2.5) ** 2 + (values["kernel"] != "poly") + 0.1 * values["depth"]

    while not opt.stop():
        x = opt.ask()
        opt.tell(x, [f(r) for r in x])
    told = opt.told_u[:, SPACE.slices["kernel"]]
    assert set(map(tuple, told)) <= {(0.5, -0.5, -0.5), (-0.5, 0.5, -0.5), (-0.5, -0.5, 0.5)}
    assert len(np.unique(np.round(opt.evaluations.x, 12), axis=0)) == 30
    assert SPACE.decode(opt.told_u[int(np.argmin(opt.told_y))])[0]["kernel"] == "poly"


def test_a_generative_sampler_over_the_variant_tunes_a_conditional_optuna_space_without_repeats():
    def objective(trial: optuna.Trial) -> float:
        kernel = trial.suggest_categorical("kernel", ["rbf", "poly", "linear", "sigmoid"])
        c = trial.suggest_float("C", 1e-2, 1e2, log=True)
        degree = trial.suggest_int("degree", 2, 5) if kernel == "poly" else 3
        return (np.log10(c) - 1) ** 2 + (0 if kernel == "poly" else 1) + 0.1 * abs(degree - 3)

    sampler = sampler_factory(variant(initial_points=0, informed_start=False, **FAST))(seed=0)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=30)
    assert isinstance(sampler.optimizer, MixedSpaceSequential)
    # the model-based trials (after the 10 random startup trials) go to the only kernel without a penalty: random
    # search puts a quarter there; the surrogate, which sees the kernel as one variable, more than half
    later = [t.params["kernel"] for t in study.trials[10:]]
    assert later.count("poly") > len(later) / 2
    told = sampler.optimizer.told_u[:, sampler.search_space.slices["kernel"]]
    assert np.all(np.sort(told, axis=1) == [-0.5, -0.5, -0.5, 0.5])  # told canonical: one-hots of the choice


def test_the_fast_and_mixed_variants_are_registered_where_they_are_measured():
    assert SEQUENTIAL["evogm-seq-fast"][0] == variant(**FAST)
    assert {"evogm-seq-fast", "evogm-seq-mixed"} <= set(SAMPLERS)
    fast = SequentialEvoGM(2, seed=0, max_evals=10, config=SEQUENTIAL["evogm-seq-fast"][0])
    assert "fit_from_mode=False" in repr(fast)


def test_the_conditional_variant_tells_and_climbs_unused_parameters_at_zero():
    def objective(trial: optuna.Trial) -> float:
        kernel = trial.suggest_categorical("kernel", ["rbf", "poly", "linear"])
        c = trial.suggest_float("C", 1e-2, 1e2, log=True)
        value = (np.log10(c) - 1) ** 2
        if kernel != "linear":  # gamma exists only for the kernels that use it
            value += (np.log10(trial.suggest_float("gamma", 1e-4, 1.0, log=True)) + 2) ** 2
        return value + (kernel == "rbf") * 0.5

    sampler = sampler_factory(variant(initial_points=0, informed_start=False, **FAST), conditional=True)(seed=1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=25)
    opt, space = sampler.optimizer, sampler.search_space
    assert opt.active is not None
    kernels = [space.decode(row)[0]["kernel"] for row in opt.told_u]
    gamma = opt.told_u[:, space.slices["gamma"]][:, 0]
    linear = np.array([k == "linear" for k in kernels])
    assert linear.any() and (~linear).any()
    assert np.all(gamma[linear] == 0.0) and np.all(gamma[~linear] != 0.0)  # told at 0 only where unused
    # the climb keeps an unused coordinate where its start put it (0): starts for a linear SVM end with gamma 0
    starts = opt.neutral(np.array([opt.told_u[np.flatnonzero(linear)[0]]]))
    assert opt.unused(starts)[0, space.slices["gamma"]].all()
    plain = sampler_factory(variant(initial_points=0, informed_start=False, **FAST))(seed=1)
    assert not hasattr(plain, "used_by")  # the plain mixed sampler learns no branches


def test_the_mixed_space_variant_refuses_to_write_a_checkpoint_it_could_not_load(tmp_path):
    opt = MixedSpaceSequential(SPACE, seed=0, config=variant(initial_points=4, informed_start=False, **FAST))
    with pytest.raises(NotImplementedError, match="without exact resume"):
        opt.save(tmp_path / "c.npz")
    assert not (tmp_path / "c.npz").exists()
