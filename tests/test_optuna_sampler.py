"""GenerativeSampler inside real Optuna studies: in memory, threaded, and several processes on one SQLite study."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.samplers import BaseSampler

from evogm_opt.integrations.optuna import GenerativeSampler, _axis

optuna.logging.set_verbosity(optuna.logging.WARNING)


def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -3.0, 3.0)
    y = trial.suggest_float("y", -3.0, 3.0)
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    layers = trial.suggest_int("layers", 1, 8)
    return (x - 1.0) ** 2 + (y + 0.5) ** 2 + (math.log10(lr) + 2.0) ** 2 + 0.1 * (layers - 5) ** 2


def test_is_a_real_optuna_sampler_and_beats_random_search():
    assert issubclass(GenerativeSampler, BaseSampler)
    ours, rand = [], []
    for seed in range(3):
        study = optuna.create_study(sampler=GenerativeSampler(seed=seed))
        study.optimize(objective, n_trials=60)
        ours.append(study.best_value)
        baseline = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        baseline.optimize(objective, n_trials=60)
        rand.append(baseline.best_value)
    assert np.median(ours) < np.median(rand)


def test_seed_makes_studies_reproducible_and_params_respect_types_and_bounds():
    def run() -> list[dict]:
        study = optuna.create_study(sampler=GenerativeSampler(seed=3))
        study.optimize(objective, n_trials=25)
        return [t.params for t in study.trials]

    first, second = run(), run()
    assert first == second
    for params in first:
        assert isinstance(params["layers"], int) and 1 <= params["layers"] <= 8
        assert 1e-4 <= params["lr"] <= 1e-1 and -3 <= params["x"] <= 3


def test_direction_maximize_is_honoured():
    study = optuna.create_study(direction="maximize", sampler=GenerativeSampler(seed=0))
    study.optimize(lambda t: -objective(t), n_trials=50)
    assert study.sampler.optimizer.maximize
    assert study.best_value > -1.0


def test_failed_and_pruned_trials_are_told_as_failures():
    def sometimes_fails(trial: optuna.Trial) -> float:
        value = objective(trial)
        if trial.number % 5 == 1:
            raise optuna.TrialPruned()
        if trial.number % 5 == 2:
            return float("nan")
        return value

    sampler = GenerativeSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.optimize(sometimes_fails, n_trials=30, catch=(ValueError,))
    assert sampler.optimizer.n_failed >= 10
    assert sampler.optimizer.n_evals == 29  # all finished trials but the one running the last sample


def test_categorical_falls_back_to_the_independent_sampler_with_one_warning():
    def with_choice(trial: optuna.Trial) -> float:
        kind = trial.suggest_categorical("kind", ["a", "b"])
        return objective(trial) + (0.0 if kind == "a" else 1.0)

    study = optuna.create_study(sampler=GenerativeSampler(seed=0))
    with pytest.warns(UserWarning, match="'kind'") as record:
        study.optimize(with_choice, n_trials=12)
    assert sum("'kind'" in str(w.message) for w in record) == 1
    assert study.sampler.optimizer.dim == 4


def test_warnings_say_why_a_parameter_is_sampled_independently_and_point_at_the_users_line():
    def conditional(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -3.0, 3.0)
        if trial.number % 3 == 1:
            x += trial.suggest_float("shift", -1.0, 1.0)  # only in some trials
        kind = trial.suggest_categorical("kind", ["a", "b"])
        return x**2 + (kind == "b")

    study = optuna.create_study(sampler=GenerativeSampler(seed=0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        study.optimize(conditional, n_trials=10)
    messages = {w.message.args[0].split("'")[1]: w for w in caught if "GenerativeSampler samples" in str(w.message)}
    assert set(messages) == {"shift", "kind"}
    shift = str(messages["shift"].message)
    assert "conditional" in shift and "in 0 of 1 finished trials" in shift and "only float and int" not in shift
    assert "only float and int parameters" in str(messages["kind"].message)
    assert all(w.filename == __file__ for w in caught), [(w.filename, str(w.message)) for w in caught]


def test_a_shrinking_search_space_says_the_optimizer_restarts_and_keeps_the_data():
    def loses_y(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -3.0, 3.0)
        y = trial.suggest_float("y", -3.0, 3.0) if trial.number < 6 else 0.0
        return x**2 + y**2

    sampler = GenerativeSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        study.optimize(loses_y, n_trials=9)
    restarts = [w for w in caught if "joint search space" in str(w.message)]
    assert len(restarts) == 1 and restarts[0].filename == __file__
    assert "lost ['y']" in str(restarts[0].message) and "restarts on ['x'] after" in str(restarts[0].message)
    assert sampler.optimizer.dim == 1
    assert sampler.optimizer.n_evals == 8  # every finished trial re-told on x, not only those since the change


def test_failed_and_pruned_tells_are_not_repeated_at_warning(caplog):
    def prunes(trial: optuna.Trial) -> float:
        value = objective(trial)
        if trial.number % 3 == 1:
            raise optuna.TrialPruned()  # Optuna reports it; the sampler must not report it again
        return value

    study = optuna.create_study(sampler=GenerativeSampler(seed=0))
    with caplog.at_level(logging.DEBUG, logger="evogm_opt"):
        study.optimize(prunes, n_trials=15)
    ours = [r for r in caplog.records if r.name.startswith("evogm_opt")]
    assert not [r for r in ours if r.levelno >= logging.WARNING]
    assert any("failed" in r.getMessage() and r.levelno == logging.DEBUG for r in ours)
    assert study.sampler.optimizer.n_failed >= 4


def test_threads_share_one_optimizer():
    sampler = GenerativeSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=40, n_jobs=2)
    assert len(study.trials) == 40
    assert sampler.optimizer.n_evals >= 38


def test_axis_round_trips_and_rounds_ints_and_steps():
    log_axis = _axis(optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True))
    assert log_axis.from_unit(log_axis.to_unit(3e-3)) == pytest.approx(3e-3)
    assert log_axis.from_unit(0.0) == pytest.approx(10**-2.5)
    step_axis = _axis(optuna.distributions.FloatDistribution(0.0, 1.0, step=0.25))
    assert step_axis.from_unit(0.05) == 0.5
    int_axis = _axis(optuna.distributions.IntDistribution(2, 10, step=2))
    assert int_axis.from_unit(-1.0) == 2 and int_axis.from_unit(0.1) in (6, 8)


def test_several_processes_share_one_sqlite_study(tmp_path: Path):
    """Two worker processes on one SQLite study: each feeds its optimizer from the storage's finished trials."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(study_name="s", storage=url)
    worker = textwrap.dedent(
        f"""
        import optuna, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_optuna_sampler import objective
        from evogm_opt.integrations.optuna import GenerativeSampler
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = GenerativeSampler(seed=int(sys.argv[1]))
        study = optuna.load_study(study_name="s", storage={url!r}, sampler=sampler)
        study.optimize(objective, n_trials=20)
        print("told", sampler.optimizer.n_evals)
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", worker, str(i)], stdout=subprocess.PIPE, text=True) for i in (1, 2)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    study = optuna.load_study(study_name="s", storage=url)
    assert len(study.trials) == 40
    told = [int(out.split()[-1]) for out in outs]
    assert max(told) > 20  # at least one process learned from trials the other one ran
