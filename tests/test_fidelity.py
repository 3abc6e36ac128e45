"""The core speaks fidelity (issue 30, item 1): successive halving inside a generation around any optimizer."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from evogm_opt import FidelityScheduler, GenerativeOptimizer, RandomSearch, load, optimize
from evogm_opt._state import save_state
from evogm_opt.fidelity import pessimistic_values, rung_fidelities
from tests.conftest import FACTORIES

ROOT = Path(__file__).parents[1]


def noisy_sphere(seed: int = 0, lucky: float = 0.0, full: int = 90):
    """A minimised sphere seen through noise that shrinks with the fidelity; ``lucky`` makes every value measured
    below ``full`` look that much better, the trap a scheduler must not fall into."""
    rng = np.random.default_rng(seed)

    def evaluate(batch):
        true = np.sum((batch.x - 0.3) ** 2, axis=1)
        noise = 0.3 * rng.standard_normal(len(true)) / np.sqrt(batch.fidelity)
        return true + noise - lucky * (batch.fidelity < full)

    return evaluate


def test_rungs_are_built_downward_from_the_full_fidelity_so_none_sits_just_below_it():
    assert rung_fidelities(200, 22, 3) == (22, 66, 200)  # not (22, 66, 198, 200): no near-duplicate top rung
    assert rung_fidelities(200, 25, 3) == (66, 200)  # the minimum is a floor: 200/9 is below it
    assert rung_fidelities(81, 1, 3) == (1, 3, 9, 27, 81)
    assert rung_fidelities(200, 200, 3) == (200,) == rung_fidelities(200, 67, 3)  # above full/η: one rung
    assert rung_fidelities(100, 50, 2) == (50, 100)
    for full, minimum, eta in [(200, 22, 3), (50, 2, 3), (1000, 7, 4), (17, 1, 2), (90, 10, 3)]:
        rungs = rung_fidelities(full, minimum, eta)
        assert rungs[0] >= minimum and rungs[-1] == full and rungs[-2] <= full / eta
        # rounded down: the first rung times η^k never passes rung k (where Optuna's Hyperband decides)
        assert all(rungs[0] * eta**k <= r for k, r in enumerate(rungs))


def test_a_generation_at_the_benchs_default_rungs_measures_a_third_of_its_finalists_in_full():
    sched = FidelityScheduler(RandomSearch(16, seed=0), full=200, minimum=22, eta=3, nested=True)
    assert sched.popsize == 32
    sizes, evaluate = [], noisy_sphere(full=200)
    while sched.inner.n_evals == 0:
        batch = sched.ask()
        sizes.append((len(batch), int(batch.fidelity[0])))
        sched.tell(batch.x, evaluate(batch))
    assert sizes == [(32, 22), (10, 66), (3, 200)]  # was 32@22, 10@66, 3@198, 1@200: two thrown away at 198
    assert sched.examples == 32 * 22 + 10 * 44 + 3 * 134


def test_a_generation_is_halved_rung_by_rung_and_a_promotion_extends_the_same_candidate():
    sched = FidelityScheduler(RandomSearch(2, seed=0, popsize=9), full=90, minimum=10, eta=3, nested=True)
    first = sched.ask()
    assert first.fidelity.tolist() == [10] * 9 and first.previous.tolist() == [0] * 9
    assert first.candidate.tolist() == list(range(9))
    values = np.arange(9.0)[::-1]  # minimised: the last three rows are best
    sched.tell(first.x, values, fidelity=first.fidelity)
    second = sched.ask()
    assert second.candidate.tolist() == [6, 7, 8]
    assert np.array_equal(second.x, first.x[6:]) and second.previous.tolist() == [10] * 3
    assert second.fidelity.tolist() == [30] * 3
    sched.tell(second.x, [3.0, 1.0, 2.0])
    third = sched.ask()
    assert third.candidate.tolist() == [7] and third.fidelity.tolist() == [90] and third.previous.tolist() == [30]
    assert sched.inner.n_evals == 0  # nothing told to the inner optimizer before the generation's last rung
    sched.tell(third.x, [0.5])
    assert sched.inner.n_evals == 9  # each candidate told once
    assert sched.ask().candidate.tolist() == list(range(9, 18))  # the next generation


def test_the_inner_optimizer_is_never_told_a_value_better_than_measured_and_keeps_the_order_found():
    sched = FidelityScheduler(RandomSearch(2, seed=1, popsize=9, maximize=True), full=90, minimum=10, eta=3)
    first = sched.ask()
    rung0 = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.95, 0.4, 0.5])  # maximised: rows 6, 0, 2 go on
    sched.tell(first.x, rung0)
    second = sched.ask()
    assert second.candidate.tolist() == [0, 2, 6]
    sched.tell(second.x, [0.6, 0.99, 0.5])  # a lucky 0.99 at 30 examples (row 2) goes on
    third = sched.ask()
    assert third.candidate.tolist() == [2]
    sched.tell(third.x, [0.55])  # and is 0.55 at full fidelity
    told = sched.inner.evaluations.y
    measured = np.array([0.6, 0.1, 0.55, 0.2, 0.7, 0.3, 0.5, 0.4, 0.5])  # each at its highest rung
    assert np.all(told <= measured)
    assert np.argmax(told) == 2 and told[2] == 0.55  # the best told value is the full-fidelity one, unchanged
    assert max(told[0], told[6]) < 0.55 and told[0] > told[6]  # rung-1 losers below it, in their order
    assert max(told[[1, 3, 4, 5, 7, 8]]) < min(told[0], told[6])  # rung-0 losers below every rung-1 one
    assert list(np.argsort(told[[1, 3, 4, 5, 7, 8]])) == list(np.argsort(rung0[[1, 3, 4, 5, 7, 8]]))
    assert sched.recommend().y == 0.55 and np.array_equal(sched.recommend().x, first.x[2])


def test_pessimistic_values_shift_a_group_below_those_promoted_and_tell_failures_as_failures():
    inf = np.inf
    # minimised: candidate 0 reached full (rung 2) at 1.0; 1 and 2 stopped at rung 1; 3, 4 and a failure at rung 0
    told = pessimistic_values(np.array([1.0, 0.2, 0.5, 0.0, 3.0, inf]), np.array([2, 1, 1, 0, 0, 0]), 2)
    assert told[0] == 1.0
    assert 1.0 < told[1] < told[2] and np.isclose(told[2] - told[1], 0.3)  # shifted together, spacing kept
    assert told[2] < told[3] and told[4] == 3.0 + (told[3] - 0.0)  # one shift for the whole rung-0 group
    assert told[5] == inf
    # everyone promoted failed: the eliminated cannot be ranked under a full-fidelity value, so they fail too
    assert np.all(pessimistic_values(np.array([inf, 0.1, 0.2]), np.array([1, 0, 0]), 1) == inf)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_best_and_the_recommendation_are_always_measured_at_full_fidelity(name):
    inner = FACTORIES[name](2, seed=3, popsize=9)
    sched = FidelityScheduler(inner, full=90, minimum=10, eta=3, max_examples=3000)
    optimize(sched, noisy_sphere(lucky=5.0))  # low-fidelity values look 5 better than any full one
    m = sched.measurements
    full = {row.tobytes() for row in m.x[m.fidelity == 90]}
    assert (m.fidelity < 90).sum() > (m.fidelity == 90).sum()
    for chosen in (sched.recommend(), sched.best, inner.best):
        assert chosen.x.tobytes() in full
    assert sched.recommend().y == m.y[sched.recommend().evaluation - 1]


@pytest.mark.parametrize("preset", ["default", "paper"])
def test_without_fidelity_settings_both_presets_ask_and_recommend_exactly_what_the_plain_optimizer_does(preset):
    plain = GenerativeOptimizer(3, preset=preset, seed=5)
    sched = FidelityScheduler(GenerativeOptimizer(3, preset=preset, seed=5), full=100)  # minimum = full: one rung
    assert sched.rungs == (100,)
    for _ in range(5):
        x = plain.ask()
        batch = sched.ask()
        assert np.array_equal(batch.x, x) and batch.fidelity.tolist() == [100] * len(x)
        y = [float(np.sum((r - 0.3) ** 2)) for r in x]
        plain.tell(x, y)
        sched.tell(batch.x, y, fidelity=batch.fidelity)
    assert np.array_equal(sched.ask().x, plain.ask())
    assert np.array_equal(sched.recommend().x, plain.recommend().x) and sched.recommend().y == plain.recommend().y
    assert np.array_equal(sched.inner.evaluations.y, plain.evaluations.y)


def test_one_rung_asks_what_the_optimizer_alone_asks_through_optimize_even_past_its_max_evals():
    def sphere(x):
        return np.sum((x - 0.3) ** 2, axis=1)

    plain = RandomSearch(2, seed=0, popsize=9, max_evals=20)
    plain_reason = optimize(plain, sphere)  # no loop budget: whole generations, 27 evaluations
    sched = FidelityScheduler(RandomSearch(2, seed=0, popsize=9, max_evals=20), full=7)
    reason = optimize(sched, lambda batch: sphere(batch.x))
    assert plain.n_evals == 27 == sched.inner.n_evals
    assert np.array_equal(sched.inner.evaluations.x, plain.evaluations.x) and reason == plain_reason
    assert np.array_equal(sched.recommend().x, plain.recommend().x)


def test_with_several_rungs_a_generation_is_asked_no_larger_than_the_inner_max_evals_leaves():
    sched = FidelityScheduler(RandomSearch(2, seed=0, popsize=9, max_evals=20), full=90, minimum=10, eta=3)
    optimize(sched, noisy_sphere())
    assert sched.inner.n_evals == 20  # 9 + 9 + 2: a generation cannot stop half-way, so it is sized up front


def test_a_loop_budget_that_ends_mid_generation_warns_once_and_a_later_run_finishes_it():
    sched = FidelityScheduler(RandomSearch(2, seed=0, popsize=9), full=90, minimum=10, eta=3)
    with pytest.warns(UserWarning, match=r"optimize ended \(evaluation budget: 20 of 20.*\) in the middle of a ") as w:
        optimize(sched, noisy_sphere(), budget=20)  # 9@10, 3@30, 1@90, then 7 of a second generation at 10
    assert len(w) == 1 and "its 7 candidates are not told to the inner optimizer yet" in str(w[0].message)
    assert sched.in_flight == 7 and sched.inner.n_evals == 9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optimize(sched, noisy_sphere(), budget=20 + 2 + 1)  # the rest of that generation: 2@30, 1@90
    assert sched.in_flight == 0 and sched.inner.n_evals == 16
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a budget that ends between generations says nothing
        optimize(
            FidelityScheduler(RandomSearch(2, seed=0, popsize=9), full=90, minimum=10, eta=3), noisy_sphere(), budget=13
        )


def test_the_one_loop_drives_a_plain_optimizer_as_before_and_a_scheduler_with_batches():
    def sphere(x):
        return np.sum((x - 0.3) ** 2, axis=1)

    plain = RandomSearch(2, seed=0)
    optimize(plain, sphere, budget=20)
    seen = []
    sched = FidelityScheduler(RandomSearch(2, seed=0), full=7)

    def measure(batch):
        seen.append(batch.fidelity)
        return sphere(batch.x)

    optimize(sched, measure, budget=20)
    assert np.array_equal(sched.inner.evaluations.x, plain.evaluations.x)
    assert all(np.all(f == 7) for f in seen) and sched.examples == 7 * 20


@pytest.mark.parametrize("nested", [True, False])
def test_examples_count_only_new_examples_when_measurements_nest(nested):
    sched = FidelityScheduler(RandomSearch(2, seed=0, popsize=9), full=90, minimum=10, eta=3, nested=nested)
    evaluate = noisy_sphere()
    for _ in range(3):  # one generation: 9 at 10, 3 at 30, 1 at 90
        batch = sched.ask()
        sched.tell(batch.x, evaluate(batch))
    expected = 9 * 10 + 3 * (30 - 10) + 1 * (90 - 30) if nested else 9 * 10 + 3 * 30 + 90
    assert sched.examples == expected == sched.generation_cost(9)
    assert sched.n_evals == 13 and len(sched.measurements) == 13


def test_the_example_budget_is_never_exceeded_and_the_last_generation_shrinks_to_fit():
    sched = FidelityScheduler(RandomSearch(2, seed=0, popsize=9), full=90, minimum=10, eta=3, max_examples=520)
    reason = optimize(sched, noisy_sphere())
    # nested=False: a generation of 9 costs 9·10 + 3·30 + 90 = 270; then 250 are left, where 9 do not fit but
    # 8 do (8·10 + 2·30 + 90 = 230); then 20 are left, less than one candidate's 10 + 30 + 90
    assert sched.inner.n_evals == 9 + 8 and sched.examples == 270 + 230
    assert reason == "example budget: 500 of 520 examples used" == sched.stop_reason


def test_the_inner_optimizers_default_rules_are_off_under_an_example_budget():
    sched = FidelityScheduler(RandomSearch(1, seed=0, popsize=4), full=4, max_examples=4 * 400)
    optimize(sched, lambda batch: np.zeros(len(batch)))  # never improves: 25 generations would stop a plain run
    assert sched.inner.n_evals == 400


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"eta": 1}, "eta must be an integer >= 2"),
        ({"eta": 2.5}, "got 2.5"),
        ({"minimum": 0}, "minimum must be an integer from 1 to full = 90 (examples), got 0"),
        ({"minimum": 91}, "got 91"),
        ({"full": 0, "minimum": None}, "full must be a positive integer (examples at full fidelity), got 0"),
        ({"max_examples": 0}, "max_examples must be a positive integer or None, got 0"),
        ({"nested": "yes"}, "nested must be True or False, got 'yes'"),
    ],
)
def test_bad_settings_are_refused_in_one_line_naming_the_value(settings, says):
    with pytest.raises(ValueError) as info:
        FidelityScheduler(RandomSearch(2, seed=0), **{"full": 90, "minimum": 10, **settings})
    assert says in str(info.value) and "\n" not in str(info.value)


def test_a_tell_that_was_not_asked_or_names_another_fidelity_is_refused_and_changes_nothing():
    sched = FidelityScheduler(RandomSearch(2, seed=0, popsize=3), full=90, minimum=10, eta=3)
    batch = sched.ask()
    before = sched.state_dict()
    with pytest.raises(ValueError, match="row 1 was asked at 10 examples but told at 30"):
        sched.tell(batch.x, [1.0, 2.0, 3.0], fidelity=[10, 30, 10])
    with pytest.raises(ValueError, match="row 0 is not a measurement this scheduler asked"):
        sched.tell(np.zeros((1, 2)), [1.0])
    with pytest.raises(RuntimeError, match="3 measurements at 10 examples are not told yet"):
        sched.ask()
    assert sched.n_evals == 0 and np.array_equal(
        sched.state_dict()["generation"]["pending"], before["generation"]["pending"]
    )


def test_several_values_per_row_are_refused_in_the_schedulers_own_words():
    sched = FidelityScheduler(RandomSearch(2, seed=0, popsize=3), full=90, minimum=10, eta=3)
    batch = sched.ask()
    with pytest.raises(ValueError) as info:
        sched.tell(batch.x, np.ones((3, 2)))
    message = str(info.value)
    assert message.startswith("y must be one value per row, shape (3,); got shape (3, 2): a FidelityScheduler")
    assert "K values per row" not in message and "\n" not in message
    sched.tell(batch.x, np.ones((3, 1)))  # one value per row as a column is still one value per row
    assert sched.n_evals == 3


def test_a_rung_told_in_parts_saved_in_the_middle_goes_on_exactly(tmp_path: Path):
    def run(stop_at: int | None) -> tuple[list[np.ndarray], FidelityScheduler]:
        sched = FidelityScheduler(RandomSearch(2, seed=4, popsize=9), full=90, minimum=10, eta=3, nested=True)
        evaluate, asks, step = noisy_sphere(seed=1), [], 0
        while len(asks) < 12:
            batch = sched.ask(2)  # a rung asked two rows at a time
            asks.append(batch.x)
            values = evaluate(batch)
            for i in range(len(batch)):  # and told one row at a time
                sched.tell(batch.x[i : i + 1], values[i : i + 1])
                step += 1
                if step == stop_at:
                    sched.save(tmp_path / "s.ckpt")
                    sched = FidelityScheduler.load(tmp_path / "s.ckpt")
        return asks, sched

    expected, whole = run(None)
    resumed, again = run(stop_at=10)  # in rung 1 of the first generation, one of its rows told
    assert all(np.array_equal(a, b) for a, b in zip(expected, resumed))
    assert again.examples == whole.examples and np.array_equal(again.recommend().x, whole.recommend().x)


KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import torch
    torch.set_num_threads(1)
    from evogm_opt import FidelityScheduler, optimize, registry
    from tests.conftest import FAST_CONFIG

    ckpt, out, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if os.path.exists(ckpt):
        sched = FidelityScheduler.load(ckpt)
    else:
        inner = registry.create("evogm", 3, preset="paper", config=FAST_CONFIG, seed=7, popsize=9)
        sched = FidelityScheduler(inner, full=90, minimum=10, eta=3, nested=True, max_examples=4000)
    asks = []

    def evaluate(batch):
        if sched.n_evals >= kill_at and batch.fidelity[0] == 30:
            os.kill(os.getpid(), signal.SIGKILL)  # a real interruption, between two rungs of a generation
        asks.append(np.column_stack([batch.x, batch.fidelity]))
        rng = np.random.default_rng(sched.n_evals)  # the measurement noise, a function of how far the run is
        return np.sum((batch.x - 0.3) ** 2, axis=1) + rng.normal(0, 0.3, len(batch)) / np.sqrt(batch.fidelity)

    optimize(sched, evaluate, checkpoint=ckpt)
    np.save(out, np.concatenate(asks))
    np.save(out + ".reco.npy", sched.recommend().x)
    """
)


def test_a_run_killed_mid_promotion_resumes_asking_and_recommending_exactly_what_the_uninterrupted_one_does(
    tmp_path: Path,
):
    def run(ckpt: Path, out: Path, kill_at: int) -> subprocess.CompletedProcess:
        args = [sys.executable, "-c", KILLED_RUN, str(ckpt), str(out), str(kill_at)]
        return subprocess.run(args, cwd=ROOT, capture_output=True, text=True)

    whole = run(tmp_path / "whole.ckpt", tmp_path / "whole.npy", 10**9)
    assert whole.returncode == 0, whole.stderr
    killed = run(tmp_path / "k.ckpt", tmp_path / "first.npy", 40)
    assert killed.returncode == -9 and not (tmp_path / "first.npy").exists()
    state = FidelityScheduler.load(tmp_path / "k.ckpt").state_dict()
    assert state["generation"]["rung"] == 1 and len(state["generation"]["queue"]) == 3  # mid-promotion
    resumed = run(tmp_path / "k.ckpt", tmp_path / "rest.npy", 10**9)
    assert resumed.returncode == 0, resumed.stderr
    expected, rest = np.load(tmp_path / "whole.npy"), np.load(tmp_path / "rest.npy")
    assert np.array_equal(expected[-len(rest) :], rest)
    assert np.array_equal(np.load(tmp_path / "whole.npy.reco.npy"), np.load(tmp_path / "rest.npy.reco.npy"))


def test_a_checkpoint_no_run_could_write_is_refused_naming_the_field(tmp_path: Path):
    sched = FidelityScheduler(RandomSearch(2, seed=0, popsize=9), full=90, minimum=10, eta=3)
    batch = sched.ask()
    sched.tell(batch.x, noisy_sphere()(batch))
    state = sched.state_dict()
    state["progress"]["examples"] += 1
    save_state(tmp_path / "bad.ckpt", state)
    with pytest.raises(ValueError, match=r"bad.ckpt: checkpoint field progress.examples is 91; the record"):
        FidelityScheduler.load(tmp_path / "bad.ckpt")
    sched.save(tmp_path / "good.ckpt")
    with pytest.raises(ValueError, match=r"holds a FidelityScheduler: load it with FidelityScheduler.load"):
        load(tmp_path / "good.ckpt")
    del state["inner"]
    save_state(tmp_path / "no-inner.ckpt", state)
    with pytest.raises(ValueError) as info:
        FidelityScheduler.load(tmp_path / "no-inner.ckpt")
    assert str(info.value) == (
        f"{tmp_path / 'no-inner.ckpt'}: FidelityScheduler state is incomplete or malformed: KeyError('inner')"
    )


def test_importing_the_scheduler_from_the_package_root_loads_no_torch():
    code = "import sys, evogm_opt; evogm_opt.FidelityScheduler; print('torch' in sys.modules, 'cma' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["False", "False"]


def test_the_api_pages_example_runs_within_its_budget():
    page = (ROOT / "docs" / "api.md").read_text()
    block = re.findall(r"```python\n(.*?)```", page[page.index("## Multi-fidelity") :], flags=re.S)[0]
    namespace: dict = {}
    exec(block, namespace)
    sched = namespace["sched"]
    assert 0 < sched.examples <= 10_000 and sched.recommend().evaluation >= 1
    assert sched.measurements.fidelity[sched.recommend().evaluation - 1] == 200


def test_promote_gets_each_rungs_rows_in_the_order_of_its_values():
    """The seam a surrogate-reading rule overrides: row i of ``points`` is the candidate whose value is values[i]."""
    seen = []

    class Recording(FidelityScheduler):
        def promote(self, values, rung, points):
            seen.append((rung, values.copy(), points.copy()))
            return super().promote(values, rung, points)

    sched = Recording(RandomSearch(2, seed=3, maximize=True, popsize=9), full=200, minimum=22, eta=3)
    value = {}
    while sched.in_flight or not seen:
        batch = sched.ask()
        y = 0.5 + 0.4 * np.tanh(batch.x[:, 0] - batch.x[:, 1])  # a value of the row itself, per rung
        y = y + 0.01 * batch.fidelity / 200
        for row, v in zip(batch.x, y):
            value[(row.tobytes(), int(batch.fidelity[0]))] = v
        sched.tell(batch.x, y)
    assert [rung for rung, _, _ in seen] == [0, 1]
    for rung, values, points in seen:
        expected = [-value[(row.tobytes(), sched.rungs[rung])] for row in points]  # minimised inside
        assert np.allclose(values, expected)
