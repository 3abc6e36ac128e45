"""``evogm_opt.minimize``: one call, every optimizer, checkpoint/resume, early stop, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from evogm_opt import CMAES, GenerativeOptimizer, minimize, registry


def sphere(x: np.ndarray) -> float:
    return float(np.sum((np.asarray(x) - 0.3) ** 2))


@pytest.mark.parametrize("name", registry.names())
def test_every_named_optimizer_spends_the_budget_or_stops_by_its_own_rule_and_improves_on_the_start(name):
    result = minimize(sphere, dim=3, budget=45, optimizer=name, seed=0)
    own_rule = result.optimizer._algorithm_stop()  # e.g. the paper's R rounds of T iterations: 42 evaluations here
    if own_rule is None:
        assert result.n_evals == 45 and result.stop_reason.startswith("evaluation budget: 45 of 45")
    else:
        assert result.n_evals < 45 and result.stop_reason == own_rule
    assert result.y == pytest.approx(sphere(result.x))
    assert result.y < sphere(np.zeros(3))


def test_batch_and_maximize_and_bounds():
    calls = []

    def batch_f(x):
        calls.append(len(x))
        return -np.sum((x - 3.0) ** 2, axis=1)

    result = minimize(batch_f, 2, 40, bounds=(0.0, 5.0), batch=True, maximize=True, seed=1, optimizer="cmaes")
    assert sum(calls) == 40 and max(calls) > 1
    assert np.all((result.x >= 0) & (result.x <= 5)) and result.y > -1.0


def test_checkpoint_resumes_exactly_and_never_repeats_an_evaluation(tmp_path):
    path = tmp_path / "run.npz"
    seen: list[np.ndarray] = []

    def logged(x):
        seen.append(np.array(x))
        return sphere(x)

    population = {"preset": "default"}  # generations of popsize 6 (the rule would pick the sequential shape here)
    full = minimize(sphere, 3, 60, seed=4, optimizer="evogm", **population)
    with pytest.raises(KeyboardInterrupt):

        def crash_mid_generation(x):
            if len(seen) >= 27:  # popsize 6: generations 1-4 are saved, the 5th is cut
                raise KeyboardInterrupt
            return logged(x)

        minimize(crash_mid_generation, 3, 60, seed=4, optimizer="evogm", checkpoint=path, **population)
    resumed = minimize(logged, 3, 60, seed=4, optimizer="evogm", checkpoint=path, **population)
    assert resumed.n_evals == 60
    np.testing.assert_array_equal(resumed.x, full.x)
    assert len(seen) == 27 + (60 - 24)  # only the cut generation (evals 25-30) is redone


def test_evogm_by_its_rule_resumes_exactly_one_point_at_a_time_and_follows_a_larger_budget(tmp_path):
    path = tmp_path / "run.npz"
    seen: list[np.ndarray] = []
    full = minimize(sphere, 3, 30, seed=4)  # dim 3, 30 <= 20·3: the sequential shape
    assert type(full.optimizer).__name__ == "SequentialOptimizer" and full.optimizer.max_evals == 30

    def crash_at_20(x):
        if len(seen) >= 20:
            raise KeyboardInterrupt
        seen.append(np.array(x))
        return sphere(x)

    with pytest.raises(KeyboardInterrupt):
        minimize(crash_at_20, 3, 30, seed=4, checkpoint=path)
    resumed = minimize(lambda x: seen.append(np.array(x)) or sphere(x), 3, 30, seed=4, checkpoint=path)
    assert len(seen) == 30  # a checkpoint after every tell: nothing is evaluated twice
    np.testing.assert_array_equal(resumed.optimizer.evaluations.x, full.optimizer.evaluations.x)
    longer = minimize(sphere, 3, 40, seed=4, checkpoint=path)  # a larger budget continues the same run
    assert longer.n_evals == 40 and longer.optimizer.max_evals == 40
    assert type(longer.optimizer).__name__ == "SequentialOptimizer"  # its shape kept, though 40 > 20·3 now


def test_batch_evaluation_gets_generations_the_population_shape():
    sizes: list[int] = []
    result = minimize(lambda X: sizes.append(len(X)) or [sphere(x) for x in X], 3, 30, seed=0, batch=True)
    assert isinstance(result.optimizer, GenerativeOptimizer) and set(sizes) == {6}


def test_a_population_checkpoint_of_evogm_continues_in_its_shape_where_the_rule_now_says_sequential(tmp_path):
    path = tmp_path / "run.npz"
    old = registry.create("evogm", 3, seed=4, preset="default")  # as "evogm" was before the rule, at dim 3
    x = old.ask()
    old.tell(x, [sphere(r) for r in x])
    old.save(path)
    resumed = minimize(sphere, 3, 24, seed=4, checkpoint=path)
    assert isinstance(resumed.optimizer, GenerativeOptimizer) and resumed.n_evals == 24
    other = tmp_path / "cmaes.npz"
    registry.create("cmaes", 3, seed=4).save(other)
    with pytest.raises(ValueError, match="optimizer is 'cmaes', not 'evogm-sequential'"):
        minimize(sphere, 3, 24, seed=4, checkpoint=other)


def test_callback_can_stop_and_ready_optimizer_is_used():
    opt = CMAES(2, seed=0)
    result = minimize(sphere, 2, 100, optimizer=opt, callback=lambda o: o.n_evals >= 12)
    assert result.optimizer is opt and result.stop_reason == "callback asked to stop" and result.n_evals < 100


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown optimizer"):
        minimize(sphere, 2, 10, optimizer="nope")
    with pytest.raises(ValueError, match="budget"):
        minimize(sphere, 2, 0)
    with pytest.raises(ValueError, match="dim"):
        minimize(sphere, 3, 10, optimizer=CMAES(2))
    with pytest.raises(RuntimeError, match="every evaluation failed"):
        minimize(lambda x: float("nan"), 2, 8, optimizer="random")
