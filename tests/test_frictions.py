"""Issue 27, items 7–12: the frictions a new user met, each as the user met it.

7 a merge config without ``threads:`` runs on one torch thread; 8 ``import evogm_opt``, ``--help`` and config
mistakes load neither torch nor transformers; 9 the recipe's own ``mergekit-yaml`` command works for LoRA experts;
10 the README says how to install from the repository, with the ``[llm]`` extra; 11 the demo's best search is
chosen on validation and the docs' seed-0 block is what the code prints; 12 ``bench -h``'s budget wording, the
docs' version, plain numbers in the bounds error, one-line YAML errors, no library progress bars in a run.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "cma", "matplotlib")


def _modules_after(code: str) -> tuple[set[str], str]:
    """Which of HEAVY a fresh interpreter has imported after ``code`` (its stdout too)."""
    probe = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import sys
        print("HEAVY=" + ",".join(m for m in {HEAVY!r} if m in sys.modules))
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = re.search(r"^HEAVY=(.*)$", done.stdout, re.M)
    assert found, done.stdout
    return {m for m in found[1].split(",") if m}, done.stdout


# --- item 8: nothing heavy before it is needed ---------------------------------------------------------------


def test_import_evogm_opt_and_reading_the_registry_load_neither_torch_nor_cma():
    heavy, _ = _modules_after(
        """
        import evogm_opt
        from evogm_opt import registry, minimize, Optimizer, load, optimize
        assert "evogm" in registry.names() and "cmaes" in registry.names()
        """
    )
    assert heavy == set()


def test_every_public_name_still_imports_and_building_evogm_then_loads_torch():
    heavy, _out = _modules_after(
        """
        import evogm_opt
        from evogm_opt import *  # noqa
        missing = [n for n in evogm_opt.__all__ if not hasattr(evogm_opt, n)]
        assert not missing, missing
        assert set(evogm_opt.__all__) <= set(dir(evogm_opt))
        import evogm_opt.minimize
        from evogm_opt import minimize
        assert callable(minimize)  # the function, not the module of the same name
        evogm_opt.registry.create("evogm", 2, seed=0)
        print(type(evogm_opt.GenerativeOptimizer).__name__)
        """
    )
    assert "torch" in heavy


@pytest.mark.parametrize("argv", [["--help"], ["merge", "--help"], ["--version"]])
def test_help_and_version_load_neither_torch_nor_transformers(argv):
    heavy, out = _modules_after(
        f"""
        from evogm_opt.cli import main
        try:
            main({argv!r})
        except SystemExit:
            pass
        """
    )
    assert not heavy & {"torch", "transformers"}, heavy
    assert "merge" in out or "evogm-opt" in out


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ("base: b\nexperts: [e]\ntasks: {seen: [{name: a, val: v.jsonl}]}\noptimiser: {}\n", "unknown keys"),
        ("base: b\n  experts: [e\n", ":2:"),
        ("base: /nonexistent/base\nexperts: [e]\ntasks: {seen: [{name: a, val: v.jsonl}]}\n", "no such folder"),
        (
            "base: .\nexperts: [e]\ntasks: {seen: [{name: a, val: v.jsonl}]}\noptimizer: {name: adam}\n",
            "experts[0].path: no such folder",
        ),
        ("base: .\nexperts: [.]\ntasks: {seen: [{name: a, val: v.jsonl}]}\noptimizer: {name: adam}\n", "adam"),
        ("base: .\nexperts: [.]\ntasks: {seen: [{name: a, val: v.jsonl}]}\nthreads: 0\n", "threads"),
        ("base: .\nexperts: [.]\ntasks: {seen: [{name: a, val: v.jsonl}]}\ndtype: fp8\n", "dtype"),
        ("base: .\nexperts: [.]\ntasks: {seen: [{name: a, val: v.jsonl}]}\nmodel_type: llama\n", "model_type"),
    ],
)
def test_a_config_mistake_is_reported_before_torch_or_transformers_load(tmp_path, config, says):
    (tmp_path / "v.jsonl").write_text('{"prompt": "1+1=", "options": ["2", "3"], "answer": 0}\n')
    path = tmp_path / "config.yaml"
    path.write_text(config)
    heavy, out = _modules_after(
        f"""
        import contextlib, io
        from evogm_opt.cli import main
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["merge", {str(path)!r}])
        print("CODE", code)
        print("ERR", err.getvalue().strip())
        """
    )
    assert "CODE 2" in out, out
    (err,) = [line for line in out.splitlines() if line.startswith("ERR ")]
    assert says in err and err.count("\n") == 0, err
    assert not heavy & {"torch", "transformers"}, heavy


# --- item 12: YAML syntax errors, numbers in messages, bench -h, the docs' version ----------------------------


def test_a_yaml_syntax_error_is_one_line_with_file_line_and_column(tmp_path, capsys):
    from llm_merge.cli import main

    path = tmp_path / "broken.yaml"
    path.write_text("base: models/base\nexperts: [a, b\ntasks: {}\n")
    assert main([str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert re.match(rf"^evogm-opt merge: {re.escape(str(path))}:3:\d+: invalid YAML: ", err), err


def test_an_out_of_bounds_row_is_reported_with_plain_numbers():
    from evogm_opt import registry

    opt = registry.create("random", 2, seed=0)
    x = opt.ask()
    x[0, 0] = 1e6
    with pytest.raises(ValueError) as caught:
        opt.tell(x, np.zeros(len(x)))
    assert "np.float64" not in str(caught.value)
    assert "x[0]=1000000.0 not in [-1.0, 1.0]" in str(caught.value)


def test_bench_help_and_the_budget_it_runs_agree(monkeypatch, tmp_path, capsys):
    pytest.importorskip("evogm_bench.runner", reason="the bench extra")
    from evogm_bench import cli

    text = " ".join(cli.build_parser().format_help().split("options:", 1)[1].split())
    budgets = text[text.index("--budgets BUDGETS") : text.index("--seeds SEEDS")]
    assert "per dimension" in budgets and "(default: True)" not in budgets, budgets
    assert re.search(r"--absolute-budget --budgets are total evaluations, not per dimension \(default: False\)", text)

    import evogm_bench.report
    import evogm_bench.runner

    seen: list[int] = []
    monkeypatch.setattr(evogm_bench.runner, "run_grid", lambda specs, *a, **k: seen.extend(s.budget for s in specs))
    monkeypatch.setattr(evogm_bench.runner, "load_records", lambda *a, **k: [])
    monkeypatch.setattr(evogm_bench.report, "markdown_report", lambda *a, **k: "")
    common = ["--optimizers", "random", "--landscapes", "bbob-f1", "--dims", "3", "--seeds", "1"]
    assert cli.main([*common, "--budgets", "5", "--out", str(tmp_path / "a.jsonl")]) == 0
    assert cli.main([*common, "--budgets", "5", "--absolute-budget", "--out", str(tmp_path / "b.jsonl")]) == 0
    assert seen == [15, 5]  # per dimension by default (5 × 3), a total with the flag


def test_bench_disk_full_and_ctrl_c_are_one_line(monkeypatch, tmp_path, capsys):
    pytest.importorskip("evogm_bench.runner", reason="the bench extra")
    import errno

    import evogm_bench.runner
    from evogm_bench import cli

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "a.jsonl"))

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    args = ["--optimizers", "random", "--landscapes", "bbob-f1", "--dims", "2", "--seeds", "1"]
    monkeypatch.setattr(evogm_bench.runner, "run_grid", full)
    assert cli.main([*args, "--out", str(tmp_path / "a.jsonl")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot write" in err and "No space left on device" in err, err
    monkeypatch.setattr(evogm_bench.runner, "run_grid", interrupted)
    assert cli.main([*args, "--out", str(tmp_path / "a.jsonl")]) == 130
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "interrupted" in err, err


def test_the_performance_page_names_no_version_after_this_one():
    from evogm_opt import __version__

    current = tuple(int(p) for p in __version__.split(".")[:2])
    text = (ROOT / "docs" / "performance.md").read_text()
    claims = re.findall(r"(?:[Ss]ince|[Bb]efore|[Ii]n|[Aa]s of) (?:version |release )?v?(\d+)\.(\d+)\b", text)
    assert all((int(a), int(b)) <= current for a, b in claims), claims


# --- items 7 and 12: a merge run's threads and its output ----------------------------------------------------

pytest.importorskip("transformers", reason="the llm_merge adapter needs the `llm` extra")
yaml = pytest.importorskip("yaml", reason="the llm_merge adapter needs the `llm` extra")

from tests.test_llm_merge_run import config_dict, workspace, write_config  # noqa: E402, F401


def test_a_config_without_threads_runs_the_model_on_one_thread_and_restores_the_callers(workspace, monkeypatch):  # noqa: F811
    import torch
    from llm_merge import search
    from llm_merge.cli import main
    from llm_merge.run_config import parse_config

    assert "threads" not in config_dict()
    assert parse_config(config_dict(), workspace).threads == 1
    assert parse_config(config_dict(threads="auto"), workspace).threads is None  # torch's own default, asked for
    assert parse_config(config_dict(threads=3), workspace).threads == 3
    seen: list[int] = []
    original = search.search

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr("llm_merge.run.search", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        path = write_config(workspace, "no-threads-key", baselines=False, save_model=False, optimizer={"budget": 4})
        assert main([str(path), "--quiet"]) == 0
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_run_prints_no_library_progress_bars_outside_quiet(workspace, capfd):  # noqa: F811
    from llm_merge.cli import main

    path = write_config(workspace, "bars", baselines=False, save_model=False, optimizer={"budget": 4})
    assert main([str(path)]) == 0
    out, err = capfd.readouterr()
    assert "Loading weights" not in out + err and "it/s]" not in out + err, err[-2000:]
    assert "evaluations" in out  # our own progress and summary are still there


# --- item 9: the recipe's own command, run -------------------------------------------------------------------


def test_the_recipe_header_command_runs_as_written_for_lora_experts(workspace, tmp_path):  # noqa: F811
    from safetensors.torch import load_file

    from tests.test_llm_merge_recipes import mergekit_yaml
    from tests.test_llm_merge_run import quiet_run

    cli = mergekit_yaml()
    quiet_run(write_config(workspace, "header-command", baselines=False, optimizer={"name": "random", "budget": 4}))
    merged = workspace / "runs" / "header-command" / "merged"
    header = [line for line in (merged / "mergekit.yml").read_text().splitlines() if "Reproduce it" in line]
    assert len(header) == 1, header
    command = header[0].split(": ", 1)[1]
    assert command.startswith("mergekit-yaml ") and " OUT" in command
    argv = [cli if a == "mergekit-yaml" else a for a in shlex.split(command)]
    argv = [str(tmp_path / "out") if a == "OUT" else str(tmp_path / "cache") if a == "LORA_CACHE" else a for a in argv]
    argv = [str(merged / "mergekit.yml") if a.endswith("mergekit.yml") else a for a in argv]  # wherever it is run
    done = subprocess.run([*argv, "--quiet"], capture_output=True, text=True, cwd=merged, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ours, theirs = load_file(str(merged / "model.safetensors")), load_file(str(tmp_path / "out" / "model.safetensors"))
    assert max((ours[k].float() - theirs[k].float()).abs().max().item() for k in ours) <= 1e-6
    card = (merged / "README.md").read_text()
    assert "--lora-merge-cache LORA_CACHE" in card


# --- item 10: installing ----------------------------------------------------------------------------------------


def test_the_readme_installs_from_the_repository_with_the_llm_extra_and_keeps_its_two_commands():
    readme = (ROOT / "README.md").read_text()
    first = readme.split("```", 2)[1].strip().splitlines()
    assert first[1].startswith("bash scripts/bootstrap.sh && .venv/bin/evogm-opt merge --demo")
    assert first[2].startswith("bash scripts/bootstrap.sh && bash scripts/test.sh")
    assert not re.search(r"pip install evogm-opt(?![\[\w\"'])", readme), "no index serves evogm-opt yet"
    assert 'pip install -e ".[llm]"' in readme
    assert re.search(r"`merge`[^.]*needs the `\[llm\]` extra", readme)
    quickstart = (ROOT / "docs" / "quickstart.md").read_text()
    assert not re.search(r"pip install evogm-opt(?![\[\w\"'])", quickstart)


def test_a_missing_extra_names_the_install_line_the_readme_gives(capsys):
    from llm_merge import cli

    assert cli._missing_extra(ImportError("No module named 'transformers'")) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("install the extra: pip install -e '.[llm]' (docs/quickstart.md)"), err


# --- item 11: the demo's best search, and the docs' seed-0 block ----------------------------------------------


def _rows(val: dict[str, float], test: dict[str, float]) -> dict[str, dict[str, float]]:
    from llm_merge.demo import SEARCHES, SEEN, UNIFORM

    def row(v: float, t: float) -> dict[str, float]:
        return {**{f"{n}/val": v for n in SEEN}, **{f"{n}/test": t for n in SEEN}}

    rows = {"expert a": row(0.5, 0.5), UNIFORM: row(0.4, 0.4)}
    rows.update({f"{s} λ*": row(val[s], test[s]) for s in SEARCHES})
    return rows


def test_the_best_search_is_chosen_on_validation_not_on_a_test_tie():
    """The issue's case: all three at 0.9875 on test, PSO-Merging higher on validation."""
    from llm_merge.demo import _demo_table, best_search

    rows = _rows(
        {"evogm": 0.95, "cmaes": 0.96, "pso-merging": 0.97}, dict.fromkeys(("evogm", "cmaes", "pso-merging"), 0.9875)
    )
    found = {"evogm": 10, "cmaes": 20, "pso-merging": 30}
    assert best_search(rows, found) == "pso-merging"
    table = _demo_table(rows, 80, Path("demo"), 0, found)
    assert "| pso-merging λ* ◀ |" in table and table.count("◀") == 3  # its rows in both tables, the footnote
    assert "by seen-task validation accuracy" in table and "ties go to the best found at fewer evaluations" in table


def test_a_validation_tie_goes_to_fewer_evaluations_then_to_the_name():
    from llm_merge.demo import best_search

    rows = _rows(
        dict.fromkeys(("evogm", "cmaes", "pso-merging"), 0.9), {"evogm": 0.7, "cmaes": 0.8, "pso-merging": 0.9}
    )
    assert best_search(rows, {"evogm": 40, "cmaes": 12, "pso-merging": 30}) == "cmaes"
    assert best_search(rows, {"evogm": 12, "cmaes": 40, "pso-merging": 12}) == "evogm"  # e < p


START, END = "<!-- demo-figures:start -->", "<!-- demo-figures:end -->"


def _docs_seed_block() -> str:
    page = (ROOT / "docs" / "llm-merge.md").read_text()
    block = page[page.index(START) : page.index(END)]
    return block.split("```", 2)[1].strip("\n")


def _rows_from_per_task_table(block: str) -> dict[str, dict[str, float]]:
    """The per-task table is exact: every task has 100 examples, so two decimals are the accuracy itself."""
    lines = block.split("Per task:", 1)[1].strip().splitlines()
    keys = [c.strip() for c in lines[0].strip("|").split("|")][1:]
    rows = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].removesuffix(" ◀")] = {k: float(v) for k, v in zip(keys, cells[1:])}
    return rows


def test_the_docs_seed_0_block_is_what_the_demo_prints_for_its_numbers():
    """Cheap and always run: the block (written by ``scripts/demo_figures.py`` from a real run) renders again,
    character for character, from its own per-task numbers with today's code — marks, tie rule, footnotes. The
    numbers themselves are checked where they start, the pre-trained base, by the next test; the whole demo (30 s
    idle, minutes on a busy machine) is not rerun here."""
    from llm_merge.demo import _demo_table

    block = _docs_seed_block()
    rows = _rows_from_per_task_table(block)
    found = {m[1]: int(m[2]) for m in re.finditer(r"(\S+) \d\.\d{3} \(best at evaluation (\d+)\)", block)}
    out = re.search(r"^The winner's merge: (\S+)/runs/", block, re.M)
    seed = re.search(r"^Seed (\d+):", block, re.M)
    budget = re.search(r"^Budget (\d+) evaluations per search", block, re.M)
    assert found and out and seed and budget, block[-1500:]
    assert _demo_table(rows, int(budget[1]), Path(out[1]), int(seed[1]), found) == block


def test_the_docs_base_row_is_what_seed_0_pretrains_today(tmp_path):
    """The first number of the demo to drift in the issue (base seen val 0.758 printed, 0.703 in the docs): the
    pre-trained base at seed 0, scored on the demo's tasks as a run scores its baselines (about 10 s)."""
    import torch
    from llm_merge.assemble import load_tasks
    from llm_merge.baselines import score_tasks
    from llm_merge.demo import SEEN, _pretrain_base, _search_config, _write_tasks
    from llm_merge.loading import load_base
    from llm_merge.run_config import load_config

    from evogm_opt.threads import torch_threads

    with torch_threads(1):
        torch.manual_seed(0)
        _pretrain_base(tmp_path, 0, lambda *a: None)
        _write_tasks(tmp_path, 0)
        for name in SEEN:  # the config names the experts' folders; the base row needs none of them
            (tmp_path / f"expert-{name}").mkdir()
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(_search_config("evogm", 80, 0, True)))
        cfg = load_config(config)
        model, tokenizer = load_base(cfg.base, cfg.dtype, cfg.device, cfg.tokenizer, cfg.model_type)[:2]
        scores = score_tasks(model, tokenizer, load_tasks(cfg), cfg.batch_size)
    documented = _rows_from_per_task_table(_docs_seed_block())["base"]
    assert {k: round(v, 2) for k, v in scores.items()} == documented


def test_the_readme_says_what_the_demo_time_was_measured_on():
    readme = (ROOT / "README.md").read_text()
    line = readme.splitlines()[3]
    assert "~1 min" not in line
    assert re.search(r"\d+ s on 2 idle cores", readme) and re.search(r"busy", readme)
