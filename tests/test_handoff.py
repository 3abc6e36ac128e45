"""The high-dimensional handoff to sep-CMA-ES (research ablation 13, adopted: the default from 100 coordinates
on), and what it needs from CMA-ES."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from evogm_opt import PRESETS, GenerativeOptimizer, load
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
