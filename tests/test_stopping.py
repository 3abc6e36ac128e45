"""Stopping rules: each reason fires when it should, not before, and is named in words."""

from __future__ import annotations

import numpy as np
import pytest

from evogm_opt import minimize
from evogm_opt.stopping import StoppingMonitor, StoppingRules


def test_stagnation_counts_generations_without_an_improvement_larger_than_the_threshold():
    monitor = StoppingMonitor(StoppingRules(patience=3, min_improvement=0.1), maximize=True)
    assert monitor.update(None, 4, 1.0) is None  # nothing finite yet: stale 1
    assert monitor.update(0.50, 8, 1.0) is None  # first finite best: reference set
    assert monitor.update(0.55, 12, 1.0) is None  # +0.05 is not > 0.1: stale 1
    assert monitor.update(0.58, 16, 1.0) is None  # stale 2 (0.08 over the reference 0.50)
    assert monitor.update(0.61, 20, 1.0) is None  # +0.11 over 0.50 counts: reset
    assert monitor.update(0.61, 24, 1.0) is None
    assert monitor.update(0.62, 28, 1.0) is None
    reason = monitor.update(0.70, 32, 1.0)  # +0.09: third stale generation
    assert reason == "no improvement larger than 0.1 for 3 generations (patience 3)"


def test_minimising_direction_and_budgets():
    monitor = StoppingMonitor(StoppingRules(max_evals=10, max_seconds=5.0, patience=2))
    assert monitor.update(3.0, 4, 0.1) is None
    assert monitor.update(2.0, 8, 0.2) is None  # lower is better: improvement
    assert monitor.update(2.0, 9, 5.5).startswith("wall-clock budget: 5.5 s of 5 s")
    assert monitor.update(1.0, 10, 0.3).startswith("evaluation budget: 10 of 10")
    with pytest.raises(ValueError, match="patience"):
        StoppingRules(patience=0)
    with pytest.raises(ValueError, match="min_improvement"):
        StoppingRules(min_improvement=float("nan"))


def test_minimize_reports_why_it_stopped():
    flat = minimize(lambda x: 1.0, dim=3, budget=500, seed=0, patience=4)  # never improves after the first gen
    assert flat.stop_reason.startswith("no improvement larger than 0 for 4 generations")
    assert flat.n_evals == 5 * flat.optimizer.popsize

    def slow(x):
        import time

        time.sleep(0.01)
        return float(np.sum(x**2))

    timed = minimize(slow, dim=2, budget=10_000, seed=0, max_seconds=0.3)
    assert timed.stop_reason.startswith("wall-clock budget") and timed.n_evals < 10_000
