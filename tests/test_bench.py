"""The synthetic bench: landscapes behave as documented; the runner, the report and the CLI do what they say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ioh
import numpy as np
import pytest
from evogm_bench import stats
from evogm_bench.landscapes import BBOBLandscape, MergeLikeLandscape, make_landscape, merge_suite
from evogm_bench.peers import PEERS
from evogm_bench.report import collect, markdown_report, plots
from evogm_bench.runner import Evaluator, RunSpec, finished_keys, run_grid, run_one, trace_grid


def test_bbob_landscape_is_ioh_on_the_scaled_box():
    ls = make_landscape("bbob-f10", 5, seed=2)
    problem = ioh.get_problem(10, instance=3, dimension=5, problem_class=ioh.ProblemClass.BBOB)
    u = np.random.default_rng(0).uniform(-1, 1, (7, 5))
    np.testing.assert_allclose(ls.true_value(u), [problem((5 * row).tolist()) for row in u])
    assert ls.sense == "min"
    assert ls.true_value(ls.x_opt)[0] == pytest.approx(ls.optimum_value)
    assert np.all(ls.true_value(u) > ls.optimum_value)


def test_sbox_is_a_different_problem_class():
    a, b = make_landscape("bbob-f10", 4, 0), make_landscape("sbox-f10", 4, 0)
    assert isinstance(b, BBOBLandscape) and b.problem_class == "SBOX"
    assert not np.allclose(a.x_opt, b.x_opt)


@pytest.mark.parametrize("name", merge_suite(noise=("F",)))
def test_merge_optimum_is_away_from_centre_and_one_hots_and_is_the_true_maximum(name):
    for dim, seed in [(2, 3), (4, 0), (8, 3), (16, 5)]:
        ls = make_landscape(name, dim, seed)
        corners = np.concatenate([np.zeros((1, dim)), np.eye(dim)])
        assert np.min(np.max(np.abs(corners - ls.x_opt), axis=1)) >= 0.25
        p_opt = ls.true_value(ls.x_opt)[0]
        assert p_opt == pytest.approx(ls.a_hi)
        others = np.random.default_rng(0).uniform(-1, 1, (500, dim))
        assert np.all(ls.true_value(others) < p_opt)
        assert np.all(ls.true_value(corners) <= p_opt - 0.05)


def test_fixed_validation_set_is_deterministic_quantised_and_differs_from_the_test_set():
    ls = make_landscape("merge-f10-F200", 4)
    x = np.random.default_rng(1).uniform(-1, 1, (50, 4))
    a = ls.observe(x, np.random.default_rng(0))
    np.testing.assert_array_equal(a, ls.observe(x, np.random.default_rng(1)))
    np.testing.assert_allclose(a * 200, np.round(a * 200), atol=1e-9)
    assert not np.array_equal(ls.test_value(x), a)


def test_binomial_observation_is_noisy_and_unbiased():
    ls = make_landscape("merge-f15-R500", 3)
    x = np.tile(ls.x_opt * 0.9, (4000, 1))
    obs = ls.observe(x, np.random.default_rng(2))
    p = ls.true_value(x[:1])[0]
    assert obs.std() > 0 and abs(obs.mean() - p) < 0.003
    np.testing.assert_allclose(obs * 500, np.round(obs * 500), atol=1e-9)


@pytest.mark.parametrize("name", ["sphere", "merge-f10", "merge-f10-X200", "bbob-f25", "bbob-10"])
def test_bad_landscape_names_are_refused(name):
    with pytest.raises(ValueError, match=r"unknown landscape|bad landscape name|f1\.\.f24"):
        make_landscape(name, 3)


def test_a_name_registered_twice_is_refused_for_names_and_families():
    from evogm_bench.landscapes import LANDSCAPES
    from evogm_bench.registry import Registry

    table: Registry[int] = Registry("thing")
    table.add("one", 1)
    with pytest.raises(ValueError, match="thing 'one' is already registered"):
        table.add("one", 2)
    table.add_family("n-", lambda name: int(name[2:]), "n-<int>")
    with pytest.raises(ValueError, match="already registered"):
        table.add_family("n-", int, "n-<int>")
    assert table.resolve("one") == 1 and table.resolve("n-7") == 7 and list(table) == ["one"]
    with pytest.raises(ValueError, match="unknown thing 'two'; available: one, n-<int>"):
        table.resolve("two")
    with pytest.raises(ValueError, match="already registered"):
        LANDSCAPES.add_family("merge-", lambda name: None, "merge-anything")
    with pytest.raises(ValueError, match="optimizer 'cmaes' is already registered"):
        PEERS.add("cmaes", PEERS["random"])


def test_merge_landscape_refuses_bad_noise():
    with pytest.raises(ValueError, match="noise"):
        MergeLikeLandscape(10, 3, noise="Z")


def test_evaluator_records_the_state_at_the_last_count_before_each_grid_point():
    ls = make_landscape("bbob-f1", 2)
    ev = Evaluator(ls, budget=40, rng=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    for _ in range(5):  # batches of 8 cross grid points 4 (=2·2), 10, 20, 40 between counts
        ev.evaluate(rng.uniform(-1, 1, (8, 2)))
        ev.record(None)
    evals = [e["evals"] for e in ev.trace]
    assert evals == sorted(set(evals)) and evals[-1] == 40
    assert 8 in evals and 16 in evals and 24 in evals  # last counts before 10 (and 20 (=10·2)) and 24 (budget grid)
    best = [e["best_seen"] for e in ev.trace]
    assert all(b2 <= b1 for b1, b2 in zip(best, best[1:]))  # BBOB is minimised: best-seen never rises
    with pytest.raises(Exception, match="budget"):
        ev.evaluate(np.zeros((1, 2)))


def test_evaluator_refuses_points_outside_the_box():
    ev = Evaluator(make_landscape("bbob-f1", 2), 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="outside"):
        ev.evaluate(np.array([[1.5, 0.0]]))


def test_trace_grid_contains_the_fixed_budget_checkpoints():
    grid = trace_grid(8, 400)
    for k in (1, 2, 5, 10, 20, 50):
        assert k * 8 in grid
    assert grid[0] == 1 and grid[-1] == 400


@pytest.mark.parametrize("name", sorted(PEERS))
def test_every_peer_runs_to_its_budget_and_is_scored_on_the_true_value(name):
    if not PEERS[name].available:
        pytest.skip(f"optional peer not installed: {PEERS[name].missing_note}")
    record = run_one(RunSpec(name, "merge-f10-F200", 3, 30, 0))
    assert record["evals"] == 30
    final = record["final"]
    assert final["evals"] == 30
    assert 0.25 <= final["true_of_best"] <= record["optimum_value"] + 1e-12
    assert record["overhead_s"] >= 0


def test_random_search_is_beaten_on_average_by_cmaes_on_the_sphere():
    """A sanity check that scoring is oriented correctly: cma must beat random on BBOB f1 at 50·N."""
    records = [run_one(RunSpec(o, "bbob-f1", 4, 200, s)) for o in ("cmaes", "random") for s in range(4)]
    cells = collect(records, checkpoints=(50,))
    res = cells[("bbob-f1", 4, 200)]
    assert np.median(res.losses("cmaes")) < np.median(res.losses("random"))


def test_stats_helpers():
    assert stats.a12([0, 0, 0], [1, 1, 1]) == 1.0
    assert stats.a12([1, 2], [1, 2]) == 0.5
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    assert stats.mann_whitney([1, 1, 1], [1, 1, 1]) == 1.0
    assert stats.mann_whitney(list(range(15)), list(range(100, 115))) < 1e-4
    assert stats.normalised_score([0.0], [2.0, 2.0]) == 100.0
    assert stats.normalised_score([2.0], [2.0, 2.0]) == 0.0
    assert stats.loss(0.8, 0.85, "max") == pytest.approx(0.05)
    assert stats.loss(3.0, 1.0, "min") == 2.0


def test_ecdf_area_is_one_when_every_target_is_hit_at_once_and_zero_when_none_is():
    hit = {"trace": [{"evals": 1, "best_seen": 0.0}], "optimum_value": 0.0, "sense": "min"}
    miss = {"trace": [{"evals": 1, "best_seen": 1e3}], "optimum_value": 0.0, "sense": "min"}
    assert stats.ecdf_area([hit], 100) == 1.0
    assert stats.ecdf_area([miss], 100) == 0.0


def test_ecdf_area_counts_evaluations_one_by_one_whatever_the_batch_size():
    """The same points evaluated in one batch of 40 or in batches of 4 give the same anytime ECDF (COCO's
    convention); before, the batch of 40 scored nothing until its last point."""
    points = np.random.default_rng(3).uniform(-1, 1, (40, 5))
    areas = []
    for batch in (40, 4):
        landscape = make_landscape("bbob-f1", 5)
        ev = Evaluator(landscape, 40, np.random.default_rng(0))
        for start in range(0, 40, batch):
            ev.evaluate(points[start : start + batch])
            ev.record(None)
        record = {"trace": ev.trace, "improvements": ev.improvements, "optimum_value": landscape.optimum_value}
        record["sense"] = "min"
        assert [n for n, _ in ev.improvements] == sorted({n for n, _ in ev.improvements})
        areas.append(stats.ecdf_area([record], 40))
    assert areas[0] == areas[1] > 0


def test_report_marks_a_significant_loss_and_writes_plots(tmp_path: Path):
    records = [run_one(RunSpec(o, "bbob-f1", 3, 150, s)) for o in ("cmaes", "random") for s in range(8)]
    text = markdown_report(records, ["cmaes", "random"], reference="cmaes", checkpoints=(50,))
    row = next(line for line in text.splitlines() if line.startswith("| bbob-f1 | 3 | 150 |"))
    assert row.endswith("▼ |")  # random search is significantly worse than CMA-ES here
    assert "area under the runtime ECDF" in text
    pngs = plots(records, tmp_path)
    assert {p.name for p in pngs} == {"convergence-bbob-f1.png", "violins-bbob-f1.png"}
    assert all(p.stat().st_size > 5000 for p in pngs)

    without = markdown_report([r for r in records if r["optimizer"] == "random"], reference="cmaes", checkpoints=(50,))
    assert "No comparisons: the reference `cmaes` has no records here" in without
    assert "Holm over 0" not in without and "0 / 0" not in without and "Effect sizes" not in without


def test_tables_and_plots_share_one_column_order_whatever_order_the_records_come_in():
    from evogm_bench.report import column_order

    assert column_order({"random", "evogm+x=1", "cmaes", "evogm"}) == ["evogm", "cmaes", "random", "evogm+x=1"]


def test_run_grid_retries_a_torn_last_line(tmp_path: Path):
    out = tmp_path / "r.jsonl"
    specs = [RunSpec("random", "merge-f1-R200", 2, 10, s) for s in range(2)]
    run_grid(specs[:1], out, workers=1, progress=False)
    out.write_text(out.read_text() + '{"key": "random|merge-f1-R200|2|10|1", "tor')  # a crash mid-write
    run_grid(specs, out, workers=1, progress=False)
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line) for line in lines)
    assert finished_keys(out) == {s.key for s in specs}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evogm_opt.cli", *args], capture_output=True, text=True)


def test_cli_bench_first_seed_runs_fresh_instances(tmp_path: Path):
    out = tmp_path / "holdout.jsonl"
    common = ["bench", "--optimizers", "random", "--landscapes", "bbob-f1", "--dims", "2", "--budgets", "3"]
    result = _cli(*common, "--seeds", "2", "--first-seed", "30", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    assert sorted(json.loads(line)["seed"] for line in out.read_text().splitlines()) == [30, 31]


def test_cli_bench_runs_resumes_and_reports(tmp_path: Path):
    out = tmp_path / "b.jsonl"
    args = [
        "bench",
        "--optimizers",
        "cmaes",
        "random",
        "evogm-paper",
        "--landscapes",
        "merge-f10-F200",
        "--dims",
        "3",
        "--budgets",
        "5",
        "--seeds",
        "2",
        "--workers",
        "2",
        "--out",
        str(out),
        "--quiet",
    ]
    first = _cli(*args)
    assert first.returncode == 0, first.stderr
    assert "| landscape | N | evals | evogm-paper | cmaes | random |" in first.stdout  # the order of `bench report`
    assert "| merge-f10-F200 | 3 | 15 |" in first.stdout
    assert len(finished_keys(out)) == 6
    lines_before = out.read_text().splitlines()
    second = _cli(*args)
    assert out.read_text().splitlines() == lines_before  # nothing re-run
    assert "6 runs" in second.stdout
    report = _cli("bench", "report", str(out), "--out", str(tmp_path / "rep"), "--checkpoints", "5")
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "rep" / "report.md").read_text().count("| merge-f10-F200 | 3 | 15 |") == 2
    assert (tmp_path / "rep" / "convergence-merge-f10-F200.png").exists()


def test_cli_refuses_unknown_optimizer_and_landscape(tmp_path: Path):
    result = _cli("bench", "--optimizers", "nope", "--out", str(tmp_path / "x.jsonl"))
    assert result.returncode == 2 and "unknown optimizer" in result.stderr
    result = _cli("bench", "--landscapes", "nope", "--out", str(tmp_path / "x.jsonl"))
    assert result.returncode == 2 and "unknown landscape 'nope'; available: bbob-f<1..24>" in result.stderr
    result = _cli("bench", "report", str(tmp_path / "missing.jsonl"))
    assert result.returncode == 2 and "no such results file" in result.stderr


def _records(path: Path) -> Path:
    """A small record file with real differences: 'ours' ahead of 'weak' on one landscape, level on the other."""
    rng = np.random.default_rng(3)
    means = {"ours": 0.80, "weak": 0.70, "close": 0.79, "level": 0.80}
    with path.open("w") as fh:
        for landscape in ("merge-f1-F200", "merge-f10-R200"):
            for name, mean in means.items():
                for seed in range(8 if name != "close" else 6):
                    v = [float(np.clip(mean + rng.normal(0, 0.02) - 0.1 / k, 0, 0.85)) for k in (10, 20)]
                    trace = [{"evals": k * 4, "true_of_best": x} for k, x in zip((10, 20), v)]
                    record = {"optimizer": name, "landscape": landscape, "dim": 4, "budget": 80, "seed": seed}
                    fh.write(json.dumps({**record, "sense": "max", "optimum_value": 0.85, "trace": trace}) + "\n")
    return path


def test_bench_compare_gives_the_numbers_stats_gives(tmp_path: Path, capsys):
    from evogm_bench import cli
    from evogm_bench.report import load_cells

    path = _records(tmp_path / "r.jsonl")
    argv = ["compare", str(path), "--optimizer", "ours", "--against", "weak", "--best-of", "close", "level"]
    assert cli.main([*argv, "--landscapes", "merge-"]) == 0
    text = capsys.readouterr().out
    cells = load_cells([path], ["merge-"])
    assert len(cells) == 4  # two landscapes × 10·N and 20·N
    pvals, lines = [], []
    for (landscape, dim, evals), res in sorted(cells.items()):
        ours, weak = res.losses("ours"), res.losses("weak")
        pvals.append(stats.mann_whitney(ours, weak))
        lines.append((landscape, evals // dim, stats.a12(ours, weak)))
    for (landscape, k, a12), p, holm in zip(lines, pvals, stats.holm(pvals)):
        line = next(x for x in text.splitlines() if x.strip().startswith(landscape) and f"{k}·N" in x and "weak" in x)
        assert f"A12={a12:.2f}" in line and f" p={p:.3g} " in line and f"Holm p={holm:.3g} better" in line
    assert "ours against weak (Holm over its 4 cells):" in text
    assert "all: median better in 4/4 cells (100 %); significantly better 4, worse 0" in text
    # the best of a group is, per cell, the peer of lowest median loss
    best = {c: min(("close", "level"), key=lambda p: np.median(r.losses(p))) for c, r in cells.items()}
    for (landscape, dim, evals), peer in best.items():
        assert any(landscape in x and f"{evals // dim}·N" in x and f" {peer} " in x for x in text.splitlines())
    assert "ours: median better than every target" in text
    assert "note:" not in text  # 6-8 runs a cell over 4 cells can be significant (and are, above)
    assert cli.main([*argv, "--landscapes", "bbob-", "--brief"]) == 2  # no records of 'ours' there
    assert "no records of 'ours'" in capsys.readouterr().err


def test_bench_compare_says_when_too_few_runs_can_never_be_significant(tmp_path: Path, capsys):
    """3 runs a side: every run of 'ours' above every run of 'weak' gives p = 0.1 at best, and Holm over 4 cells
    0.4 — the summary says so instead of leaving "significantly better 0" to be read as "no difference"."""
    from evogm_bench import cli

    path = tmp_path / "few.jsonl"
    lines = [line for line in _records(tmp_path / "r.jsonl").read_text().splitlines() if json.loads(line)["seed"] < 3]
    path.write_text("\n".join(lines) + "\n")
    assert cli.main(["compare", str(path), "--optimizer", "ours", "--against", "weak", "--brief"]) == 0
    text = capsys.readouterr().out
    assert "significantly better 0, worse 0" in text
    assert stats.smallest_mann_whitney_p(3, 3) == pytest.approx(0.1)
    assert "note: with 3 and 3 runs the smallest Mann–Whitney p is 0.1, so Holm over 4 comparisons cannot reach" in text


def _coco(out: Path, functions: str) -> subprocess.CompletedProcess:
    return _cli(
        "bench",
        "coco",
        "--optimizer",
        "cmaes",
        "--dims",
        "5",
        "--budget",
        "4",
        "--functions",
        functions,
        "--instances",
        "1",
        "--out",
        str(out),
        "--quiet",
    )


def test_cli_coco_writes_cocopp_data(tmp_path: Path):
    result = _coco(tmp_path, "1-2")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "cmaes"
    assert sorted(p.name for p in folder.glob("*.info")) == ["bbobexp_f1.info", "bbobexp_f2.info"]
    rows = [line.split() for line in (folder / "data_f1" / "bbobexp_f1_DIM5.dat").read_text().splitlines()]
    assert rows[-1][0] == "20"  # the last logged evaluation is the 4·5-th: the budget, not more
    again = _coco(tmp_path, "1")
    assert again.returncode == 0 and f"--expensive {tmp_path / 'cmaes-0001'}" in again.stdout


def test_grouped_merge_landscape_structure():
    from evogm_bench.landscapes import make_landscape

    land = make_landscape("mergegroup-f10-F200-g4", 12, seed=0)
    assert land.n_experts == 3 and land.name == "mergegroup-f10-F200-g4"
    assert land.true_value(land.x_opt[None])[0] == pytest.approx(land.optimum_value)
    u = np.random.default_rng(0).uniform(-1, 1, (64, 12))
    assert np.median(land.true_value(u)) < 0.4  # random merges are near chance, as in the flat merge landscapes
    # group-major: moving one group's block away from its optimum costs accuracy, the others stay put
    worse = land.x_opt.copy()
    worse[3:6] = -worse[3:6]
    assert land.true_value(worse[None])[0] < land.optimum_value
    with pytest.raises(ValueError, match="multiple"):
        make_landscape("mergegroup-f10-F200-g5", 12)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--dims", "0"], "argument --dims: '0' must be an integer >= 1"),
        (["--dims", "-3"], "argument --dims: '-3' must be an integer >= 1"),
        (["--budgets", "0"], "argument --budgets: '0' must be an integer >= 1"),
        (["--seeds", "0"], "argument --seeds: '0' must be an integer >= 1"),
        (["--workers", "two"], "argument --workers: 'two' is not an integer"),
        (["--optimizers", "cma-es"], "unknown optimizer 'cma-es'; available: evogm, evogm-paper"),
        (["--landscapes", "merge-f10"], "landscape 'merge-f10' at dim 8"),
    ],
)
def test_cli_bench_refuses_a_bad_argument_in_one_line_with_exit_code_2(tmp_path: Path, args, says):
    out = tmp_path / "b.jsonl"
    result = _cli("bench", *args, "--out", str(out), "--quiet")
    assert result.returncode == 2
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not out.exists()


def test_cli_bench_help_lists_the_optimizers_and_the_defaults():
    text = _cli("bench", "-h").stdout
    assert "sep-cmaes" in text and "lq-cmaes" in text and "(default: 5)" in text


def test_cli_lists_every_subcommand():
    text = _cli("--help").stdout
    assert "bench" in text and "merge" in text


def test_the_expert_started_gp_peer_first_asks_evogms_one_hots_and_uniform_mix():
    pytest.importorskip("optuna")
    peer = PEERS["optuna-gp-experts"].build(3, 0, 10)
    asked = []
    for _ in range(5):
        x = peer.ask(1)
        asked.append(x[0])
        peer.tell(x, np.array([float(-np.sum(x**2))]))
    np.testing.assert_allclose(asked[:4], np.concatenate([np.eye(3), np.full((1, 3), 1 / 3)]))
    assert not np.allclose(asked[4], asked[3])  # then its own choices


@pytest.mark.parametrize(
    "name, setting",
    [
        ("evogm+use_generator=true", "use_generator"),
        ('evogm+recommendation="best"', "recommendation"),
        ("evogm+screening_scales=[1.0]", "screening_scales"),
        ("evogm@paper+recommend_top_fraction=0.2", "recommend_top_fraction"),
    ],
)
def test_a_removed_setting_in_a_variant_name_is_refused_in_one_line(tmp_path: Path, capsys, name, setting):
    from evogm_bench import cli

    out = tmp_path / "b.jsonl"
    assert cli.main(["--optimizers", name, "--dims", "4", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"EvoGM setting {setting} was removed" in err and "a95bed8" in err, err
    assert not out.exists()


def test_a_variant_is_its_preset_with_the_settings_it_names():
    import dataclasses

    from evogm_bench.peers import get_peer

    from evogm_opt import PRESETS

    default, paper = PRESETS["default"], PRESETS["paper"]
    expected = {
        "evogm+popsize=6": (default, 6),
        "evogm+boundary=clip+shift_min_residual=0": (
            dataclasses.replace(default, boundary="clip", shift_min_residual=0),
            8,
        ),
        "evogm@paper+n_rounds=null+generator.hidden=[32,32]": (
            dataclasses.replace(paper, n_rounds=None, generator=dataclasses.replace(paper.generator, hidden=(32, 32))),
            8,
        ),
        "evogm+popsize_per_dim=0.25": (default, 6),
    }
    for name, (config, popsize) in expected.items():
        opt = get_peer(name).build(4, 0, 40).opt
        assert opt.config == config and opt.popsize == popsize, name
    with pytest.raises(ValueError, match=r"unknown EvoGM settings \['nope'\]"):
        get_peer("evogm+nope=1")


@pytest.mark.parametrize(
    "argv",
    [
        ["overhead"],
        ["thread-load"],
        ["merge-speed"],
        ["research"],
        ["research", "oracle-gap"],
        ["research", "step-at-ceiling"],
    ],
)
def test_each_timing_and_research_subcommand_is_a_way_into_the_bench(capsys, argv):
    from evogm_opt.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["bench", *argv, "-h"])
    assert stop.value.code == 0
    assert f"usage: evogm-opt bench {' '.join(argv)}" in capsys.readouterr().out
