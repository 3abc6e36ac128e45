"""Vector-valued tells: weighted-mean search, a non-dominated archive (moocore), picks by weights, exact resume."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("moocore", reason="the Pareto archive needs the `mo` extra")

from evogm_opt import CMAES, GenerativeOptimizer, Optimizer
from evogm_opt.pareto import ParetoArchive


def two_tasks(x: np.ndarray) -> np.ndarray:
    """Two conflicting 'task accuracies' (to maximise): one peaks at +0.5, the other at -0.5."""
    return np.stack([1 - np.sum((x - 0.5) ** 2, axis=1), 1 - np.sum((x + 0.5) ** 2, axis=1)], axis=1)


def test_archive_keeps_exactly_the_non_dominated_rows_by_hand():
    archive = ParetoArchive(dim=1, n_objectives=2, maximize=True)
    x = np.arange(5.0)[:, None]
    values = np.array([[1, 5], [2, 4], [2, 3], [np.nan, 9], [3, 1]])  # [2,3] dominated by [2,4]; NaN row ignored
    archive.add(x, values, np.arange(1, 6))
    assert archive.values.tolist() == [[1, 5], [2, 4], [3, 1]] and archive.evaluations.tolist() == [1, 2, 5]
    archive.add(np.array([[9.0]]), np.array([[3, 4]]), np.array([6]))  # dominates [2,4] and [3,1]
    assert archive.values.tolist() == [[1, 5], [3, 4]]
    assert archive.pick([1, 0]).evaluation == 6 and archive.pick([0, 1]).evaluation == 1
    assert archive.pick([1, 1]).values.tolist() == [3, 4]
    assert archive.hypervolume([0, 0]) == pytest.approx(3 * 4 + 1 * 1)  # union of boxes [0,3]×[0,4] and [0,1]×[0,5]
    with pytest.raises(ValueError, match="non-negative"):
        archive.pick([1, -1])


@pytest.mark.parametrize(
    "make", [lambda: GenerativeOptimizer(3, seed=0, maximize=True), lambda: CMAES(3, seed=0, maximize=True)]
)
def test_vector_tells_search_the_weighted_mean_and_archive_the_front(make, tmp_path):
    opt = make()
    opt.objective_weights = np.array([3.0, 1.0])
    for _ in range(8):
        x = opt.ask()
        y = two_tasks(x)
        opt.tell(x, y)
    assert opt.n_objectives == 2 and len(opt.archive) >= 2
    # the best by the weighted mean is on the front, and is what best reports
    front = opt.archive.values
    weighted = front @ np.array([0.75, 0.25])
    assert opt.best.y == pytest.approx(weighted.max())
    # the front is mutually non-dominated
    for i in range(len(front)):
        others = np.delete(front, i, axis=0)
        assert not np.any(np.all(others >= front[i], axis=1) & np.any(others > front[i], axis=1))
    # exact resume, archive included
    opt.save(tmp_path / "mo.ckpt")
    again = Optimizer.load(tmp_path / "mo.ckpt")
    np.testing.assert_array_equal(again.archive.values, opt.archive.values)
    np.testing.assert_array_equal(again.objective_weights, opt.objective_weights)
    x1, x2 = opt.ask(), again.ask()
    np.testing.assert_array_equal(x1, x2)
    opt.tell(x1, two_tasks(x1))
    again.tell(x2, two_tasks(x2))
    np.testing.assert_array_equal(again.archive.values, opt.archive.values)


def test_vector_tell_errors_change_nothing():
    opt = GenerativeOptimizer(2, seed=0, maximize=True)
    x = opt.ask()
    opt.tell(x, two_tasks(x))
    x = opt.ask()
    with pytest.raises(ValueError, match="told 2 before"):
        opt.tell(x, np.ones((len(x), 3)))
    opt.objective_weights = [1.0, -1.0]
    with pytest.raises(ValueError, match="objective_weights"):
        opt.tell(x, two_tasks(x))
    assert opt.n_evals == opt.popsize and opt.n_pending == len(x)
    opt.objective_weights = None
    y = two_tasks(x)
    y[0, 1] = np.nan  # one task failed: the whole row is a failed evaluation
    opt.tell(x, y)
    assert opt.n_failed == 1
