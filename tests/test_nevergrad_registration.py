"""EvoGM through nevergrad's own API: registered by name, asked and told by nevergrad, bounds respected."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

ng = pytest.importorskip("nevergrad", reason="the nevergrad registration needs the `nevergrad` extra")

from evogm_opt.integrations.nevergrad import EvoGM, register  # noqa: E402


def sphere(x: np.ndarray) -> float:
    return float(np.sum((np.asarray(x) - 0.3) ** 2))


def test_register_adds_a_working_optimizer_once():
    opt_cls = register()
    assert ng.optimizers.registry["EvoGM"] is opt_cls and register() is opt_cls
    with pytest.raises(ValueError, match="already has"):
        register("CMA")
    param = ng.p.Array(shape=(4,)).set_bounds(-1.0, 1.0)
    param.random_state.seed(0)
    opt = ng.optimizers.registry["EvoGM"](param, budget=80)
    best = opt.minimize(sphere)
    assert opt.num_tell == 80
    assert np.all(np.abs(best.value) <= 1.0)
    # much better than the centre (loss 0.36) and than the 10 best of 80 random points would typically be
    assert sphere(best.value) < 0.05


def test_asked_values_lie_in_the_bounds_and_unasked_tells_are_accepted():
    param = ng.p.Array(init=np.array([0.5, 0.0, 15.0])).set_bounds(
        np.array([0.0, -2.0, 10.0]), np.array([1.0, 2.0, 20.0])
    )
    opt = EvoGM(preset="paper", popsize=6)(param, budget=30, num_workers=3)
    for _ in range(5):
        cands = [opt.ask() for _ in range(3)]
        for c in cands:
            v = c.value
            assert 0 <= v[0] <= 1 and -2 <= v[1] <= 2 and 10 <= v[2] <= 20
            opt.tell(c, float(np.sum(v)))
    opt.tell(opt.parametrization.spawn_child(new_value=np.array([0.0, -2.0, 10.0])), 8.0)  # never asked
    assert opt.num_tell == 16
    assert np.allclose(opt.provide_recommendation().value, [0.0, -2.0, 10.0], atol=1e-6)


def test_seeded_runs_repeat():
    def run() -> np.ndarray:
        param = ng.p.Array(shape=(3,)).set_bounds(-1.0, 1.0)
        param.random_state.seed(7)
        opt = EvoGM()(param, budget=24)
        return opt.minimize(sphere).value

    np.testing.assert_array_equal(run(), run())


@pytest.mark.parametrize(
    ("param", "named"),
    [
        (ng.p.Array(shape=(3,)), ["value[0] (no lower or upper)", "value[2] (no lower or upper)"]),
        (ng.p.Array(shape=(2,)).set_bounds(lower=0.0), ["value[0] (no upper)", "value[1] (no upper)"]),
        (ng.p.Dict(a=ng.p.Scalar(lower=0, upper=1), b=ng.p.Scalar()), ["b (no lower or upper)"]),
    ],
    ids=["array", "half-bounded", "dict"],
)
def test_unbounded_coordinates_are_refused_by_name_instead_of_searched_near_1e16(param, named):
    opt = EvoGM()(param, budget=10)
    with pytest.raises(ValueError, match="needs a finite lower and upper bound") as info:
        opt.ask()
    assert all(name in str(info.value) for name in named)
    assert "a (" not in str(info.value)  # the bounded scalar of the dict is not named
    with pytest.raises(ValueError, match="unbounded"):
        opt.tell(param.spawn_child(), 1.0)


def test_bounded_parametrizations_of_every_kind_are_searched_inside_their_bounds():
    param = ng.p.Instrumentation(
        ng.p.Array(shape=(2,), lower=-1.0, upper=1.0),
        lr=ng.p.Log(lower=1e-4, upper=1e-1),
        y=ng.p.Scalar(lower=0, upper=2),
    )
    param.random_state.seed(0)
    opt = EvoGM()(param, budget=12)
    for _ in range(12):
        cand = opt.ask()
        (x,), kw = cand.value
        assert np.all(np.abs(x) <= 1.0) and 0 <= kw["y"] <= 2
        assert 1e-4 * (1 - 1e-12) <= kw["lr"] <= 1e-1 * (1 + 1e-12)  # nevergrad clips in log space: exp rounds
        opt.tell(cand, float(np.sum(x**2) + kw["y"]))


def test_the_integrations_page_snippet_runs_without_a_warning():
    page = Path(__file__).parents[1] / "docs" / "integrations.md"
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S) if "nevergrad" in b]
    namespace = {"np": np, "loss": sphere}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(block, str(page), "exec"), namespace)
    assert [str(w.message) for w in caught] == []
    assert sphere(namespace["ng_best"].value) < 0.1


def test_choices_are_searched_jointly_through_the_shared_encoding():
    from evogm_opt.integrations.space import Categorical, SearchSpace

    param = ng.p.Instrumentation(
        x=ng.p.Array(shape=(2,), lower=-1.0, upper=1.0),
        act=ng.p.Choice(["relu", None, 2.5]),
        depth=ng.p.TransitionChoice([1, 2, 3]),
        opt=ng.p.Choice(["sgd", ng.p.Scalar(lower=0.0, upper=1.0)]),  # a number only when its option is chosen
    )
    param.random_state.seed(0)
    opt = EvoGM()(param, budget=90)
    space = opt.search_space
    assert isinstance(space, SearchSpace)
    assert space.params["act"] == Categorical(range(3)) and space.params["opt"] == Categorical(range(2))

    def loss(x, act, depth, opt):
        bonus = 0.0 if act is None else 1.0
        return float(np.sum((x - 0.3) ** 2)) + bonus + 0.2 * abs(depth - 2) + (0.0 if opt == "sgd" else opt)

    acts = []
    for _ in range(90):
        cand = opt.ask()
        kw = cand.kwargs
        assert kw["act"] in ("relu", None, 2.5) and kw["depth"] in (1, 2, 3)
        assert kw["opt"] == "sgd" or 0.0 <= kw["opt"] <= 1.0
        acts.append(kw["act"])
        opt.tell(cand, loss(**kw))
    assert acts[-30:].count(None) >= 18  # learnt, not 1 in 3 as at random
    best = opt.provide_recommendation()
    assert best.kwargs["act"] is None and loss(**best.kwargs) == pytest.approx(opt._optimizer.best.y)
    # a candidate never asked, with its choices, is told as an external row
    told = opt.num_tell
    outside = param.spawn_child(new_value=((), {"x": np.zeros(2), "act": 2.5, "depth": 3, "opt": "sgd"}))
    opt.tell(outside, 5.0)
    assert opt.num_tell == told + 1 and opt._optimizer.n_evals == told + 1


@pytest.mark.parametrize("kind", ["choices", "integer-cast"])
def test_no_candidate_repeats_a_configuration_told_or_pending(kind):
    register()
    if kind == "choices":  # 100 configurations, listed whole: exact until exhausted
        param = ng.p.Instrumentation(x=ng.p.Choice(list(range(10))), y=ng.p.Choice(list(range(10))))
    else:  # nevergrad casts the box's floats to ints: searched near the proposal, then anywhere
        param = ng.p.Instrumentation(
            x=ng.p.Scalar(lower=0, upper=9).set_integer_casting(), y=ng.p.Scalar(lower=0, upper=9).set_integer_casting()
        )
    param.random_state.seed(0)
    opt = ng.optimizers.registry["EvoGM"](param, budget=104, num_workers=8)
    seen = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(13):
            candidates = [opt.ask() for _ in range(8)]  # eight pending at once
            for c in candidates:
                x, y = c.kwargs["x"], c.kwargs["y"]
                seen.append((x, y))
                opt.tell(c, float((x - 3) ** 2 + 0.5 * (y - 7) ** 2 + 3 * np.cos(2 * x) * np.sin(y)))
    exhausted = [w for w in caught if "every configuration" in str(w.message)]
    if kind == "choices":
        assert len(set(seen[:100])) == 100 and len(exhausted) == 1 and opt.repeats == 4
    else:
        assert len(set(seen[:100])) >= 95 and len(set(seen)) == 100 and not exhausted
    assert opt.duplicates_skipped > 0
