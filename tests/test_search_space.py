"""The one encoding of mixed search spaces (evogm_opt.integrations.space), on its own and for every Optuna
distribution type."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from evogm_opt.integrations.space import DEFAULT_MARGIN, Categorical, Integer, Real, SearchSpace

NUMERIC = {
    "linear": Real(-3.0, 5.0),
    "log": Real(1e-5, 1e-1, log=True),
    "stepped": Real(0.0, 1.0, step=0.25),
    "int": Integer(1, 8),
    "int_step": Integer(2, 11, step=3),  # 2, 5, 8, 11
    "int_log": Integer(1, 1000, log=True),
}


def grid(p: Real | Integer) -> list[float]:
    n = int(math.floor((p.high - p.low) / p.step + 1e-9)) + 1
    return [p.low + k * p.step for k in range(n)]


@pytest.mark.parametrize("name", list(NUMERIC))
def test_numeric_values_round_trip_and_random_rows_decode_inside_bounds_on_the_grid(name):
    p = NUMERIC[name]
    rng = np.random.default_rng(0)
    for u in np.concatenate([rng.uniform(-1, 1, 500), [-1.0, 1.0, 0.0, -1.5, 1.5]]):
        value, repaired = p.from_unit(np.array([u]))
        assert p.low <= value <= p.high
        assert -1.0 <= repaired[0] <= 1.0
        assert p.from_unit(p.to_unit(value))[0] == pytest.approx(value, rel=1e-12)
        if isinstance(p, Integer):
            assert isinstance(value, int) and (value - p.low) % p.step == 0
        else:
            assert isinstance(value, float)
            if p.step is not None:
                assert min(abs(value - g) for g in grid(p)) < 1e-12
    assert p.from_unit(np.array([-1.0]))[0] == p.low
    assert p.from_unit(np.array([1.0]))[0] == pytest.approx(p.high if p.step is None else grid(p)[-1])


@pytest.mark.parametrize(
    "p", [Integer(1, 4), Integer(0, 10, step=5), Real(0.0, 1.0, step=0.5), Integer(1, 3, log=True)]
)
def test_discrete_values_get_bins_of_equal_width_so_end_values_are_not_starved(p):
    values = [p.from_unit(np.array([u]))[0] for u in np.linspace(-1, 1, 30001)]
    _, counts = np.unique(values, return_counts=True)
    if p.log:  # equal width in log(value ± 1/2): the ratio of the bins' log-widths
        edges = np.log(np.arange(p.low, p.high + 2) - 0.5)
        expected = np.diff(edges) / (edges[-1] - edges[0]) * len(values)
    else:
        expected = np.full(len(counts), len(values) / len(counts))
    np.testing.assert_allclose(counts, expected, rtol=0.01)


def test_log_axes_are_linear_in_log_space():
    assert Real(1e-4, 1e-2, log=True).from_unit(np.array([0.0]))[0] == pytest.approx(1e-3)
    assert Real(1e-4, 1e-2, log=True).to_unit(1e-3)[0] == pytest.approx(0.0, abs=1e-12)
    # integer bins are [k - 1/2, k + 1/2] in log space: the centre of the coordinate is √(0.5 · 100.5) ≈ 7.09
    assert Integer(1, 100, log=True).from_unit(np.array([0.0]))[0] == 7


def test_out_of_range_values_encode_to_the_faces():
    assert Real(0.0, 1.0).to_unit(7.0)[0] == 1.0
    assert Real(1e-3, 1.0, log=True).to_unit(1e-9)[0] == -1.0
    assert Integer(1, 5).to_unit(-3)[0] == Integer(1, 5).to_unit(1)[0]


@pytest.mark.parametrize("choices", [["a", "b", "c", "d"], [None, True, 1, 2.5, "x"], [False, True], ["only"]])
def test_categorical_round_trips_keep_the_very_choice_objects(choices):
    p = Categorical(choices, margin=0.0)
    assert p.width == (0 if len(choices) == 1 else 1 if len(choices) == 2 else len(choices))
    for c in choices:
        value, repaired = p.from_unit(p.to_unit(c))
        assert value is c or (value == c and type(value) is type(c))
        np.testing.assert_array_equal(repaired, p.to_unit(c))


def test_categorical_tells_true_from_one_and_nan_from_nothing():
    p = Categorical([1, True, float("nan")])
    assert p.index(True) == 1 and p.index(1) == 0 and p.index(float("nan")) == 2
    with pytest.raises(ValueError, match="not one of the choices"):
        p.index("z")


def test_categorical_decodes_by_argmax_and_breaks_ties_at_random_only_with_an_rng():
    p = Categorical(["a", "b", "c"], margin=0.0)
    assert p.from_unit(np.array([0.1, 0.7, -0.2]))[0] == "b"
    assert p.from_unit(np.array([0.0, 0.0, 0.0]))[0] == "a"  # deterministic without an rng
    rng = np.random.default_rng(0)
    picked = {p.from_unit(np.zeros(3), rng)[0] for _ in range(60)}
    assert picked == {"a", "b", "c"}
    binary = Categorical([False, True], margin=0.0)
    assert binary.from_unit(np.array([0.3]))[0] is True and binary.from_unit(np.array([-0.3]))[0] is False


def test_margin_keeps_every_choice_reachable_and_the_repaired_row_encodes_what_was_evaluated():
    p = Categorical(["a", "b", "c", "d"], margin=0.2)
    rng = np.random.default_rng(1)
    converged = np.array([0.9, -0.8, -0.9, -0.7])  # the optimizer is sure of "a"
    seen = {}
    for _ in range(4000):
        value, repaired = p.from_unit(converged, rng)
        seen[value] = seen.get(value, 0) + 1
        assert p.from_unit(repaired)[0] == value  # the row told decodes, without an rng, to the evaluated value
        assert np.all(np.abs(repaired) <= 1.0)
        if value == "a":
            np.testing.assert_array_equal(repaired, converged)  # untouched when the optimizer's choice stands
        else:  # the winner's score swapped with the drawn choice's: the same multiset of scores
            np.testing.assert_array_equal(np.sort(repaired), np.sort(converged))
    for c in "bcd":  # at least margin / k = 5 % each
        assert seen[c] / 4000 == pytest.approx(0.05, abs=0.015)
    assert DEFAULT_MARGIN > 0


def test_repair_breaks_ties_at_the_upper_face():
    p = Categorical(["a", "b", "c"], margin=1.0)
    rng = np.random.default_rng(3)
    for _ in range(50):
        value, repaired = p.from_unit(np.array([1.0, 1.0, 1.0]), rng)
        assert p.from_unit(repaired)[0] == value and repaired.max() <= 1.0


def test_search_space_decodes_every_parameter_and_repaired_rows_decode_to_the_same_values():
    space = SearchSpace({**NUMERIC, "act": Categorical(["relu", "tanh", None]), "flag": Categorical([False, True])})
    assert space.dim == len(NUMERIC) + 3 + 1
    assert space.coordinate_names()[-4:] == ["act='relu'", "act='tanh'", "act=None", "flag"]
    rng = np.random.default_rng(0)
    for _ in range(200):
        values, row = space.decode(rng.uniform(-1, 1, space.dim), rng)
        assert set(values) == set(space.params)
        assert np.all(np.abs(row) <= 1.0)
        again, same = space.decode(row)
        assert again == values and np.array_equal(same, row)
        assert space.decode(space.encode(values))[0] == values
    with pytest.raises(ValueError, match="coordinates"):
        space.decode(np.zeros(space.dim + 1))


def test_conditional_rule_absent_parameters_sit_at_the_centre_and_stored_pieces_win():
    space = SearchSpace({"depth": Integer(1, 3), "width2": Integer(8, 64), "act": Categorical(["a", "b", "c"])})
    row = space.encode({"depth": 1, "act": "b"})  # width2 inactive in this trial
    np.testing.assert_array_equal(row[space.slices["width2"]], [0.0])
    asked = {"depth": [-0.9], "width2": [0.37], "act": [0.1, 0.2, -0.4]}
    np.testing.assert_array_equal(space.encode({"depth": 1}, asked), [-0.9, 0.37, 0.1, 0.2, -0.4])
    assert space.split(space.encode({}, asked)) == asked
    wrong_width = {"act": [0.5]}  # e.g. written for another space: the value's encoding is used instead
    np.testing.assert_array_equal(space.encode({"act": "c"}, wrong_width)[2:], [-0.5, -0.5, 0.5])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Real(1.0, 0.0), "low <= high"),
        (lambda: Real(0.0, 1.0, log=True), "low > 0"),
        (lambda: Real(1e-3, 1.0, log=True, step=0.1), "both log"),
        (lambda: Integer(1, 9, log=True, step=2), "step=1"),
        (lambda: Integer(1, 9, step=0), "step > 0"),
        (lambda: Real(0.0, math.inf), "finite"),
        (lambda: Categorical([]), "at least one"),
        (lambda: Categorical(["a"], margin=1.5), "margin"),
        (lambda: SearchSpace({"x": (0, 1)}), "expected Real"),
    ],
)
def test_invalid_parameters_are_refused_with_the_reason(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


# ---------------------------------------------------------------------- every distribution type Optuna has
optuna = pytest.importorskip("optuna")
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: E402

from evogm_opt.integrations.optuna import to_param  # noqa: E402

OPTUNA_DISTRIBUTIONS = {
    "float": FloatDistribution(-2.0, 3.0),
    "float_log": FloatDistribution(1e-6, 1.0, log=True),
    "float_step": FloatDistribution(0.1, 1.0, step=0.3),
    "int": IntDistribution(-5, 5),
    "int_log": IntDistribution(1, 4096, log=True),
    "int_step": IntDistribution(0, 100, step=25),
    "categorical_str": CategoricalDistribution(["adam", "sgd", "lbfgs"]),
    "categorical_mixed": CategoricalDistribution([None, True, 3, 0.5, "x"]),
    "categorical_bool": CategoricalDistribution([False, True]),
}
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Optuna says it trims high to 0.9: what the test is about
    OPTUNA_DISTRIBUTIONS["float_step_off_grid_high"] = FloatDistribution(0.0, 1.0, step=0.3)


@pytest.mark.parametrize("name", list(OPTUNA_DISTRIBUTIONS))
def test_every_optuna_distribution_decodes_to_values_optuna_accepts_and_round_trips(name):
    dist = OPTUNA_DISTRIBUTIONS[name]
    p = to_param(dist)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(300):
        value, row = p.from_unit(rng.uniform(-1, 1, p.width), rng)
        assert dist._contains(dist.to_internal_repr(value)), (name, value)
        assert p.from_unit(row)[0] == value or (value is None and p.from_unit(row)[0] is None)
        back = p.from_unit(p.to_unit(value))[0]
        assert back == pytest.approx(value) if isinstance(value, float) else back == value
        seen.add(repr(value))
    if isinstance(dist, CategoricalDistribution):
        assert seen == {repr(c) for c in dist.choices}  # every choice appears, with its own type
    if isinstance(dist, IntDistribution):
        assert all(isinstance(eval(v), int) for v in seen)
