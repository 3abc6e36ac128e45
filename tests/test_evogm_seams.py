"""The evogm_opt.evogm package's promises to adapters and to its own presets: the ask with coordinates, the basis
shift event, the recommended evaluation's index, one boundary rule on every path, presets written out in full."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from evogm_opt import evogm
from evogm_opt.evogm import PAPER, PRESETS, AskedBatch, BasisShift, EvoGMConfig, GenerativeOptimizer, History
from evogm_opt.evogm.config import _every_field


def slope(x: np.ndarray) -> np.ndarray:
    return -np.asarray(x).sum(axis=1)  # minimised at the corner (1, …, 1): shifted points overshoot the box


def test_ask_with_coordinates_is_the_ask_and_carries_the_rows_coordinates():
    opt, twin = GenerativeOptimizer(3, seed=0), GenerativeOptimizer(3, seed=0)
    for _ in range(6):  # through a basis shift (the default's round: initial population + 3 iterations)
        batch = opt.ask_with_coordinates()
        assert isinstance(batch, AskedBatch)
        np.testing.assert_array_equal(batch.x, twin.ask())
        versions, coords = opt.pending_coordinates(batch.x)
        assert (versions == batch.basis_version).all() and batch.basis_version == opt.basis_version
        np.testing.assert_array_equal(coords, batch.coordinates)
        np.testing.assert_allclose(batch.coordinates @ opt.basis.matrix, opt.box.to_unit(batch.x), atol=1e-9)
        opt.tell(batch.x, slope(batch.x))
        twin.tell(batch.x, slope(batch.x))
    assert opt.basis_version >= 1
    assert opt.ask_with_coordinates(2).x.shape == (2, 3) and opt.n_pending == 2


def test_basis_shift_hook_gets_the_version_the_new_basis_and_the_rows_chosen():
    shifts: list[BasisShift] = []
    opt = GenerativeOptimizer(2, preset="paper", popsize=4, seed=0, on_basis_shift=shifts.append)
    for _ in range(4):  # the paper's first round: initial population + T = 3 iterations
        x = opt.ask()
        opt.tell(x, slope(x))
    assert len(shifts) == 1
    shift = shifts[0]
    assert shift.version == 1 == opt.basis_version
    np.testing.assert_array_equal(np.asarray(shift), opt.basis.matrix)  # old hooks took the bare matrix
    np.testing.assert_array_equal(shift.rows, opt.shift_rows[-1])
    np.testing.assert_array_equal(shift.rows @ np.eye(2), shift.matrix)  # from the identity: B = C_top
    assert np.asarray(shift, dtype=np.float32).dtype == np.float32
    with pytest.raises(dataclasses.FrozenInstanceError):
        shift.version = 2  # type: ignore[misc]


def test_recommended_evaluation_is_the_index_of_the_told_row():
    opt = GenerativeOptimizer(3, seed=1, maximize=True)
    rng = np.random.default_rng(0)
    log_x, log_y = [], []

    def tell(x: np.ndarray, y: np.ndarray) -> None:
        opt.tell(x, y)
        log_x.extend(x)
        log_y.extend(y)

    tell(np.array([[0.1, 0.2, 0.3]]), np.array([np.nan]))  # an external row, failed
    for _ in range(5):
        x = opt.ask()
        tell(x[::-1], -np.sum((x[::-1] - 0.4) ** 2, axis=1) + 0.2 * rng.standard_normal(len(x)))  # told reversed
    reco = opt.recommend()
    i = reco.evaluation - 1
    np.testing.assert_allclose(log_x[i], reco.x, rtol=0, atol=1e-12)
    assert log_y[i] == reco.y
    assert reco is opt.best and np.array_equal(log_x[i], reco.x)


def _asked_in_a_stretched_basis(boundary: str) -> tuple[GenerativeOptimizer, AskedBatch]:
    # no noise, no screening: every proposal is G_lw's own
    config = dataclasses.replace(
        PRESETS["default"], boundary=boundary, screening=0, proposal_noise=0.0, adapt_noise=False, deduplicate=False
    )
    opt = GenerativeOptimizer(4, seed=0, config=config)
    while opt.basis_version < 1:
        x = opt.ask()
        opt.tell(x, slope(x))
    opt.basis = evogm.Basis(3.0 * opt.basis.matrix, opt.basis.shift_rows)  # c @ B overshoots the box
    return opt, opt.ask_with_coordinates()


def test_the_boundary_rule_folds_the_generators_own_proposals_without_screening_too():
    opt, reflected = _asked_in_a_stretched_basis("reflect")
    _, clipped = _asked_in_a_stretched_basis("clip")  # the same run up to this ask, then projected
    assert opt.iteration > 0  # proposals of the generator, not an initial population
    assert np.all(np.abs(reflected.x) <= 1.0) and not np.isclose(np.abs(reflected.x), 1.0, rtol=0, atol=1e-12).any()
    assert np.isclose(np.abs(clipped.x), 1.0, rtol=0, atol=1e-12).any()  # projected: piled on the faces
    np.testing.assert_allclose(reflected.coordinates @ opt.basis.matrix, opt.box.to_unit(reflected.x), atol=1e-9)


def test_presets_set_every_field_and_old_settings_take_the_papers_values():
    with pytest.raises(TypeError, match="missing"):
        _every_field(EvoGMConfig, winner_fraction=0.3)
    data = PRESETS["default"].to_dict()
    del data["deduplicate"], data["generator"]["dual"]  # as if written before they existed
    data["winner_fraction"] = 0.25
    config = EvoGMConfig.from_dict(data)
    assert config.deduplicate == PAPER.deduplicate and config.generator.dual == PAPER.generator.dual
    assert config.winner_fraction == 0.25 and config.generator.hidden == (64, 64)
    assert EvoGMConfig.from_dict({"n_rounds": None}) == dataclasses.replace(PAPER, n_rounds=None)
    with pytest.raises(ValueError, match="unknown generator settings"):
        EvoGMConfig.from_dict({"generator": {"width": 3}})


def test_a_dict_of_settings_changes_the_named_preset_and_an_old_checkpoint_still_gets_the_papers_values(tmp_path):
    opt = GenerativeOptimizer(4, seed=0, config={"handoff_dim": 50, "generator": {"epochs": 7}})
    assert opt.config == dataclasses.replace(
        PRESETS["default"], handoff_dim=50, generator=dataclasses.replace(PRESETS["default"].generator, epochs=7)
    )
    assert GenerativeOptimizer(4, preset="paper", config={"n_rounds": 3}).config == dataclasses.replace(
        PAPER, n_rounds=3
    )
    with pytest.raises(ValueError, match="unknown EvoGM settings"):
        GenerativeOptimizer(4, config={"handof_dim": 50})
    with pytest.raises(TypeError, match="EvoGMConfig or a dict"):
        GenerativeOptimizer(4, config=[("handoff_dim", 50)])
    opt.save(tmp_path / "c.npz")
    assert GenerativeOptimizer.load(tmp_path / "c.npz").config == opt.config
    state = opt.state_dict()  # as if written before screening existed: the paper's value (0), not the preset's (64)
    del state["config"]["config"]["screening"]
    assert GenerativeOptimizer.from_state_dict(state).config.screening == PAPER.screening == 0


def test_preset_names_the_configuration_in_repr_and_after_load(tmp_path):
    opt = GenerativeOptimizer(3, preset="paper", seed=0)
    assert opt.preset == "paper" and "preset='paper'" in repr(opt)
    opt.save(tmp_path / "c.npz")
    assert GenerativeOptimizer.load(tmp_path / "c.npz").preset == "paper"
    assert GenerativeOptimizer(3, config=dataclasses.replace(PAPER, n_rounds=3)).preset == "custom"


def test_history_is_immutable_and_re_expressed_in_a_new_basis():
    h = History.empty(2).appended(np.eye(2), np.eye(2), np.array([1.0, np.inf]), np.array([1, 2]))
    assert len(h) == 2 and h.ranked().tolist() == [0, 1] and h.finite_rows().tolist() == [0]
    with pytest.raises(ValueError, match="read-only"):
        h.y[0] = 0.0
    moved = h.in_basis(evogm.Basis(2.0 * np.eye(2)))
    np.testing.assert_allclose(moved.c, 0.5 * np.eye(2))
    assert moved.u is h.u and len(History.from_state(h.state(), 2)) == 2
    with pytest.raises(ValueError, match="different lengths"):
        History(np.eye(2), np.eye(2), np.zeros(1), np.zeros(2, dtype=np.int64))
