"""A checkpoint whose state no run could have written is refused at load, in one line naming the file and the
field. Each tampered state is re-saved through the ordinary save path, so its checksum is valid and it is the
invariant check, not the checksum, that refuses it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from evogm_opt import CMAES, GenerativeOptimizer, ModelSwarms, Optimizer, PSOMerging, RandomSearch
from evogm_opt._state import save_state


def _drive(opt: Optimizer, generations: int, pending: int = 0) -> Optimizer:
    for _ in range(generations):
        x = opt.ask()
        opt.tell(x, [float(np.sum((r - 0.3) ** 2)) for r in x])
    if pending:
        opt.ask(pending)
    return opt


def _random() -> Optimizer:
    return _drive(RandomSearch(4, bounds=(-2.0, 2.0), seed=0), 2, pending=4)


def _default() -> Optimizer:
    return _drive(GenerativeOptimizer(3, seed=0), 3)


def _paper() -> Optimizer:
    return _drive(GenerativeOptimizer(3, preset="paper", seed=0, popsize=4), 2)


def _cmaes() -> Optimizer:
    return _drive(CMAES(3, seed=0), 2, pending=2)


def _pso() -> Optimizer:
    return _drive(PSOMerging(3, seed=0), 2, pending=2)


def _swarms() -> Optimizer:
    return _drive(ModelSwarms(3, seed=0), 2, pending=2)


def _set(part: str, key: str, value) -> Callable[[dict], None]:
    def edit(state: dict) -> None:
        state[part][key] = value(state[part][key]) if callable(value) else value

    return edit


def _best(key: str, value) -> Callable[[dict], None]:
    def edit(state: dict) -> None:
        best = state["core"]["best"]
        best[key] = value(best[key]) if callable(value) else value

    return edit


def _set_generator(key: str, value) -> Callable[[dict], None]:
    def edit(state: dict) -> None:
        generators = state["algorithm"]["generators"]
        generators[key] = value(generators[key])

    return edit


def _nan_at(index):
    def put(array):
        array = np.array(array, dtype=float)
        array[index] = np.nan
        return array

    return put


CASES = [
    # core, every optimizer
    ("n_evals negative", _random, _set("core", "n_evals", -3), "core.n_evals"),
    ("n_evals not an integer", _random, _set("core", "n_evals", 8.5), "core.n_evals"),
    ("n_failed negative", _random, _set("core", "n_failed", -1), "core.n_failed"),
    ("n_asked not an integer", _random, _set("core", "n_asked", "12"), "core.n_asked"),
    ("n_evals not the recorded rows", _random, _set("core", "n_evals", 9), "core.told_y"),
    ("n_failed above n_evals", _random, _set("core", "n_failed", 9), "core.n_failed"),
    ("best.y NaN", _random, _best("y", float("nan")), "core.best.y"),
    ("best.y inf", _random, _best("y", float("inf")), "core.best.y"),
    ("best.x wrong length", _random, _best("x", lambda x: np.asarray(x)[:3]), "core.best.x"),
    ("best.x outside the bounds", _random, _best("x", lambda x: np.asarray(x) + 10.0), "core.best.x"),
    ("best.evaluation 0", _random, _best("evaluation", 0), "core.best.evaluation"),
    ("best.evaluation beyond n_evals", _random, _best("evaluation", 99), "core.best.evaluation"),
    ("pending_x with 3 columns", _random, _set("core", "pending_x", lambda p: np.asarray(p)[:, :3]), "core.pending_x"),
    ("pending_x NaN", _random, _set("core", "pending_x", _nan_at((0, 1))), "core.pending_x"),
    ("pending_x outside", _random, _set("core", "pending_x", lambda p: np.asarray(p) * 3.0), "core.pending_x"),
    ("payload width", _default, _set("core", "pending_payload", np.zeros((0, 2))), "core.pending_payload"),
    # EvoGM, default preset
    ("default noise NaN", _default, _set("algorithm", "noise", float("nan")), "algorithm.noise"),
    ("default noise negative", _default, _set("algorithm", "noise", -0.1), "algorithm.noise"),
    ("default history x NaN", _default, _set("algorithm", "hist_u", _nan_at((1, 0))), "algorithm.hist_u"),
    ("default history c NaN", _default, _set("algorithm", "hist_c", _nan_at((0, 2))), "algorithm.hist_c"),
    ("default history y NaN", _default, _set("algorithm", "hist_y", _nan_at(0)), "algorithm.hist_y"),
    ("default basis NaN", _default, _set("algorithm", "basis", _nan_at((0, 0))), "algorithm.basis"),
    ("default queue NaN", _default, _set("algorithm", "queue", lambda q: np.full((2, 3), np.nan)), "algorithm.queue"),
    # EvoGM, paper preset
    ("paper iteration -7", _paper, _set("algorithm", "iteration", -7), "algorithm.iteration"),
    ("paper round -1", _paper, _set("algorithm", "round", -1), "algorithm.round"),
    ("paper round beyond n_rounds", _paper, _set("algorithm", "round", 5), "algorithm.round"),
    ("paper iteration beyond T", _paper, _set("algorithm", "iteration", 40), "algorithm.iteration"),
    ("paper generator NaN", _paper, _set_generator("weights", _nan_at(0)), "algorithm.generators.weights"),
    ("paper generator cut", _paper, _set_generator("weights", lambda w: np.asarray(w)[:-16]), "generators.weights"),
    ("paper adam moment cut", _paper, _set_generator("adam_exp_avg", lambda m: np.asarray(m)[:5]), "adam_exp_avg"),
    # CMA-ES
    ("cmaes told_x NaN", _cmaes, _set("algorithm", "told_x", _nan_at((0, 0))), "algorithm.told_x"),
    ("cmaes told_x shape", _cmaes, _set("algorithm", "told_x", lambda t: np.asarray(t)[:, :2]), "algorithm.told_x"),
    ("cmaes told_y NaN", _cmaes, _set("algorithm", "told_y", _nan_at(0)), "algorithm.told_y"),
    ("cmaes huge ask log", _cmaes, _set("algorithm", "op_log", np.array([10**9])), "algorithm.op_log"),
    # swarms and random search
    ("pso x NaN", _pso, _set("algorithm", "x", _nan_at((0, 0))), "algorithm.x"),
    ("pso v wrong shape", _pso, _set("algorithm", "v", lambda v: np.asarray(v)[:2]), "algorithm.v"),
    ("pso told_count negative", _pso, _set("algorithm", "told_count", -2), "algorithm.told_count"),
    ("swarms pbest inf", _swarms, _set("algorithm", "pbest", _nan_at((1, 1))), "algorithm.pbest"),
    ("swarms gbest_y NaN", _swarms, _set("algorithm", "gbest_y", float("nan")), "algorithm.gbest_y"),
    ("swarms generation negative", _swarms, _set("algorithm", "generation", -1), "algorithm.generation"),
    ("random rng garbage", _random, _set("core", "rng", {"bit_generator": "NoSuchGenerator"}), "bit generator"),
]


@pytest.mark.parametrize("what, make, edit, field", CASES, ids=[c[0] for c in CASES])
def test_an_impossible_state_is_refused_naming_file_and_field(tmp_path: Path, what, make, edit, field):
    opt = make()
    state = opt.state_dict()
    edit(state)
    path = tmp_path / "run.ckpt"
    save_state(path, state)  # the public save path: a valid checksum over the tampered state
    with pytest.raises(ValueError) as info:
        Optimizer.load(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: "), message
    assert field in message, message
    # the same state in memory: the field is named, without a path
    with pytest.raises(ValueError) as info:
        type(opt).from_state_dict(state)
    assert field in str(info.value) and str(path) not in str(info.value)


@pytest.mark.parametrize("make", [_random, _default, _paper, _cmaes, _pso, _swarms])
def test_an_honest_state_still_loads_and_resumes_exactly(tmp_path: Path, make):
    opt = make()
    path = tmp_path / "run.ckpt"
    opt.save(path)
    resumed = Optimizer.load(path)
    np.testing.assert_array_equal(resumed.ask(3), opt.ask(3))


def test_a_nan_step_size_would_have_asked_nan_rows():
    """Why the default preset's noise is checked: loaded as it was, the next asks are NaN, clipped to a face."""
    opt = _default()
    state = opt.state_dict()
    state["algorithm"]["noise"] = float("nan")
    with pytest.raises(ValueError, match=r"algorithm\.noise .*finite"):
        GenerativeOptimizer.from_state_dict(state)
