"""Seeing what an optimizer does: the evaluation record, default stopping rules, one stop wording, reprs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import evogm_opt
from evogm_opt import GenerativeOptimizer, RandomSearch, minimize
from tests.conftest import FACTORIES, sphere


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_evaluations_record_everything_told_in_the_users_signs_and_survive_a_checkpoint(name, tmp_path: Path):
    opt = FACTORIES[name](3, seed=0, maximize=True)
    told_x, told_y = [], []
    for step in range(3):
        x = opt.ask()
        y = [-sphere(row) for row in x]
        if step == 1:
            y[0] = float("nan")  # a failed evaluation stays in the record, as NaN
        opt.tell(x, y)
        told_x.append(x)
        told_y += y
    opt.save(tmp_path / "c.ckpt")
    resumed = type(opt).load(tmp_path / "c.ckpt")
    for o in (opt, resumed):
        record = o.evaluations
        np.testing.assert_array_equal(record.x, np.concatenate(told_x))
        np.testing.assert_array_equal(record.y, np.asarray(told_y))  # not sign-flipped, NaN where failed
        np.testing.assert_array_equal(record.evaluation, np.arange(1, len(told_y) + 1))


def test_without_max_evals_a_stop_loop_ends_by_the_documented_default_rules():
    opt = RandomSearch(2, seed=0)
    while not opt.stop():
        x = opt.ask()
        opt.tell(x, [sphere(row) for row in x])
    assert opt.stop_reason.startswith("default stopping rule")
    assert opt.n_evals <= opt.AUTO_EVALS_PER_DIM * opt.dim
    flat = GenerativeOptimizer(2, seed=0)  # a flat function: nothing improves on the first evaluation
    while not flat.stop():
        x = flat.ask()
        flat.tell(x, np.zeros(len(x)))
    assert flat.stop_reason == "default stopping rule: no improvement in the last 100 evaluations (25 generations)"
    assert flat.n_evals == 104


def test_the_default_rules_are_off_where_a_budget_is_given():
    assert RandomSearch(2, seed=0, max_evals=500).AUTO_EVALS_PER_DIM * 2 < 500
    result = minimize(lambda x: 0.0, dim=2, budget=500, optimizer="random", seed=0)  # flat: would stagnate
    assert result.n_evals == 500 and result.stop_reason == "evaluation budget: 500 of 500 evaluations used"


def test_ask_tell_and_minimize_word_the_spent_budget_alike():
    opt = RandomSearch(2, seed=0, max_evals=8)
    while not opt.stop():
        x = opt.ask()
        opt.tell(x, [sphere(row) for row in x])
    assert opt.stop_reason == "evaluation budget: 8 of 8 evaluations used"
    assert minimize(sphere, 2, 8, optimizer="random", seed=0).stop_reason == opt.stop_reason


def test_reprs_show_the_state_at_a_glance():
    opt = RandomSearch(2, seed=0, max_evals=8)
    x = opt.ask()
    opt.tell(x, np.arange(len(x), dtype=float))
    assert repr(opt) == "RandomSearch(dim=2, popsize=4, n_evals=4/8, best=0 at evaluation 1)"
    multi = RandomSearch(2, seed=0)
    multi.tell(multi.ask(), np.ones((4, 2)))
    assert repr(multi.archive).startswith("ParetoArchive(1 non-dominated of 2 minimised objectives")


def test_the_package_is_typed_and_has_a_generic_load(tmp_path: Path):
    assert (Path(evogm_opt.__file__).parent / "py.typed").exists()
    opt = RandomSearch(2, seed=0)
    opt.save(tmp_path / "r.ckpt")
    assert isinstance(evogm_opt.load(tmp_path / "r.ckpt"), RandomSearch)


def test_minimize_prints_a_progress_line_every_log_every_generations(capsys):
    minimize(sphere, 2, 24, optimizer="random", seed=0, log_every=2)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith("minimize: generation 2: RandomSearch(dim=2, popsize=4, n_evals=8")
    with pytest.raises(ValueError, match="log_every must be a positive integer"):
        minimize(sphere, 2, 8, optimizer="random", log_every=0)


def test_info_logging_reports_generations_and_basis_shifts(caplog):
    import logging

    opt = GenerativeOptimizer(3, seed=0, max_evals=60)
    with caplog.at_level(logging.INFO, logger="evogm_opt"):
        while not opt.stop():
            x = opt.ask()
            opt.tell(x, [sphere(row) for row in x])
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("round 0, iteration 1 done: 12 evaluations, best") and "step σ=" in m for m in messages)
    assert any("basis shift" in m and "condition number" in m for m in messages)
