"""Effective coefficients c @ B outside the box: the default preset reflects them back in, the paper preset clips."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from evogm_opt import GenerativeOptimizer
from evogm_opt.bounds import reflect_into_unit_box
from evogm_opt.evogm.config import PRESETS, REMOVED_AT, EvoGMConfig


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


@pytest.mark.parametrize("where", ["constructed", "a user's dict", "a recorded configuration"])
def test_the_removed_mixed_boundary_is_refused_naming_where_its_code_lives(where):
    """ "mixed" (ablation 8's follow-up, rejected) left the core in 0.2.0, like the removed settings."""
    build = {
        "constructed": lambda: EvoGMConfig(boundary="mixed"),
        "a user's dict": lambda: GenerativeOptimizer(3, config={"boundary": "mixed"}),
        "a recorded configuration": lambda: EvoGMConfig.from_dict(
            {**PRESETS["default"].to_dict(), "boundary": "mixed"}
        ),
    }[where]
    with pytest.raises(ValueError, match=rf"boundary='mixed' was removed in evogm-opt 0\.2\.0.*{REMOVED_AT}"):
        build()


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


def _screened_after_shifts(seed: int) -> np.ndarray:
    opt = GenerativeOptimizer(6, seed=seed)  # the default: reflect, screening
    while opt.basis_version < 2:
        x = opt.ask()
        opt.tell(x, -x.sum(axis=1))  # a slope: the optimum is the corner (1, …, 1)
    x = opt.ask()
    _, coords = opt.pending_coordinates(x)
    np.testing.assert_allclose(coords @ opt.basis.matrix, opt.box.to_unit(x), atol=1e-9)
    return x


def test_screened_asks_are_reflected_too_even_on_a_slope_to_a_corner():
    """Screening judges each candidate where the boundary rule puts it, and the ask is that point: in the box,
    off its faces, with the coordinates of the point evaluated."""
    reflected = np.concatenate([_screened_after_shifts(s) for s in range(4)])
    assert np.all(np.abs(reflected) <= 1.0)
    assert np.mean(np.isclose(np.abs(reflected), 1.0, atol=1e-12)) == 0.0
