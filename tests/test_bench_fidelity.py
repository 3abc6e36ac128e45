"""The bench measures cost (issue 30, item 3): landscapes observed at n examples, runs charged in examples."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from evogm_bench import stats
from evogm_bench.cost import CostEvaluator, CostSpec, run_cost
from evogm_bench.landscapes import _MergeAccuracy, make_landscape
from evogm_bench.multifidelity import FIDELITY_PEERS, Fidelity, SuccessiveHalving
from evogm_bench.peers import BudgetExhausted
from evogm_bench.runner import RunSpec, run_one

from evogm_opt.fidelity import rung_fidelities

ROOT = Path(__file__).parents[1]
TIMES = ("wall_s", "overhead_s")


def _observe_before_fidelity(self, u, rng):
    """``_MergeAccuracy.observe`` as it was before fidelity existed (commit 2d9fa35), the reference for 'no record
    changes'."""
    if self.noise == "F":
        p = np.clip(self.true_value(u) + self.field_sigma * self.val_field(u), 0.0, 1.0)
        return np.round(self.n_val * p) / self.n_val
    return rng.binomial(self.n_val, self.true_value(u)) / self.n_val


@pytest.mark.parametrize(
    "spec",
    [
        RunSpec("random", "merge-f10-F200", 3, 30, 0),
        RunSpec("cmaes", "merge-f15-R200", 3, 30, 1),
        RunSpec("random", "mergegroup-f7-F100-g2", 4, 20, 2),
    ],
    ids=lambda s: s.key,
)
def test_a_plain_bench_record_is_the_same_as_before_fidelity(spec, monkeypatch):
    now = {k: v for k, v in run_one(spec).items() if k not in TIMES}
    monkeypatch.setattr(_MergeAccuracy, "observe", _observe_before_fidelity)
    before = {k: v for k, v in run_one(spec).items() if k not in TIMES}
    assert now == before


POINTS = np.array([[0.1, -0.2, 0.3, 0.0], [0.5, 0.5, -0.5, -0.25], [-0.9, 0.0, 0.7, 0.6], [0.33, 0.71, -0.12, -0.58]])
STORED = {  # computed on c9dd366, the commit before fidelity: POINTS and 0.95·x_opt, N = 4, observed with rng(5)
    ("merge-f10-F200", 0): {
        "observe": [0.275, 0.315, 0.485, 0.29, 0.895],
        "true": [0.2689125289785033, 0.31100121630860406, 0.439715858987083, 0.274389640974484, 0.849968019691924],
        "test": [0.29, 0.3, 0.455, 0.31, 0.845],
    },
    ("merge-f15-R200", 1): {
        "observe": [0.23, 0.305, 0.295, 0.21, 0.675],
        "true": [0.2723597382280813, 0.3185365079158091, 0.25354726187794097, 0.2565988466075256, 0.6636503748278395],
        "test": [0.28, 0.315, 0.23, 0.24, 0.655],
    },
    ("mergegroup-f7-F100-g2", 2): {
        "observe": [0.3, 0.26, 0.29, 0.26, 0.83],
        "true": [0.2634845751243241, 0.27276053606518724, 0.2866613646776691, 0.27657643031179086, 0.8471168361670675],
        "test": [0.27, 0.27, 0.28, 0.26, 0.85],
    },
}


@pytest.mark.parametrize(("name", "seed"), sorted(STORED), ids=lambda v: str(v))
def test_observations_are_the_values_stored_before_fidelity_existed(name, seed):
    """Exact values written down on the commit before fidelity (not recomputed by a formula in this process), so a
    change to anything the plain bench observes through — the fields, the true value, the rounding — is caught;
    and the fixed set scored on all its examples is the stored value too."""
    landscape = make_landscape(name, 4, seed=seed)
    x = np.concatenate([POINTS, 0.95 * landscape.x_opt.reshape(1, -1)])
    stored = STORED[(name, seed)]
    assert landscape.observe(x, np.random.default_rng(5)).tolist() == stored["observe"]
    assert landscape.true_value(x).tolist() == stored["true"]
    assert landscape.test_value(x).tolist() == stored["test"]
    if landscape.noise == "F":
        assert landscape.observe(x, None, landscape.n_val).tolist() == stored["observe"]
    assert "_validation_items" not in {f.name for f in dataclasses.fields(landscape)}  # not a field: no record sees it


def test_the_fixed_set_scored_on_prefixes_nests_and_in_full_is_todays_value_exactly():
    landscape = make_landscape("merge-f10-F200", 4, seed=3)
    rng = np.random.default_rng(0)
    u = np.concatenate([rng.uniform(-1, 1, (20, 4)), 0.95 * landscape.x_opt.reshape(1, -1)])
    counts = np.array([landscape.correct(u, rng, n) for n in range(1, 201)])
    assert set(np.unique(np.diff(counts, axis=0))) <= {0, 1}  # one more example: one more right, or not
    assert np.array_equal(counts[-1] / 200, landscape.observe(u, rng))  # the whole set: exactly today's value
    assert np.array_equal(landscape.observe(u, rng, 200), landscape.observe(u, rng))
    assert np.array_equal(landscape.observe(u, rng, 25), counts[24] / 25)  # a prefix scores the same every time
    assert np.array_equal(landscape.extend(u, rng, 25, counts[24], 75), counts[74])


def test_the_fixed_sets_noise_shrinks_with_the_examples_and_vanishes_in_full():
    landscape = make_landscape("merge-f10-F200", 4, seed=0)
    rng = np.random.default_rng(1)
    u = rng.uniform(-1, 1, (300, 4))
    full = landscape.observe(u, rng)
    spread = [np.std(landscape.observe(u, rng, n) - full) for n in (25, 75, 200)]
    assert 0.03 < spread[0] and spread[1] < spread[0] and spread[2] == 0.0
    # without the finite-population shrinkage, binomial sd at n = 25 and p ≈ 0.3 would be 0.09: of that order
    assert spread[0] < 0.12


def test_fresh_examples_are_binomial_at_n_and_an_extension_adds_only_new_ones():
    landscape = make_landscape("merge-f15-R200", 3, seed=0)
    u = 0.9 * landscape.x_opt.reshape(1, -1)
    p = float(landscape.true_value(u)[0])
    rng = np.random.default_rng(2)
    draws = np.array([landscape.observe(u, rng, 25)[0] for _ in range(4000)])
    assert abs(draws.mean() - p) < 0.01 and abs(draws.var() - p * (1 - p) / 25) < 0.2 * p * (1 - p) / 25
    first = landscape.correct(u, rng, 25)
    extended = landscape.extend(u, rng, 25, first, 200)
    assert first[0] <= extended[0] <= first[0] + 175
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    assert np.array_equal(landscape.observe(u, a), _observe_before_fidelity(landscape, u, b))


@pytest.mark.parametrize("n", [0, 201, 2.5])
def test_a_fidelity_off_the_validation_set_is_refused(n):
    landscape = make_landscape("merge-f10-F200", 2, seed=0)
    with pytest.raises(ValueError, match="a fidelity is 1 … n_val = 200 examples"):
        landscape.observe(np.zeros((1, 2)), np.random.default_rng(0), np.array(n))


def test_a_promotion_is_charged_only_its_new_examples_and_the_budget_is_never_passed():
    landscape = make_landscape("merge-f10-F200", 3, seed=0)
    ev = CostEvaluator(landscape, 2, np.random.default_rng(0))  # 400 examples
    x = np.array([[0.1, -0.2, 0.3], [0.5, 0.5, -0.5]])
    low = ev.measure(x, 25, keys=["a", "b"])
    assert ev.examples == 50 and ev.n_evals == 2 and ev.best_x is None  # nothing measured in full yet
    high = ev.measure(x[:1], 75, keys=["a"])
    assert ev.examples == 100  # 50 new examples, not 75
    assert np.array_equal(high, landscape.correct(x[:1], None, 75) / 75)
    assert low[0] == landscape.observe(x[:1], None, 25)[0]
    ev.measure(x[:1], 200, keys=["a"])
    assert ev.examples == 225 and np.array_equal(ev.best_x, x[0])
    with pytest.raises(BudgetExhausted):
        ev.measure(x, 200)  # 400 more: over the budget, and nothing is charged
    assert ev.examples == 225 and ev.n_evals == 4


def test_a_peer_that_names_too_few_or_too_many_candidates_is_told_so():
    ev = CostEvaluator(make_landscape("merge-f10-F200", 3, seed=0), 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"^a peer named 1 candidates \(keys\) for 2 points; one key per row$"):
        ev.measure(np.zeros((2, 3)), 25, keys=["a"])
    assert ev.examples == 0


def test_a_full_fidelity_peer_at_equal_cost_runs_exactly_as_on_the_plain_bench():
    plain = run_one(RunSpec("random", "merge-f15-R200", 3, 30, 1))
    cost = run_cost(CostSpec("random", "merge-f15-R200", 3, 30, 1, 22, 3))
    assert cost["examples"] == 30 * 200 and cost["evals"] == 30
    assert [e["true_of_best"] for e in cost["trace"]] == [e["true_of_best"] for e in plain["trace"]]
    assert [e["examples"] for e in cost["trace"]] == [200 * e["evals"] for e in plain["trace"]]
    assert stats.value_at(cost, 20) == stats.value_at(plain, 20)  # read at equal cost: 20 evaluations' worth


def test_the_scheduler_counts_the_examples_the_bench_charges():
    landscape = make_landscape("merge-f10-F200", 3, seed=0)
    ev = CostEvaluator(landscape, 30, np.random.default_rng([0, 99]))
    peer = SuccessiveHalving("random", 3, 0, ev.max_examples, Fidelity(200, 22, 3))
    peer.run(ev)
    assert peer.scheduler.examples == ev.examples and peer.scheduler.n_evals == ev.n_evals
    assert ev.max_examples - 200 < ev.examples <= ev.max_examples  # stopped when one more candidate did not fit


@pytest.mark.parametrize("name", sorted(FIDELITY_PEERS))
def test_every_multi_fidelity_peer_spends_its_examples_and_is_scored_at_equal_cost(name, monkeypatch):
    """One smoke run per peer (the slow ones included: one run each, never a grid); every peer measures at the
    same rungs, the core scheduler's, and at each of them."""
    if not FIDELITY_PEERS[name].available:
        pytest.skip(f"optional peer not installed: {FIDELITY_PEERS[name].missing_note}")
    asked: set[int] = set()
    measure = CostEvaluator.measure

    def spy(self, x, n, keys=None):
        asked.update(np.broadcast_to(np.asarray(n), (len(np.atleast_2d(x)),)).tolist())
        return measure(self, x, n, keys)

    monkeypatch.setattr(CostEvaluator, "measure", spy)
    record = run_cost(CostSpec(name, "merge-f10-F200", 3, 30, 0, 22, 3))
    assert asked == {22, 66, 200}  # not 198 (a rung just below full), nor SMAC's 67
    assert Fidelity(200, 22, 3).rungs == (22, 66, 200) == rung_fidelities(200, 22, 3)
    assert 30 * 200 - 200 < record["examples"] <= 30 * 200
    assert record["evals"] > 30  # more measurements than 30 full evaluations: most were cheaper
    assert record["final"]["examples"] == record["examples"]
    assert 0.25 <= stats.value_at(record, 30) <= record["optimum_value"] + 1e-12
    examples = [e["examples"] for e in record["trace"]]
    assert examples == sorted(examples) and len(set(examples)) == len(examples)


def test_fidelity_settings_are_checked():
    with pytest.raises(ValueError, match="the fewest examples per candidate must be 1 … n_val = 200, got 201"):
        Fidelity(200, 201, 3)
    with pytest.raises(ValueError, match="eta must be an integer >= 2, got 1"):
        Fidelity(200, 20, 1)


def _bench(*args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "evogm_opt.cli", "bench", "fidelity", *args]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)


def test_bench_fidelity_runs_at_equal_cost_and_reports(tmp_path: Path):
    out = tmp_path / "f.jsonl"
    common = ["--landscapes", "merge-f10-F200", "--dims", "2", "--budgets", "5", "--seeds", "1", "--workers", "1"]
    run = _bench("--optimizers", "random", "sh-random", *common, "--out", str(out), "--quiet")
    assert run.returncode == 0, run.stderr
    assert "At equal cost" in run.stdout and "| landscape | N | evals | random | sh-random |" in run.stdout
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and all('"cost": "examples"' in line and '"examples":' in line for line in lines)
    again = _bench("--optimizers", "random", "sh-random", *common, "--out", str(out), "--quiet")
    assert again.returncode == 0 and len(out.read_text().splitlines()) == 2  # finished runs are kept, not redone


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--landscapes", "bbob-f1"], "has no validation examples"),
        (["--min-examples", "500"], "--min-examples 500 is more than merge-f10-F200's 200 validation examples"),
        (["--optimizers", "no-such"], "unknown optimizer 'no-such'; multi-fidelity: sh-evogm"),
        (["--eta", "1"], "must be an integer >= 2"),
    ],
)
def test_bench_fidelity_refuses_a_bad_argument_in_one_line(tmp_path: Path, args, says):
    run = _bench(*args, "--out", str(tmp_path / "f.jsonl"))
    assert run.returncode == 2 and says in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert not (tmp_path / "f.jsonl").exists()


def test_a_bench_run_keeps_joblib_on_its_own_thread():
    """SMAC3's random forest asks joblib for every core (n_jobs=-1). In threads a smac-mf run's result depended on
    how the threads ran (the same seed gave 0.840 and 0.841 under different loads, and differs from the sequential
    run); sequential it is the same every time. ``one_thread`` makes joblib sequential."""
    import threading

    from evogm_bench.runner import one_thread

    joblib = pytest.importorskip("joblib")

    def where() -> int:
        return threading.get_ident()

    with one_thread():  # two jobs asked for (not -1, which a one-core machine would run sequentially anyway)
        inside = joblib.Parallel(n_jobs=2, require="sharedmem")(joblib.delayed(where)() for _ in range(8))
    assert set(inside) == {threading.get_ident()}
    outside = joblib.Parallel(n_jobs=2, require="sharedmem")(joblib.delayed(where)() for _ in range(8))
    assert threading.get_ident() not in set(outside)  # restored: threads again after the block
