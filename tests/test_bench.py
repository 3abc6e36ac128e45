"""The synthetic bench: landscapes behave as documented and ``evogm-opt bench`` runs, resumes and reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from evogm_bench.landscapes import MergeLikeLandscape, make_landscape
from evogm_bench.runner import RunSpec, finished_keys, run_one


@pytest.mark.parametrize("base", ["ellipsoid", "rastrigin"])
def test_landscape_optimum_is_away_from_centre_and_one_hots_and_is_the_true_maximum(base):
    for dim, instance in [(2, 3), (8, 3), (4, 0), (16, 5)]:
        ls = MergeLikeLandscape(base=base, dim=dim, instance=instance)
        corners = np.concatenate([np.zeros((1, dim)), np.eye(dim)])
        assert np.min(np.max(np.abs(corners - ls.x_opt), axis=1)) >= 0.25
        p_opt = ls.true_value(ls.x_opt)[0]
        assert p_opt == pytest.approx(ls.a_hi)
        others = np.random.default_rng(0).uniform(-1, 1, (500, dim))
        assert np.all(ls.true_value(others) < p_opt)
        assert np.all(ls.true_value(corners) <= p_opt - 0.05)


def test_fixed_validation_set_is_deterministic_and_quantised():
    ls = make_landscape("ellipsoid-F200", 4)
    x = np.random.default_rng(1).uniform(-1, 1, (50, 4))
    a = ls.observe(x, np.random.default_rng(0))
    b = ls.observe(x, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a * 200, np.round(a * 200), atol=1e-9)
    assert not np.array_equal(ls.test_value(x), a)  # an independent held-out set


def test_binomial_observation_is_noisy_and_unbiased():
    ls = make_landscape("rastrigin-R500", 3)
    x = np.tile(ls.x_opt * 0.5, (4000, 1))
    obs = ls.observe(x, np.random.default_rng(2))
    p = ls.true_value(x[:1])[0]
    assert obs.std() > 0 and abs(obs.mean() - p) < 0.003


def test_bad_landscape_names_are_refused():
    with pytest.raises(ValueError, match="bad landscape name"):
        make_landscape("sphere", 3)


def test_run_one_scores_the_recommendation_on_the_true_accuracy():
    record = run_one(RunSpec("cmaes", "ellipsoid-F200", 3, 30, 0))
    final = record["final"]
    assert record["trace"][-1]["evals"] == 30
    assert 0 < final["true_of_best"] <= record["optimum_true_value"]
    assert final["best_seen"] >= 0


def test_cli_bench_runs_resumes_and_prints_the_table(tmp_path: Path):
    out = tmp_path / "b.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "evogm_opt.cli",
        "bench",
        "--optimizers",
        "cmaes",
        "random",
        "evogm-paper",
        "--landscapes",
        "ellipsoid-F200",
        "--dims",
        "3",
        "--budgets",
        "5",
        "--seeds",
        "2",
        "--workers",
        "2",
        "--out",
        str(out),
        "--quiet",
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "| landscape | N | budget | cmaes | random | evogm-paper |" in first.stdout
    assert "| ellipsoid-F200 | 3 | 15 |" in first.stdout
    assert len(finished_keys(out)) == 6
    lines_before = out.read_text().splitlines()
    second = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert out.read_text().splitlines() == lines_before  # nothing re-run
    assert "6 runs" in second.stdout
    assert all(json.loads(line)["budget"] == 15 for line in lines_before)


def test_cli_refuses_unknown_optimizer(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "evogm_opt.cli", "bench", "--optimizers", "nope", "--out", str(tmp_path / "x.jsonl")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "unknown optimizers" in result.stderr
