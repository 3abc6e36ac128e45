"""Effective coefficients c @ B outside the box: the default preset reflects them back in, the paper preset clips."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from evogm_opt import GenerativeOptimizer
from evogm_opt.bounds import reflect_into_unit_box
from evogm_opt.evogm.config import PRESETS, EvoGMConfig


def near_a_corner(x: np.ndarray) -> float:
    # optimum at 0.8 in every coordinate: the top points' combinations overshoot the box
    return float(np.sum((np.asarray(x) - 0.8) ** 2))


def test_reflection_mirrors_at_the_faces_and_leaves_the_inside_alone():
    u = np.array([0.3, -1.0, 1.0, 1.2, -1.5, 3.5, 7.0, -9.25])
    np.testing.assert_allclose(reflect_into_unit_box(u), [0.3, -1.0, 1.0, 0.8, -0.5, -0.5, -1.0, -0.75])


def test_default_reflects_and_paper_clips():
    assert PRESETS["default"].boundary == "reflect"
    assert all(PRESETS[name].boundary == "clip" for name in PRESETS if name.startswith("paper"))
    with pytest.raises(ValueError, match="boundary"):
        EvoGMConfig(boundary="wrap")
    assert EvoGMConfig(boundary="mixed").boundary == "mixed"


def _after_shifts(boundary: str) -> tuple[GenerativeOptimizer, np.ndarray]:
    config = dataclasses.replace(PRESETS["default"], boundary=boundary, screening=0)
    opt = GenerativeOptimizer(6, seed=3, config=config)
    while opt.basis_version < 2:
        x = opt.ask()
        opt.tell(x, [near_a_corner(r) for r in x])
    return opt, opt.ask()


def test_reflected_asks_stay_off_the_faces_that_clipping_piles_them_on():
    _, clipped = _after_shifts("clip")
    _, reflected = _after_shifts("reflect")
    on_faces = lambda x: np.mean(np.abs(x) == 1.0)  # noqa: E731
    assert on_faces(clipped) > 0.1  # 0.14-0.82 over seeds 0-7
    assert on_faces(reflected) == 0.0


def test_reflected_asks_carry_the_coordinates_of_the_point_evaluated():
    opt, x = _after_shifts("reflect")
    _, coords = opt.pending_coordinates(x)
    np.testing.assert_allclose(coords @ opt.basis.matrix, opt.box.to_unit(x), atol=1e-9)


def _screened_after_shifts(boundary: str, seed: int) -> np.ndarray:
    config = dataclasses.replace(PRESETS["default"], boundary=boundary)
    opt = GenerativeOptimizer(6, seed=seed, config=config)
    while opt.basis_version < 2:
        x = opt.ask()
        opt.tell(x, -x.sum(axis=1))  # a slope: the optimum is the corner (1, …, 1)
    x = opt.ask()
    _, coords = opt.pending_coordinates(x)
    np.testing.assert_allclose(coords @ opt.basis.matrix, opt.box.to_unit(x), atol=1e-9)
    return x


def test_mixed_boundary_can_still_reach_a_face_and_stays_in_the_box():
    """ "mixed" projects the generator's own proposal and mirrors the noisy variants: unlike "reflect" it can
    ask a point on a face, which a slope to a corner needs."""
    mixed = np.concatenate([_screened_after_shifts("mixed", s) for s in range(4)])
    reflected = np.concatenate([_screened_after_shifts("reflect", s) for s in range(4)])
    assert np.all(np.abs(mixed) <= 1.0) and np.all(np.abs(reflected) <= 1.0)
    assert np.mean(np.isclose(np.abs(reflected), 1.0, atol=1e-12)) == 0.0
    assert np.mean(np.isclose(np.abs(mixed), 1.0, atol=1e-12)) > 0.0
