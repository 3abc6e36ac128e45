"""``bench cost-goal`` (issue 30's "same value for half the examples") and the promotion rules of research."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from evogm_bench import stats
from evogm_bench.cost_goal import Goal, evaluate, part_checkpoints
from evogm_bench.research.promotion import RacingScheduler, accuracy_standard_error

from evogm_opt import RandomSearch


def _record(name: str, seed: int, values: dict[int, float], dim: int = 4, n_val: int = 200) -> dict:
    """A bench-fidelity record whose true value is ``values[k]`` once k·N full evaluations' examples are spent."""
    trace = [{"evals": k * dim, "examples": k * dim * n_val, "true_of_best": v} for k, v in sorted(values.items())]
    budget = max(values) * dim
    return {
        "key": f"{name}|merge-f1-F200|{dim}|{budget}|{seed}|examples:22/3", "optimizer": name,
        "landscape": "merge-f1-F200", "dim": dim, "budget": budget, "seed": seed, "minimum": 22, "eta": 3,
        "sense": "max", "optimum_value": 0.85, "cost": "examples", "full_fidelity": n_val, "trace": trace,
    }  # fmt: skip


def _write(path: Path, cheap_at_half: float, ref_at_full: float, n: int = 12) -> Path:
    rng = np.random.default_rng(0)
    with path.open("w") as fh:
        for seed in range(n):
            noise = rng.normal(0, 0.002, 4)
            # the cheap one reaches at 5·N and 10·N what the reference reaches at 10·N and 20·N
            cheap = {5: cheap_at_half + noise[0], 10: cheap_at_half + 0.01 + noise[1], 20: 0.84}
            ref = {5: 0.5, 10: ref_at_full + noise[2], 20: ref_at_full + 0.01 + noise[3]}
            fh.write(json.dumps(_record("cheap", seed, cheap)) + "\n")
            fh.write(json.dumps(_record("ref", seed, ref)) + "\n")
    return path


def test_each_cell_reads_the_optimizer_at_half_the_cost_and_the_reference_at_all_of_it(tmp_path: Path):
    path = _write(tmp_path / "r.jsonl", cheap_at_half=0.78, ref_at_full=0.78)
    rows = evaluate([str(path)], Goal("cheap", "ref"))
    assert [r.cell for r in rows] == [("merge-f1-F200", 4, 40), ("merge-f1-F200", 4, 80)]
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for row, k in zip(rows, (10, 20)):
        cheap = [stats.value_at(r, 4 * k // 2) for r in records if r["optimizer"] == "cheap"]
        ref = [stats.value_at(r, 4 * k) for r in records if r["optimizer"] == "ref"]
        assert row.ours == pytest.approx(np.median(cheap)) and row.theirs == pytest.approx(np.median(ref))
        assert Goal("cheap", "ref").matches(row)


def test_a_cell_misses_when_the_median_is_lower_than_the_tolerance(tmp_path: Path):
    path = _write(tmp_path / "r.jsonl", cheap_at_half=0.76, ref_at_full=0.78)
    rows = evaluate([str(path)], Goal("cheap", "ref"))
    assert not any(Goal("cheap", "ref").matches(r) for r in rows)  # 0.02 lower, significantly
    assert all(r.verdict == "worse" for r in rows)
    assert all(Goal("cheap", "ref", tolerance=0.03).matches(r) is False for r in rows)  # significance still misses


def test_the_cli_prints_the_count_and_refuses_fractions_off_the_grid(tmp_path: Path, capsys):
    from evogm_bench import cli

    path = _write(tmp_path / "r.jsonl", cheap_at_half=0.78, ref_at_full=0.78)
    assert cli.main(["cost-goal", str(path), "--optimizer", "cheap", "--reference", "ref"]) == 0
    assert "all: matches in 2/2 cells (100 %); significantly lower in 0" in capsys.readouterr().out
    assert cli.main(["cost-goal", str(path), "--optimizer", "cheap", "--reference", "ref", "--fraction", "0.25"]) == 2
    assert "is not a whole number of N each" in capsys.readouterr().err
    with pytest.raises(ValueError):
        part_checkpoints([10, 20], 0.05)


def test_what_cannot_be_compared_is_refused_in_one_line(tmp_path: Path):
    path = _write(tmp_path / "r.jsonl", cheap_at_half=0.78, ref_at_full=0.78)
    with pytest.raises(ValueError, match="both 'ref'; name two"):
        Goal("ref", "ref")  # read against itself at two costs, every cell would match
    with pytest.raises(ValueError, match="fraction must be between 0 and 1"):
        Goal("cheap", "ref", fraction=1.5)
    other = json.loads(path.read_text().splitlines()[0])  # the same optimizer, seed and cell with other rungs
    (tmp_path / "other.jsonl").write_text(json.dumps({**other, "minimum": 66, "key": other["key"] + "x"}) + "\n")
    with pytest.raises(ValueError, match=r"cheap is recorded with minimum/eta \(22, 3\) and \(66, 3\)"):
        evaluate([str(path), str(tmp_path / "other.jsonl")], Goal("cheap", "ref"))
    plain = {k: v for k, v in other.items() if k != "cost"}  # a plain bench record: read on another axis
    (tmp_path / "plain.jsonl").write_text(json.dumps(plain) + "\n")
    with pytest.raises(ValueError, match="not a 'bench fidelity' record"):
        evaluate([str(tmp_path / "plain.jsonl")], Goal("cheap", "ref"))


def test_a_fraction_that_is_not_exact_in_floats_still_finds_its_cells(tmp_path: Path):
    """k·N·fraction computed in floats (90 × 0.7 = 62.999…) must not drop the cell."""
    path = tmp_path / "r.jsonl"
    with path.open("w") as fh:
        for seed in range(3):
            fh.write(json.dumps(_record("cheap", seed, {21: 0.8, 30: 0.8}, dim=3)) + "\n")
            fh.write(json.dumps(_record("ref", seed, {21: 0.5, 30: 0.8}, dim=3)) + "\n")
    rows = evaluate([str(path)], Goal("cheap", "ref", fraction=0.7), checkpoints=(30,))
    assert [r.cell for r in rows] == [("merge-f1-F200", 3, 90)]


# ------------------------------------------------------------------------ promotion rules of research


def test_the_standard_error_is_a_finite_population_one():
    se = accuracy_standard_error(np.array([0.5, 0.0, 1.0]), 50, 200)
    assert se[0] == pytest.approx(np.sqrt((26 / 52) * (26 / 52) / 50 * 150 / 199))
    assert se[1] > 0 and se[1] == pytest.approx(se[2])  # shrunk: no zero noise at 0 or 1
    assert accuracy_standard_error(np.array([0.7]), 200, 200)[0] == 0.0  # the whole set: no noise left


def _scheduler(z: float = 2.0) -> RacingScheduler:
    return RacingScheduler(RandomSearch(2, seed=0, maximize=True, popsize=9), full=200, minimum=22, eta=3, z=z)


def _run_generation(sched: RacingScheduler, first_rung: np.ndarray, later: float = 0.8) -> list[int]:
    """One generation with the given first-rung accuracies; returns how many rows each rung asked."""
    asked = []
    batch = sched.ask()
    asked.append(len(batch))
    sched.tell(batch.x, first_rung[: len(batch)])
    while sched.in_flight:
        batch = sched.ask()
        asked.append(len(batch))
        sched.tell(batch.x, np.full(len(batch), later))
    return asked


def test_racing_promotes_successive_halvings_share_before_an_incumbent_exists():
    sched = _scheduler()
    assert sched.rungs == (22, 66, 200)
    assert _run_generation(sched, np.linspace(0.1, 0.9, 9)) == [9, 3, 1]


def test_racing_stops_only_candidates_whose_bound_misses_the_incumbent():
    sched = _scheduler()
    _run_generation(sched, np.linspace(0.1, 0.9, 9), later=0.8)  # incumbent: 0.8 at full fidelity
    # at 22 examples the standard error of 0.7 is about 0.09: 0.7 and 0.75 can still reach 0.8, 0.3 cannot
    first = np.array([0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.7, 0.75, 0.3])
    assert _run_generation(sched, first, later=0.75) == [9, 2, 2]
    assert sched.recommend().y == pytest.approx(0.8)  # the best full-fidelity value stays the recommendation
    # no candidate can reach the incumbent: the best one still goes on, so the generation reaches full fidelity
    assert _run_generation(sched, np.full(9, 0.2)) == [9, 1, 1]
    # a smaller z stops more
    narrow = _scheduler(z=0.5)
    _run_generation(narrow, np.linspace(0.1, 0.9, 9), later=0.8)
    assert _run_generation(narrow, first, later=0.75) == [9, 1, 1]


def test_racing_refuses_values_to_minimise():
    with pytest.raises(ValueError, match="accuracies to maximise"):
        RacingScheduler(RandomSearch(2, seed=0), full=200, minimum=22)


def test_shrinkage_ranks_by_the_value_pulled_toward_the_surrogate():
    """Two candidates measured equal at the lowest rung: the one where the GP of full-fidelity values predicts more
    goes on. Before the GP has ``min_points`` values, successive halving's order."""
    from evogm_bench.research.promotion import ShrinkageScheduler

    sched = ShrinkageScheduler(RandomSearch(1, seed=0, maximize=True, popsize=6), full=200, minimum=22, eta=3)
    x = np.array([[-0.8], [-0.2], [0.2], [0.8]])
    assert sched.promote(np.array([-0.5, -0.4, -0.6, -0.5]), 0, x).tolist() == [2]  # no GP yet: the best at the rung
    while (sched.measurements.fidelity == 200).sum() < 6:  # full-fidelity values rising with x: 0.2 … 0.9
        batch = sched.ask()
        sched.tell(batch.x, 0.55 + 0.35 * batch.x[:, 0])
    chosen = sched.promote(np.array([-0.5, -0.5, -0.5, -0.5]), 0, x)
    assert chosen.tolist() == [3]  # ⌊4/3⌋ = 1: the tie goes to where the GP says the value is highest
    chosen = sched.promote(np.array([-0.5, -0.5, -0.5, -0.5]), 0, x[::-1])
    assert chosen.tolist() == [0]


def test_full_start_measures_the_first_generation_in_full_then_halves():
    from evogm_bench.research.promotion import FullStartScheduler

    inner = RandomSearch(2, seed=0, maximize=True, popsize=9)
    sched = FullStartScheduler(inner, full=200, minimum=22, eta=3, nested=True)
    assert sched.generation_cost(9) == 9 * 200
    assert _run_generation(sched, np.linspace(0.1, 0.9, 9)) == [9, 9, 9]
    assert sched.generation_cost(9) == 9 * 22 + 3 * 44 + 1 * 134  # successive halving's from now on
    assert _run_generation(sched, np.linspace(0.1, 0.9, 9)) == [9, 3, 1]


def test_the_curve_is_the_mean_over_landscapes_of_each_checkpoints_median(tmp_path: Path, capsys):
    from evogm_bench import cli

    path = _write(tmp_path / "r.jsonl", cheap_at_half=0.78, ref_at_full=0.70)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert cli.main(["cost-goal", str(path), "--optimizer", "cheap", "--reference", "ref", "--curve"]) == 0
    text = capsys.readouterr().out
    for name in ("ref", "cheap"):
        medians = [np.median([stats.value_at(r, 4 * k) for r in records if r["optimizer"] == name]) for k in (10, 20)]
        assert f"| {name} | 4 | {medians[0]:.3f} (1) | {medians[1]:.3f} (1) |" in text


def test_research_rules_write_no_checkpoints(tmp_path: Path):
    """A checkpoint would resume as plain halving without the rule's settings: refused instead."""
    from evogm_bench.research.promotion import FullStartScheduler, ShrinkageScheduler

    for cls in (RacingScheduler, ShrinkageScheduler, FullStartScheduler):
        sched = cls(RandomSearch(2, seed=0, maximize=True), full=200, minimum=22)
        with pytest.raises(NotImplementedError, match="writes no checkpoints"):
            sched.save(tmp_path / "x.ckpt")
        assert not (tmp_path / "x.ckpt").exists()


def test_non_inferiority_is_shown_only_where_the_values_stay_within_the_margin(tmp_path: Path):
    from evogm_bench.cost_goal import goal_cells, noninferiority

    goal = Goal("cheap", "ref")
    level = goal_cells([str(_write(tmp_path / "a.jsonl", cheap_at_half=0.78, ref_at_full=0.78))], goal)
    shown = noninferiority(level, goal)
    assert len(shown) == 2 and all(p < 0.05 for p in shown.values())  # noise 0.002, margin 0.005, 12 seeds
    lower = goal_cells([str(_write(tmp_path / "b.jsonl", cheap_at_half=0.772, ref_at_full=0.78))], goal)
    assert all(p > 0.05 for p in noninferiority(lower, goal).values())  # 0.008 lower: outside the margin
    # one-sided: the Holm-adjusted p of each cell, from scipy's test on the values plus the margin
    cell = sorted(level)[0]
    ours = np.array(list(level[cell].values["cheap"].values())) + 0.005
    theirs = np.array(list(level[cell].values["ref"].values()))
    from scipy import stats as scipy_stats

    raw = [scipy_stats.mannwhitneyu(ours, theirs, alternative="greater").pvalue]
    raw.append(
        scipy_stats.mannwhitneyu(
            np.array(list(level[sorted(level)[1]].values["cheap"].values())) + 0.005,
            np.array(list(level[sorted(level)[1]].values["ref"].values())),
            alternative="greater",
        ).pvalue
    )
    assert shown[cell] == pytest.approx(stats.holm(raw)[0])


def test_the_ceiling_rule_rounds_the_share_up_and_sizes_generations_for_it():
    from evogm_bench.research.promotion import CeilingScheduler

    inner = RandomSearch(2, seed=0, maximize=True, popsize=16)
    sched = CeilingScheduler(inner, full=200, minimum=22, eta=3, nested=True)
    assert sched.generation_cost(16) == 16 * 22 + 6 * 44 + 2 * 134
    assert _run_generation(sched, np.linspace(0.1, 0.9, 16)) == [16, 6, 2]
