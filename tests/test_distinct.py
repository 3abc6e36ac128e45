"""The rule the integrations share (evogm_opt.integrations.distinct): which configurations are used, and the
nearest unused one; and the levels and grid of the encoding it rests on."""

from __future__ import annotations

import numpy as np
import pytest

from evogm_opt.integrations.distinct import Distinct, Used
from evogm_opt.integrations.space import Categorical, Integer, Real, SearchSpace

MIXED = SearchSpace(
    {
        "int": Integer(0, 3),
        "int_step": Integer(2, 11, step=3),  # 2, 5, 8, 11
        "int_log": Integer(1, 20, log=True),
        "float_step": Real(0.0, 1.0, step=0.25),
        "pick": Categorical(["a", None, 3]),
        "flag": Categorical([False, True]),
        "one": Categorical(["only"]),
    }
)
CONDITIONAL = SearchSpace({"kind": Categorical(["a", "b"]), "i": Integer(0, 4), "j": Integer(0, 9)})


def test_a_finite_space_lists_every_configuration_once_and_each_row_decodes_to_its_levels():
    assert MIXED.size == 4 * 4 * 20 * 5 * 3 * 2 * 1
    levels, rows = MIXED.grid(limit=10**5)
    assert levels.shape == (MIXED.size, 7) and rows.shape == (MIXED.size, MIXED.dim)
    assert len({tuple(r) for r in levels}) == MIXED.size
    for level, row in zip(levels, rows):
        values, repaired = MIXED.decode(row)
        assert np.array_equal(repaired, row)
        assert [p.level(values[n]) for n, p in MIXED.params.items()] == list(level)
    assert MIXED.grid(limit=MIXED.size - 1) is None  # too many to list
    unbounded = SearchSpace({"x": Real(0.0, 1.0), "k": Integer(0, 3)})
    assert unbounded.size is None and unbounded.grid(limit=10**6) is None


def test_a_value_off_the_grid_has_no_level():
    with pytest.raises(ValueError, match="grid"):
        Integer(2, 11, step=3).level(4)
    with pytest.raises(ValueError, match="grid"):
        Integer(0, 3).level(7)  # a range that changed
    assert Real(0.0, 1.0).level(0.3) == 0.3  # a continuous float is its own level
    assert Categorical([None, 1]).level(1) == 1 and Categorical([True, 1]).level(1) == 1


def test_a_configuration_is_repeated_by_what_agrees_on_every_parameter_it_used():
    used = Used(CONDITIONAL, [{"kind": "a", "i": 3}, {"kind": "b", "j": 7}])
    assert used.holds({"kind": "a", "i": 3, "j": 0})  # j was never read when kind is "a"
    assert not used.holds({"kind": "a", "i": 2, "j": 7})
    assert used.holds({"kind": "b", "i": 0, "j": 7}) and not used.holds({"kind": "b", "i": 3, "j": 6})
    assert not used.holds({"kind": "a"})  # fewer parameters than the configuration: not known to repeat it
    levels, rows = CONDITIONAL.grid(limit=1000)
    mask = used.mask(levels)
    assert mask.sum() == 10 + 5  # kind a, i 3 for every j; kind b, j 7 for every i
    assert all(mask[k] == used.holds(CONDITIONAL.decode(row)[0]) for k, row in enumerate(rows))


def test_the_replacement_is_the_nearest_unused_configuration_and_none_once_all_are_used():
    space = SearchSpace({"x": Integer(0, 9), "y": Integer(0, 9)})
    rule, rng = Distinct(space), np.random.default_rng(0)
    used = Used(space, [{"x": 4, "y": 4}])
    values, row = rule.nearest_unused(space.encode({"x": 4, "y": 4}), [used], rng)
    assert abs(values["x"] - 4) + abs(values["y"] - 4) == 1  # a neighbour on the grid
    assert np.array_equal(row, space.encode(values))
    far = Used(space, [{"x": x, "y": y} for x in range(10) for y in range(10) if (x, y) != (9, 0)])
    assert rule.nearest_unused(space.encode({"x": 0, "y": 9}), [far], rng)[0] == {"x": 9, "y": 0}
    everything = Used(space, [{"x": x, "y": y} for x in range(10) for y in range(10)])
    assert rule.finite and rule.nearest_unused(space.encode({"x": 0, "y": 0}), [everything], rng) is None


def test_an_unbounded_space_finds_an_unused_configuration_near_the_proposal():
    space = SearchSpace({"x": Real(0.0, 1.0), "k": Integer(0, 2)})
    rule, rng = Distinct(space), np.random.default_rng(1)
    row = space.encode({"x": 1.0, "k": 2})  # a proposal clipped to the box's face: equal floats do repeat
    used = Used(space, [space.decode(row)[0]])
    assert rule.repeats(space.decode(row)[0], [used]) and not rule.finite
    values, found = rule.nearest_unused(row, [used], rng)
    assert space.decode(found)[0] == values
    assert not used.holds(values) and values["k"] == 2 and values["x"] > 0.9
    # a branch used up: only the other branch of the conditional space is left, far from the proposal
    mixed = SearchSpace({"kind": Categorical(["a", "b"]), "i": Integer(0, 1), "x": Real(0.0, 1.0)})
    taken = Used(mixed, [{"kind": "a", "i": 0}, {"kind": "a", "i": 1}])
    values, _ = Distinct(mixed).nearest_unused(mixed.encode({"kind": "a", "i": 0, "x": 0.5}), [taken], rng)
    assert values["kind"] == "b"
