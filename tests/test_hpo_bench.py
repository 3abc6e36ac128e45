"""The offline HPO/NAS tuning benchmark (evogm_bench.hpo, ``evogm-opt bench hpo``): its spaces, its honest cache,
its one command."""

from __future__ import annotations

import json

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")
pytest.importorskip("sklearn", reason="the tuning benchmark needs scikit-learn (the `hpo` extra)")
from evogm_bench import cli  # noqa: E402
from evogm_bench.hpo import report, run  # noqa: E402
from evogm_bench.hpo.spaces import SPACES, hgb_space, mlp_space, rf_space, svm_space, unexplained_variance  # noqa: E402
from evogm_bench.report import CellResults  # noqa: E402
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)


def distributions(space, n: int = 60) -> dict:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: (space(t), 0.0)[1], n_trials=n)
    seen: dict = {}
    for t in study.trials:
        seen.update(t.distributions)
    return seen, study.trials


def test_the_hpo_space_has_log_floats_a_conditional_int_and_non_string_categoricals():
    seen, trials = distributions(svm_space)
    assert seen["C"] == FloatDistribution(1e-2, 1e3, log=True) and seen["gamma"].log
    assert isinstance(seen["degree"], IntDistribution)
    assert seen["kernel"] == CategoricalDistribution(["rbf", "poly", "sigmoid", "linear"])
    assert None in seen["class_weight"].choices
    assert all(("degree" in t.params) == (t.params["kernel"] == "poly") for t in trials)  # conditional


def test_the_nas_space_has_depth_per_layer_widths_activation_and_solver():
    seen, trials = distributions(mlp_space)
    assert seen["depth"] == IntDistribution(1, 3)
    assert seen["width3"] == IntDistribution(16, 128, step=16)
    assert set(seen["activation"].choices) == {"identity", "logistic", "tanh", "relu"}
    assert set(seen["solver"].choices) == {"lbfgs", "sgd", "adam"}
    assert all(("width3" in t.params) == (t.params["depth"] == 3) for t in trials)
    assert all(("learning_rate_init" in t.params) == (t.params["solver"] != "lbfgs") for t in trials)


def test_the_held_out_space_is_boosted_trees_with_log_stepped_and_conditional_parameters():
    seen, trials = distributions(hgb_space)
    assert seen["learning_rate"] == FloatDistribution(1e-3, 0.5, log=True)
    assert seen["max_leaf_nodes"] == IntDistribution(4, 64, log=True)
    assert seen["min_samples_leaf"] == IntDistribution(1, 50, log=True)
    assert seen["max_features"] == FloatDistribution(0.3, 1.0, step=0.1)
    assert set(seen["loss"].choices) == {"squared_error", "absolute_error", "poisson"}
    assert all(("max_leaf_nodes" in t.params) == (t.params["tree_limit"] == "leaves") for t in trials)
    assert all(("max_depth" in t.params) == (t.params["tree_limit"] == "depth") for t in trials)
    space = SPACES["hgb"]
    assert space.dataset == "diabetes" and "R²" in space.error_name
    assert "hgb" not in cli.build_hpo_parser().parse_args(["--out", "x"]).spaces  # held out: run only when named


def test_the_second_held_out_space_is_a_random_forest_on_a_binary_task():
    seen, trials = distributions(rf_space)
    assert seen["min_samples_split"] == IntDistribution(2, 32, log=True)
    assert set(seen["class_weight"].choices) == {None, "balanced", "balanced_subsample"}
    assert all(("max_depth" in t.params) == t.params["depth_limit"] for t in trials)
    assert all(("max_samples" in t.params) == t.params["bootstrap"] for t in trials)
    space = SPACES["rf"]
    assert space.dataset == "breast_cancer"
    assert "rf" not in cli.build_hpo_parser().parse_args(["--out", "x"]).spaces  # held out: run only when named
    data = run.load_data(0, dataset="breast_cancer")
    assert set(np.unique(data.y_train)) == {0, 1} and len(data.y_train) + len(data.y_test) == 569
    params = dict(trials[0].params)
    error = run.cv_error(space, params, data, seed=0)
    assert 0.0 <= error < 0.2 and run.cv_error(space, params, data, seed=0) == error  # deterministic, and learns


def test_a_regressions_error_is_one_minus_r2():
    y = np.array([1.0, 2.0, 4.0, 9.0])
    assert unexplained_variance(y, y) == 0.0
    assert unexplained_variance(y, np.full(4, y.mean())) == pytest.approx(1.0)
    assert unexplained_variance(y, y + 1.0) == pytest.approx(4 / np.sum((y - y.mean()) ** 2))


def test_the_regression_data_are_split_without_strata_and_scored_by_its_error():
    data = run.load_data(0, dataset="diabetes")
    assert len(data.y_train) + len(data.y_test) == 442 and len(data.folds) == 3
    assert len(np.unique(data.y_train)) > 50  # a continuous target, not labels
    params = {
        "learning_rate": 0.1,
        "loss": "squared_error",
        "tree_limit": "depth",
        "max_depth": 2,
        "min_samples_leaf": 10,
        "l2_regularization": 1.0,
        "max_features": 0.5,
    }
    error = run.cv_error(SPACES["hgb"], params, data, seed=0)
    assert run.cv_error(SPACES["hgb"], params, data, seed=0) == error  # deterministic: the cache stays exact
    assert 0.2 < error < 1.0  # 1 − R² of a sensible model: better than the mean, far from perfect


def test_data_ship_with_scikit_learn_and_the_split_is_the_seeds():
    a, b, again = run.load_data(0), run.load_data(1), run.load_data(0)
    assert len(a.y_train) + len(a.y_test) == 1797 and abs(len(a.y_train) - len(a.y_test)) <= 1
    assert np.array_equal(a.x_train, again.x_train) and not np.array_equal(a.x_train, b.x_train)
    assert len(a.folds) == 3


def test_a_configurations_cv_error_is_deterministic_so_the_cache_is_exact():
    data = run.load_data(0, max_rows=300)
    params = {
        "depth": 2,
        "width1": 32,
        "width2": 16,
        "activation": "relu",
        "solver": "adam",
        "learning_rate_init": 0.01,
    }
    first = run.cv_error(SPACES["mlp"], params, data, seed=0)
    assert run.cv_error(SPACES["mlp"], params, data, seed=0) == first
    assert 0.0 <= first <= 1.0


def test_recommendation_is_the_best_cv_trial_so_far_earliest_on_ties():
    record = {"trials": [{"params": {"x": i}, "cv_error": e} for i, e in enumerate([0.5, 0.2, 0.3, 0.2, 0.1])]}
    assert run.recommended(record, 4) == ({"x": 1}, 0.2)
    assert run.recommended(record, 5) == ({"x": 4}, 0.1)


def test_one_command_runs_every_sampler_reuses_the_cache_and_reports(tmp_path, capsys):
    pytest.importorskip("cmaes", reason="Optuna's CmaEsSampler needs cmaes (the `hpo` extra)")
    argv = ["hpo", "--out", str(tmp_path), "--spaces", "svm", "--seeds", "1", "--trials", "6", "--budgets", "3", "6"]
    argv += ["--workers", "1", "--max-rows", "400"]
    assert cli.main(argv) == 0
    saved = json.loads((tmp_path / "svm-seed0.json").read_text())
    # the default samplers: every registered one but the research samplers, which run only when named
    research = {"evogm-seq", "evogm-seq-fast", "evogm-seq-mixed", "evogm-seq-cond"}
    assert research <= set(run.SAMPLERS) and set(saved["records"]) == set(run.SAMPLERS) - research
    for record in saved["records"].values():
        assert len(record["trials"]) == 6 and set(record["test_error"]) == {"3", "6"}
        for trial in record["trials"]:  # every value is the cached evaluation of that configuration
            params = SPACES["svm"].canonical(trial["params"])
            assert saved["cv_cache"][run.config_key(params)] == trial["cv_error"]
    assert sum(r["new_evaluations"] for r in saved["records"].values()) == len(saved["cv_cache"])
    report = (tmp_path / "report.md").read_text()
    assert "GenerativeSampler" in report and "| svm | 6 |" in report and "Holm" in report
    assert (tmp_path / "hpo-convergence.png").stat().st_size > 0 and (tmp_path / "hpo-test-error.png").exists()
    # a rerun of one sampler evaluates only configurations not in the cache
    assert cli.main([*argv, "--samplers", "random", "--rerun", "random"]) == 0
    again = json.loads((tmp_path / "svm-seed0.json").read_text())
    assert again["records"]["random"]["trials"] == saved["records"]["random"]["trials"]
    assert again["records"]["random"]["new_evaluations"] == 0


def test_the_held_out_space_runs_through_the_command_and_the_report_names_its_error(tmp_path):
    argv = ["hpo", "--out", str(tmp_path), "--spaces", "hgb", "--seeds", "1", "--trials", "5", "--budgets", "5"]
    assert cli.main([*argv, "--workers", "1", "--samplers", "evogm", "random"]) == 0
    saved = json.loads((tmp_path / "hgb-seed0.json").read_text())
    for record in saved["records"].values():
        assert len(record["trials"]) == 5 and 0.0 < record["test_error"]["5"] < 1.5
    report = (tmp_path / "report.md").read_text()
    assert "| hgb | 5 |" in report and "hgb: 1 − R² (unexplained variance)" in report


def test_goal_lines_say_where_the_default_sampler_wins_and_loses():
    cell = CellResults("min")
    for sampler, error in {"evogm": 0.02, "tpe": 0.03, "gp": 0.015, "random": 0.01}.items():
        for seed in (0, 1):
            cell.add(sampler, seed, error, 0.0)
    table = {("mlp", 60): cell}
    lines = report.goal(table, report.comparisons(table))
    assert len(lines) == 1
    assert "✓ median below tpe" in lines[0] and "✗ median below random" in lines[0]
    assert "✗ median below gp" in lines[0]  # GPSampler is part of the goal (issue 29)
    assert report.goal({("mlp", 60): CellResults("min")}, {}) == []  # no peer recorded: no goal line, no error


def test_bad_arguments_are_refused_in_one_line(tmp_path, capsys):
    assert cli.main(["hpo", "--out", str(tmp_path), "--samplers", "nope"]) == 2
    names = "evogm, evogm-seq, evogm-seq-fast, evogm-seq-mixed, evogm-seq-cond, tpe, gp, cmaes, random"
    assert f"unknown sampler 'nope'; available: {names}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["hpo", "--out", str(tmp_path), "--trials", "0"])


def test_research_settings_are_the_default_with_those_settings_and_a_removed_one_is_refused(
    tmp_path, capsys, monkeypatch
):
    import dataclasses

    from evogm_opt import PRESETS

    factory = run._evogm_factory({"n_rounds": 1, "generator": {"hidden": [16]}}, None)
    default = PRESETS["default"]
    expected = dataclasses.replace(default, n_rounds=1, generator=dataclasses.replace(default.generator, hidden=(16,)))
    assert factory(3, 0, False).config == expected
    monkeypatch.setenv("EVOGM_HPO_KWARGS", json.dumps({"config": {"use_generator": True}}))
    assert cli.main(["hpo", "--out", str(tmp_path / "h"), "--seeds", "1", "--trials", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "EvoGM setting use_generator was removed" in err and "a95bed8" in err
    assert not (tmp_path / "h").exists()
