"""Item 1 of issue 27 for ``minimize``: a checkpoint at the given path is resumed only if it is this call's run."""

from __future__ import annotations

import numpy as np
import pytest

from evogm_opt import minimize


def sphere(x: np.ndarray) -> float:
    return float(np.sum(x**2))


@pytest.mark.parametrize(
    ("first", "second", "says"),
    [
        ({"optimizer": "cmaes"}, {"optimizer": "random"}, "optimizer is 'cmaes', not 'random'"),
        ({"optimizer": "random", "seed": 1}, {"optimizer": "random", "seed": 2}, "seed is 1, not 2"),
        ({"optimizer": "random", "bounds": (-1, 1)}, {"optimizer": "random", "bounds": (-2, 2)}, "bounds is"),
        ({"optimizer": "evogm", "preset": "paper"}, {"optimizer": "evogm"}, "config is"),
    ],
)
def test_a_checkpoint_of_another_run_is_refused_in_one_line_and_kept(tmp_path, first, second, says):
    path = tmp_path / "run.ckpt"
    minimize(sphere, 3, 12, checkpoint=path, **{"seed": 0, **first})
    before = path.read_bytes()
    with pytest.raises(ValueError, match="belongs to another run") as info:
        minimize(sphere, 3, 24, checkpoint=path, **{"seed": 0, **second})
    assert says in str(info.value)
    assert "\n" not in str(info.value)
    assert path.read_bytes() == before  # nothing the user had is rewritten


def test_the_same_run_with_a_raised_budget_resumes_as_one_uninterrupted_run(tmp_path):
    path = tmp_path / "run.ckpt"
    minimize(sphere, 3, 14, optimizer="cmaes", seed=4, checkpoint=path)  # two whole generations of 7
    resumed = minimize(sphere, 3, 28, optimizer="cmaes", seed=4, checkpoint=path)
    straight = minimize(sphere, 3, 28, optimizer="cmaes", seed=4)
    assert resumed.n_evals == 28
    np.testing.assert_array_equal(resumed.optimizer.evaluations.x, straight.optimizer.evaluations.x)


def test_without_a_seed_the_checkpoints_own_seed_is_taken(tmp_path):
    path = tmp_path / "run.ckpt"
    first = minimize(sphere, 3, 12, optimizer="random", checkpoint=path)
    resumed = minimize(sphere, 3, 24, optimizer="random", checkpoint=path)
    assert resumed.optimizer.seed == first.optimizer.seed and resumed.n_evals == 24
