"""Every optimizer reads bounds the same way: (lo, hi), pycma/scipy's (lower, upper), one pair per coordinate,
scipy.optimize.Bounds and {"lower", "upper"}; a 2×2 array at dim 2 that reads as two different boxes is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import Bounds

from evogm_opt import CMAES, GenerativeOptimizer, ModelSwarms, Optimizer, PSOMerging, RandomSearch

OPTIMIZERS = [GenerativeOptimizer, CMAES, PSOMerging, ModelSwarms, RandomSearch]

LOWER3, UPPER3 = [0.0, -5.0, 10.0], [1.0, 5.0, 20.0]
UNAMBIGUOUS_DIM3 = {
    "lower-upper arrays (pycma, scipy)": (LOWER3, UPPER3),
    "lower-upper numpy": np.array([LOWER3, UPPER3]),
    "pair per coordinate": [[0.0, 1.0], [-5.0, 5.0], [10.0, 20.0]],
    "scipy Bounds": Bounds(LOWER3, UPPER3),
    "mapping": {"lower": LOWER3, "upper": UPPER3},
}


def inside(opt: Optimizer, lower: list[float], upper: list[float]) -> bool:
    x = opt.ask()
    return bool(np.all(x >= lower) and np.all(x <= upper))


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("form", list(UNAMBIGUOUS_DIM3), ids=str)
def test_every_optimizer_reads_every_bounds_form_as_the_same_box(cls, form):
    opt = cls(3, bounds=UNAMBIGUOUS_DIM3[form], seed=0)
    np.testing.assert_array_equal(opt.box.lower, LOWER3)
    np.testing.assert_array_equal(opt.box.upper, UPPER3)
    assert inside(opt, LOWER3, UPPER3)


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_ambiguous_square_bounds_are_refused_with_both_readings_for_every_optimizer(cls):
    with pytest.raises(ValueError, match="ambiguous") as info:
        cls(2, bounds=([0, 10], [1, 20]), seed=0)
    message = str(info.value)
    assert "\n" not in message
    assert "x0 in [0, 10], x1 in [1, 20]" in message  # one pair per coordinate
    assert "x0 in [0, 1], x1 in [10, 20]" in message  # (lower, upper)
    assert "{'lower': [...], 'upper': [...]}" in message and "scipy.optimize.Bounds" in message


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    "bounds", [{"lower": [0, 10], "upper": [1, 20]}, Bounds([0, 10], [1, 20])], ids=["mapping", "scipy"]
)
def test_the_explicit_forms_say_what_the_ambiguous_square_could_not(cls, bounds):
    opt = cls(2, bounds=bounds, seed=0)
    assert opt.box.lower.tolist() == [0, 10] and opt.box.upper.tolist() == [1, 20]
    assert inside(opt, [0, 10], [1, 20])


@pytest.mark.parametrize(
    ("bounds", "lower", "upper"),
    [
        ([[-1, 1], [-1, 1]], [-1, -1], [1, 1]),  # pairs; as (lower, upper) it would have lower == upper
        (([-1, -1], [1, 1]), [-1, -1], [1, 1]),  # (lower, upper); as pairs it would have lower == upper
        (([0, -5], [1, 5]), [0, -5], [1, 5]),  # (lower, upper); as pairs x0 would be [0, -5]
        ([[0, 1], [1, 2]], [0, 1], [1, 2]),  # symmetric: both readings are the same box
        ((0.0, [1, 2]), [0, 0], [1, 2]),  # pycma: one side a number
        ((0, 1), [0, 0], [1, 1]),
    ],
)
@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_a_square_that_is_a_valid_box_only_one_way_is_read_that_way(cls, bounds, lower, upper):
    opt = cls(2, bounds=bounds, seed=0)
    assert opt.box.lower.tolist() == lower and opt.box.upper.tolist() == upper


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_checkpoints_of_a_dim_2_box_load_back_to_the_same_box(cls, tmp_path: Path):
    opt = cls(2, bounds={"lower": [0, 10], "upper": [1, 20]}, seed=0)
    opt.tell(opt.ask(), np.arange(opt.popsize, dtype=float))
    opt.save(tmp_path / "opt.ckpt")
    again = cls.load(tmp_path / "opt.ckpt")
    assert again.box.lower.tolist() == [0, 10] and again.box.upper.tolist() == [1, 20]
    np.testing.assert_array_equal(again.ask(), opt.ask())


@pytest.mark.parametrize(
    ("bounds", "match"),
    [
        (Bounds(-np.inf, np.inf), "finite"),
        ({"lower": [0, 0, 0]}, "keys 'lower' and 'upper'"),
        ((0.0, [1, 2]), "a number or 3 numbers"),
        (np.zeros((3, 3)), r"got shape \(3, 3\)"),
    ],
)
def test_malformed_bounds_say_what_is_wrong(bounds, match):
    with pytest.raises(ValueError, match=match):
        RandomSearch(3, bounds=bounds)


def test_checkpoints_that_stored_bounds_as_pairs_still_load_as_pairs(tmp_path: Path):
    """Before the explicit form, checkpoints wrote one (lo, hi) pair per coordinate — ambiguous at dim 2."""
    from evogm_opt._state import load_state, save_state

    opt = RandomSearch(2, bounds={"lower": [0, 1], "upper": [10, 20]}, seed=0)
    state = opt.state_dict()
    state["config"]["bounds"] = [[0.0, 10.0], [1.0, 20.0]]  # the old layout
    save_state(tmp_path / "old.ckpt", {"optimizer": state, "searcher": "nested, as a Ray checkpoint nests it"})
    again = Optimizer.from_state_dict(load_state(tmp_path / "old.ckpt")["optimizer"])
    assert again.box.lower.tolist() == [0, 1] and again.box.upper.tolist() == [10, 20]
