"""``evogm-opt merge --rebuild RUN --out OUT``: a run's ``merged/`` written again from ``evogm_merge.json`` alone (and
the base and expert folders it names) — tensor for tensor the run's, after EvoGM basis shifts too.

The search's scores are made to rise with every evaluation, so the reported merge is the last one: for the paper
preset (a basis shift after 24 evaluations) a merge made after the shift.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the llm_merge adapter needs the `llm` extra")
yaml = pytest.importorskip("yaml", reason="the llm_merge adapter needs the `llm` extra")

from llm_merge.model.fitness import MergeFitness  # noqa: E402
from llm_merge.run.journal import RunError  # noqa: E402
from llm_merge.run.rebuild import rebuild  # noqa: E402

from evogm_opt import Optimizer  # noqa: E402
from tests.test_llm_merge_run import quiet_run, workspace, write_config  # noqa: E402, F401

PAPER = {"name": "evogm-paper", "budget": 30, "seed": 1}
RUNS = [
    ("ta-shift", "task_arithmetic", PAPER, {}),
    ("ties-shift", {"name": "ties", "density": 0.3}, PAPER, {}),
    ("dare-seed", {"name": "dare_ties", "density": 0.5, "seed": 7}, {"name": "cmaes", "budget": 6, "seed": 1}, {}),
    ("ta-groups-simplex", "task_arithmetic", {"name": "random", "budget": 6, "seed": 1}, {"layout": "per_module_type"}),
    ("della-shift", {"name": "della", "density": 0.5, "epsilon": 0.1, "seed": 2}, PAPER, {}),
]


def rising(monkeypatch) -> None:
    """Every evaluation scores higher than the one before (the model is not run)."""
    count = {"n": 0}

    def task_scores(self, lam):
        count["n"] += 1
        return [count["n"] / 1000.0 for _ in self.tasks]

    monkeypatch.setattr(MergeFitness, "task_scores", task_scores)


@pytest.fixture(scope="module")
def runs(workspace, tmp_path_factory):  # noqa: F811
    """The run folder of each of RUNS (searched once for the module)."""
    if any(isinstance(m, dict) and m["name"] == "della" for _, m, _, _ in RUNS):
        pytest.importorskip("mergekit", reason="della is computed by mergekit (the `mergekit` extra)")
    folders = {}
    with pytest.MonkeyPatch.context() as mp:
        rising(mp)
        for name, method, optimizer, extra in RUNS:
            settings = {"method": method, "optimizer": optimizer, "baselines": False, **extra}
            if name == "ta-groups-simplex":
                settings["simplex"] = True
            quiet_run(write_config(workspace, f"rebuild-{name}", **settings))
            folders[name] = workspace / "runs" / f"rebuild-{name}"
    return folders


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("name", [r[0] for r in RUNS])
def test_rebuild_writes_the_runs_merged_tensors_again(runs, tmp_path, name, record_property):
    run = runs[name]
    record = json.loads((run / "merged" / "evogm_merge.json").read_text())
    if name.endswith("-shift"):
        assert Optimizer.load(run / "checkpoint.evogm").shift_rows  # the search went through a basis shift
        if name != "ta-shift":  # nonlinear: the merge is at coordinates over the rebuilt experts
            assert record["basis_version"] == 1 and len(record["shift_rows"]) == 1
    rebuild(run, tmp_path / "out", say=lambda *a: None)
    ours, theirs = tensors(run / "merged"), tensors(tmp_path / "out")
    assert set(ours) == set(theirs)
    errs = {k: (ours[k] - theirs[k]).abs().max().item() for k in ours}
    record_property("max_abs_diff", max(errs.values()))
    assert all(torch.equal(ours[k], theirs[k]) for k in ours), f"max |rebuilt − merged/| = {max(errs.values()):.3g}"
    base = tensors(run.parent.parent / "base")
    assert max((ours[k] - base[k]).abs().max().item() for k in ours) > 1e-3  # a merge, not the base
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert written == {p.name for p in (run / "merged").iterdir()} - {"README.md", "mergekit.yml"}


def test_the_rebuild_command_writes_a_new_folder_and_refuses_an_existing_one(runs, tmp_path):
    run, out = runs["ties-shift"], tmp_path / "rebuilt"
    cmd = [sys.executable, "-m", "evogm_opt.cli", "merge", "--rebuild", str(run / "merged" / "evogm_merge.json")]
    r = subprocess.run([*cmd, "--out", str(out), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert all(torch.equal(a, b) for a, b in zip(tensors(run / "merged").values(), tensors(out).values()))
    assert transformers.AutoModelForCausalLM.from_pretrained(out) is not None
    before = sorted(p.name for p in out.iterdir())
    r = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "exists" in r.stderr and "overwrites nothing" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == before
    assert not list(tmp_path.glob(".rebuilt.partial-*"))
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 2 and "--out" in r.stderr


def test_an_older_record_rebuilds_from_its_run_json_or_is_refused_clearly(runs, tmp_path):
    run = tmp_path / "old-run"
    shutil.copytree(runs["ties-shift"], run)
    path = run / "merged" / "evogm_merge.json"
    record = json.loads(path.read_text())
    new_keys = ("format", "tokenizer", "dtype", "device", "expert_names", "expert_kinds", "on_other_base", "layout")
    old = {k: v for k, v in record.items() if k not in new_keys}  # what format 1 held
    old["method_options"] = {**old["method_options"], "convention": "mergekit"}  # 0.1 wrote it into every record
    path.write_text(json.dumps(old))
    rebuild(run, tmp_path / "out", say=lambda *a: None)
    assert all(torch.equal(a, b) for a, b in zip(tensors(run / "merged").values(), tensors(tmp_path / "out").values()))
    (run / "run.json").unlink()
    with pytest.raises(RunError, match="predates the rebuild command"):
        rebuild(run, tmp_path / "out2", say=lambda *a: None)
    assert not (tmp_path / "out2").exists()


def test_a_record_of_the_removed_evogm_convention_is_refused_in_one_line_naming_the_commit(runs, tmp_path):
    run = tmp_path / "legacy-run"
    shutil.copytree(runs["ties-shift"], run)
    path = run / "merged" / "evogm_merge.json"
    record = json.loads(path.read_text())
    record = {k: v for k, v in record.items() if k not in ("format", "layout", "expert_kinds")}  # format 1
    record["method_options"] = {"density": 0.2, "normalize": False, "convention": "evogm-0.1"}
    path.write_text(json.dumps(record))
    cmd = [sys.executable, "-m", "evogm_opt.cli", "merge", "--rebuild", str(run), "--out", str(tmp_path / "out")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "convention evogm-0.1" in r.stderr and "commit a95bed8" in r.stderr and str(path) in r.stderr
    assert not (tmp_path / "out").exists()
