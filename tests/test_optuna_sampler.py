"""GenerativeSampler inside real Optuna studies: in memory, threaded, and several processes on one SQLite study."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.samplers import BaseSampler

from evogm_opt.integrations.optuna import GenerativeSampler
from evogm_opt.integrations.space import Categorical, Integer, Real, SearchSpace

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


def test_categorical_and_conditional_parameters_are_searched_jointly_without_a_warning():
    def nas_like(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -3.0, 3.0)
        kind = trial.suggest_categorical("kind", ["a", "b", "c", None])
        if kind == "a":  # a conditional parameter, only in trials that choose "a"
            x += trial.suggest_int("shift", -2, 2)
        return (x - 1.0) ** 2 + (0.0 if kind == "a" else 1.0)

    sampler = GenerativeSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "sampled independently" warning, no restart warning
        study.optimize(nas_like, n_trials=60)
    assert sampler.search_space == SearchSpace(
        {"kind": Categorical(["a", "b", "c", None]), "shift": Integer(-2, 2), "x": Real(-3.0, 3.0)}
    )
    assert sampler.optimizer.dim == 6
    late = [t.params["kind"] for t in study.trials[-20:]]
    assert late.count("a") >= 12  # learnt, not 1 in 4 as at random
    assert study.best_value < 1.0


def test_startup_trials_reveal_conditional_parameters_so_the_optimizer_starts_on_the_whole_space(caplog):
    def conditional(trial: optuna.Trial) -> float:
        depth = trial.suggest_int("depth", 1, 3)
        widths = [trial.suggest_int(f"width{i}", 8, 64, step=8) for i in range(depth)]
        return abs(sum(widths) - 100) + depth

    sampler = GenerativeSampler(seed=1)
    study = optuna.create_study(sampler=sampler)
    with caplog.at_level(logging.INFO, logger="evogm_opt"):
        study.optimize(conditional, n_trials=30)
    assert all("evogm:row:0" not in t.system_attrs for t in study.trials[:10])  # sampled at random
    assert all("evogm:row:0" in t.system_attrs for t in study.trials[10:])
    assert set(sampler.search_space.params) == {"depth", "width0", "width1", "width2"}
    assert not [r for r in caplog.records if "restarts" in r.getMessage()]  # one optimizer for the whole study
    assert sampler.optimizer.popsize == 8  # min(10, 2 · dim)


def test_a_configuration_already_measured_is_not_run_again_and_only_what_is_evaluated_is_told():
    def small(trial: optuna.Trial) -> float:  # 3 · 3 · 2 = 18 configurations
        a, b = trial.suggest_int("a", 0, 2), trial.suggest_int("b", 0, 2)
        return (a - 1) ** 2 + (b - 2) ** 2 + (trial.suggest_categorical("c", [None, "x"]) is None)

    def distinct(sampler: GenerativeSampler) -> int:
        study = optuna.create_study(sampler=sampler)
        study.optimize(small, n_trials=14)
        return len({tuple(sorted(t.params.items(), key=str)) for t in study.trials})

    sampler = GenerativeSampler(seed=0, n_startup_trials=2)
    plain = GenerativeSampler(seed=0, n_startup_trials=2, skip_duplicates=False)
    assert distinct(sampler) == 14 > distinct(plain)
    assert sampler.duplicates_skipped > 0 and plain.duplicates_skipped == 0
    assert sampler.optimizer.n_evals == 13  # the finished trials, each once: a replaced proposal is not told


def test_rows_kept_in_the_storage_decode_to_the_trials_params():
    sampler = GenerativeSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.optimize(lambda t: objective(t) + (t.suggest_categorical("act", ["relu", "tanh", "gelu"]) == "relu"), 30)
    stored = [t for t in study.trials if "evogm:row:0" in t.system_attrs]
    assert len(stored) == 20  # all but the 10 startup trials, sampled at random
    for t in stored:
        values, _ = sampler.search_space.decode(
            sampler.search_space.encode({}, json.loads(t.system_attrs["evogm:row:0"]))
        )
        assert values == t.params


def test_warnings_say_why_a_parameter_is_sampled_independently_and_point_at_the_users_line():
    def odd(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -3.0, 3.0)
        fixed = trial.suggest_float("fixed", 1.0, 1.0)  # a single value: Optuna sets it, nothing to say
        high = 1.0 if trial.number < 4 else 2.0
        y = trial.suggest_float("y", -1.0, high)  # its range changes: it leaves the joint space
        return x**2 + y**2 + fixed

    sampler = GenerativeSampler(seed=0, n_startup_trials=0)
    study = optuna.create_study(sampler=sampler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        study.optimize(odd, n_trials=9)
    messages = {w.message.args[0].split("'")[1]: w for w in caught if "GenerativeSampler samples" in str(w.message)}
    assert set(messages) == {"y"}
    assert "distribution differs between finished trials" in str(messages["y"].message)
    restarts = [w for w in caught if "joint search space" in str(w.message)]
    assert len(restarts) == 1 and "lost ['y']" in str(restarts[0].message)
    assert all(w.filename == __file__ for w in caught), [(w.filename, str(w.message)) for w in caught]
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


def _told_rows_are_the_trials(sampler: GenerativeSampler, trials: list, in_flight: int) -> None:
    """Each told row is one finished trial's, told once with its value (FAIL/PRUNED as NaN); only trials still
    running at the last ask (at most ``in_flight``) can be missing."""
    told = sampler.optimizer.evaluations
    finished = [t for t in trials if t.state.is_finished()]
    assert len(finished) - in_flight <= len(told) <= len(finished)
    by_row = {}
    for x, y in zip(told.x, told.y):
        assert x.tobytes() not in by_row, "a row told twice"
        by_row[x.tobytes()] = y
    matched = 0
    for t in finished:
        row = sampler.search_space.encode(t.params, json.loads(t.system_attrs.get("evogm:row:0", "null")))
        if row.tobytes() not in by_row:
            continue
        matched += 1
        y = by_row[row.tobytes()]
        assert (t.state == optuna.trial.TrialState.COMPLETE) == np.isfinite(y)
        if np.isfinite(y):
            assert y == t.value
    assert matched == len(told)  # every told row is a trial's


def flaky(trial: optuna.Trial) -> float:
    value = objective(trial)
    if trial.number % 7 == 3:
        raise optuna.TrialPruned()
    if trial.number % 7 == 5:
        raise RuntimeError("a failed evaluation")
    return value


@pytest.mark.parametrize("storage", ["memory", "sqlite"])
def test_threads_share_one_optimizer_and_tell_each_trial_once(storage, tmp_path):
    sampler = GenerativeSampler(seed=0)
    url = None if storage == "memory" else f"sqlite:///{tmp_path / 'threads.db'}"
    study = optuna.create_study(sampler=sampler, storage=url)
    study.optimize(flaky, n_trials=48, n_jobs=4, catch=(RuntimeError,))
    trials = study.get_trials()
    assert len(trials) == 48 and sorted(t.number for t in trials) == list(range(48))
    assert all(t.state.is_finished() for t in trials)
    rows = [t.system_attrs["evogm:row:0"] for t in trials if "evogm:row:0" in t.system_attrs]
    assert len(rows) == len(set(rows)) >= 34  # no row handed out twice (10 startup trials are independent)
    _told_rows_are_the_trials(sampler, trials, in_flight=4)
    failures = sum(t.state != optuna.trial.TrialState.COMPLETE for t in trials)
    assert failures - 4 <= sampler.optimizer.n_failed <= failures


def test_several_processes_share_one_sqlite_study(tmp_path: Path):
    """Two worker processes with the same seed on one SQLite study: no trial lost or repeated, no row handed out
    twice, every finished trial (failed and pruned ones as failures) told once to each process's optimizer."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(study_name="s", storage=url)
    worker = textwrap.dedent(
        f"""
        import json, optuna, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_optuna_sampler import flaky
        from evogm_opt.integrations.optuna import GenerativeSampler
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = GenerativeSampler(seed=0)
        study = optuna.load_study(study_name="s", storage={url!r}, sampler=sampler)
        study.optimize(flaky, n_trials=20, catch=(RuntimeError,))
        told = sampler.optimizer.evaluations
        print(json.dumps({{"told": len(told), "failed": sampler.optimizer.n_failed,
                           "distinct": len({{x.tobytes() for x in told.x}}), "numbers": sorted(sampler._told)}}))
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", worker], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [json.loads(p.communicate(timeout=300)[0].splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    study = optuna.load_study(study_name="s", storage=url)
    trials = study.get_trials()
    assert len(trials) == 40 and sorted(t.number for t in trials) == list(range(40))
    assert all(t.state.is_finished() for t in trials)
    rows = [t.system_attrs["evogm:row:0"] for t in trials if "evogm:row:0" in t.system_attrs]
    assert len(rows) == len(set(rows))  # the same seed, yet no row evaluated twice
    bad = {t.number for t in trials if t.state != optuna.trial.TrialState.COMPLETE}
    for out in outs:
        assert out["told"] == out["distinct"] == len(out["numbers"])  # each trial told once
        assert out["failed"] == len(bad & set(out["numbers"]))  # failed and pruned: failures, once
    assert max(out["told"] for out in outs) > 20  # at least one process learned from trials the other one ran


# ---------------------------------------------------------------------- no configuration asked twice (issue 29)
def _config(trial: optuna.trial.FrozenTrial) -> tuple:
    return tuple(sorted(trial.params.items()))


def _in_batches(sampler: GenerativeSampler, suggest, n_trials: int, batch: int = 8) -> list[tuple]:
    """Trials asked ``batch`` at a time, each batch told only after all of it was asked and suggested."""
    study = optuna.create_study(sampler=sampler)
    while len(study.trials) < n_trials:
        trials = [study.ask() for _ in range(batch)]
        values = [suggest(t) for t in trials]
        for t, v in zip(trials, values):
            study.tell(t, v)
    return [_config(t) for t in study.trials]


def two_ints(trial: optuna.Trial) -> float:  # 10 · 10 = 100 configurations
    x, y = trial.suggest_int("x", 0, 9), trial.suggest_int("y", 0, 9)
    return (x - 3) ** 2 + 0.5 * (y - 7) ** 2 + 3 * math.cos(2 * x) * math.sin(y)


@pytest.mark.parametrize("seed", [0, 1])
def test_two_ints_asked_eight_at_a_time_use_all_100_configurations_before_any_repeat(seed):
    sampler = GenerativeSampler(seed=seed)
    with pytest.warns(UserWarning, match="asked every configuration") as caught:
        configs = _in_batches(sampler, two_ints, 128)
    assert len(set(configs[:100])) == 100  # the whole space, no repeat before it is exhausted
    assert sampler.repeats == 28 and len([w for w in caught if "every configuration" in str(w.message)]) == 1
    # one row of the optimizer per trial sampled by it (the first two batches are random startup trials), and
    # only evaluated rows told: the work per trial does not grow with the repeats it proposes
    assert sampler.optimizer.n_asked == 128 - 16
    assert sampler.optimizer.n_evals == 120  # every trial finished before the last batch, once


def test_a_categorical_times_an_int_uses_every_configuration_before_any_repeat():
    def objective(trial: optuna.Trial) -> float:  # 4 · 25 = 100 configurations, a None and an int among choices
        c = trial.suggest_categorical("c", ["a", None, 3, "d"])
        return (trial.suggest_int("k", 0, 24) - 7) ** 2 / 10 + {"a": 0, None: 1, 3: 2, "d": 3}[c]

    sampler = GenerativeSampler(seed=0)
    with pytest.warns(UserWarning, match="asked every configuration"):
        configs = _in_batches(sampler, objective, 104)
    assert len(set(configs[:100])) == 100 and sampler.duplicates_skipped > 0


def test_a_conditional_space_counts_only_the_parameters_a_trial_used():
    def objective(trial: optuna.Trial) -> float:  # 5 + 10 · 3 = 35 configurations
        if trial.suggest_categorical("kind", ["a", "b"]) == "a":
            return (trial.suggest_int("i", 0, 4) - 2) ** 2
        return (trial.suggest_int("j", 0, 18, step=2) - 10) ** 2 / 5 + trial.suggest_float("s", 0.0, 1.0, step=0.5)

    sampler = GenerativeSampler(seed=0)
    with pytest.warns(UserWarning, match="asked every configuration"):
        configs = _in_batches(sampler, objective, 40)
    assert len(set(configs[:35])) == 35 and sampler.repeats == 5
    assert set(sampler.search_space.params) == {"kind", "i", "j", "s"}  # i and j are both in the joint space


def five_by_five(trial: optuna.Trial) -> float:
    """Two ints of five values each: 25 configurations, the optimum at (1, 3)."""
    return (trial.suggest_int("x", 0, 4) - 1) ** 2 + (trial.suggest_int("y", 0, 4) - 3) ** 2


def test_trials_asked_and_not_told_are_not_asked_again():
    objective = five_by_five
    sampler = GenerativeSampler(seed=2, n_startup_trials=4)
    study = optuna.create_study(sampler=sampler)
    for _ in range(4):
        trial = study.ask()
        study.tell(trial, objective(trial))
    running = [study.ask() for _ in range(21)]  # asked by the optimizer, none told
    for trial in running:
        objective(trial)
    assert sampler.optimizer is not None and sampler.optimizer.n_asked >= 21
    assert len({_config(t) for t in study.trials}) == 25
    with pytest.warns(UserWarning, match="asked every configuration"):
        objective(study.ask())  # the space is exhausted: a repeat, said once


def test_threads_do_not_run_one_configuration_twice():
    sampler = GenerativeSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(two_ints, n_trials=100, n_jobs=4)
    assert len({_config(t) for t in study.trials}) == 100 and sampler.repeats == 0


def test_a_space_with_a_continuous_float_is_never_exhausted():
    def objective(trial: optuna.Trial) -> float:  # kind "a": 2 configurations; kind "b": a float, unbounded
        if trial.suggest_categorical("kind", ["a", "b"]) == "a":
            return float(trial.suggest_int("i", 0, 1))
        return 10.0 + trial.suggest_float("x", 0.0, 1.0)

    sampler = GenerativeSampler(seed=0, n_startup_trials=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "asked every configuration"
        configs = _in_batches(sampler, objective, 40)
    assert len(set(configs)) == 40 and sampler.repeats == 0
    assert sampler.duplicates_skipped > 0  # the optimizer kept proposing the used-up, better branch


def test_a_single_valued_parameter_leaves_the_rule_on_for_the_others():
    def objective(trial: optuna.Trial) -> float:  # c has one value: Optuna keeps it out of the joint space
        trial.suggest_int("c", 1, 1)
        return two_ints(trial)

    sampler = GenerativeSampler(seed=0)
    with pytest.warns(UserWarning, match="asked every configuration"):
        configs = _in_batches(sampler, objective, 104)
    assert len(set(configs[:100])) == 100 and sampler.duplicates_skipped > 0


def test_a_parameter_whose_range_changed_is_outside_the_configuration():
    def objective(trial: optuna.Trial) -> float:  # z's range changes at trial 30: z leaves the joint space
        z = trial.suggest_int("z", 0, 4 if trial.number < 30 else 9)
        return two_ints(trial) + 0.1 * z

    sampler = GenerativeSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the changed range is said once
        study.optimize(objective, n_trials=90)
    assert "z" in sampler._conflicts and set(sampler.search_space.params) == {"x", "y"}
    pairs = [(t.params["x"], t.params["y"]) for t in study.trials]
    earlier, later = pairs[:32], pairs[32:]  # later: sampled in the joint space {x, y}
    assert len(set(later)) == len(later) and not set(later) & set(earlier)


def classifier(trial: optuna.Trial) -> float:  # a branch per classifier, 20 + 20 = 40 configurations
    kind = trial.suggest_categorical("classifier", ["svm", "rf"])
    time.sleep(0.01)  # threads: the others sample while this trial has chosen its branch but not its parameter
    if kind == "svm":
        return (trial.suggest_int("C", 1, 20) - 5) ** 2
    return (trial.suggest_int("depth", 1, 20) - 12) ** 2 + 3


def test_threads_on_a_conditional_space_see_a_running_trial_as_its_configuration_not_its_branch():
    sampler = GenerativeSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "asked every configuration": 30 of 40 are asked
        study.optimize(classifier, n_trials=30, n_jobs=4)
    assert len({_config(t) for t in study.trials}) == 30 and sampler.repeats == 0


def test_once_every_configuration_is_finished_or_running_a_trial_takes_a_running_ones_not_a_finished_ones():
    objective = five_by_five
    sampler = GenerativeSampler(seed=0, n_startup_trials=4)
    study = optuna.create_study(sampler=sampler)
    for _ in range(20):
        trial = study.ask()
        study.tell(trial, objective(trial))
    for trial in [study.ask() for _ in range(5)]:  # the last five, running
        objective(trial)
    finished = {_config(t) for t in study.trials[:20]}
    extra = [study.ask() for _ in range(5)]
    with pytest.warns(UserWarning, match="asked every configuration"):
        for trial in extra:
            objective(trial)
    assert len(finished) == 20 and not {_config(t) for t in extra} & finished and sampler.repeats == 5
