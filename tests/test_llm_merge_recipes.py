"""Recipes travel both ways: a run's ``merged/mergekit.yml`` makes ``mergekit-yaml`` write ``merged/`` again (or
says why it cannot), and a mergekit recipe given to ``evogm-opt merge`` is refused with how to write ours.

The end-to-end checks run mergekit's own CLI (``mergekit-yaml``, the ``mergekit`` extra) on the written file and
compare every tensor with ``merged/`` in fp32; each records the max abs difference it measured.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evogm_opt.cli_faults import install_hint

transformers = pytest.importorskip("transformers", reason="the llm_merge adapter needs the `llm` extra")
yaml = pytest.importorskip("yaml", reason="the llm_merge adapter needs the `llm` extra")

from llm_merge.model.layouts import make_layout  # noqa: E402
from llm_merge.run.config import parse_config  # noqa: E402
from llm_merge.run.recipes import RECIPE, recipe_text, why_not_mergekit  # noqa: E402

from tests.test_llm_merge_run import config_dict, quiet_run, workspace, write_config  # noqa: E402, F401

TOL = 1e-6


def mergekit_yaml() -> str:
    """The ``mergekit-yaml`` beside this interpreter (the venv's), else on PATH; the test skips without one."""
    here = Path(sys.executable).parent / "mergekit-yaml"
    found = str(here) if here.is_file() else shutil.which("mergekit-yaml")
    if found is None:
        pytest.skip(f"mergekit-yaml not found: install the `mergekit` extra ({install_hint('mergekit')})")
    return found


@pytest.mark.parametrize(
    ("name", "method"),
    [("ta", "task_arithmetic"), ("ties", {"name": "ties", "density": 0.3})],
)
def test_mergekit_yaml_on_the_written_recipe_reproduces_merged(workspace, tmp_path, name, method, record_property):  # noqa: F811
    from safetensors.torch import load_file

    cli = mergekit_yaml()
    # random search, seed 2: the reported λ has both signs and no 0/1 entries (the tiny tasks' scores are flat, so
    # the first point is the best; an EvoGM run would report its first point, a corner, here)
    settings = {"method": method, "baselines": False, "optimizer": {"name": "random", "budget": 6, "seed": 2}}
    quiet_run(write_config(workspace, f"recipe-{name}", **settings))
    merged = workspace / "runs" / f"recipe-{name}" / "merged"
    recipe = yaml.safe_load((merged / RECIPE).read_text())
    assert recipe["merge_method"] == (method if isinstance(method, str) else method["name"])
    weights = [m["parameters"]["weight"] for m in recipe["models"]]
    assert min(weights) < 0 < max(weights) and not set(weights) & {0.0, 1.0}
    assert [m["model"] for m in recipe["models"]] == [
        f"{workspace / 'base'}+{workspace / f'expert{i}'}" for i in range(3)
    ]
    out = tmp_path / "out"
    cmd = [cli, str(merged / RECIPE), str(out), "--lora-merge-cache", str(tmp_path / "cache"), "--quiet"]
    r = subprocess.run([*cmd, "--no-copy-tokenizer", "--no-write-model-card"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    ours, theirs = load_file(str(merged / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert set(ours) == set(theirs)
    errs = {k: (ours[k].float() - theirs[k].float()).abs().max().item() for k in ours}
    record_property("max_abs_diff", max(errs.values()))
    worst = max(errs, key=errs.get)
    assert errs[worst] <= TOL, f"{worst}: max |merged/ − mergekit-yaml| = {errs[worst]:.3g}"
    base = load_file(str(workspace / "base" / "model.safetensors"))
    assert max((ours[k] - base[k]).abs().max().item() for k in ours) > 1e-3  # the recipe merged something


def test_recipe_says_why_mergekit_cannot_reproduce_the_merge(workspace):  # noqa: F811
    per_expert = make_layout("per_expert", ["w"], 3)
    plain = {"lambda": [0.5, 0.2, 0.1], "basis_version": None, "coordinates": None}
    shifted = {"lambda": [0.5, 0.2, 0.1], "basis_version": 2, "coordinates": [0.3, 0.1, 0.0]}

    def why(best, layout=per_expert, **overrides):
        return why_not_mergekit(parse_config(config_dict(**overrides), workspace), best, layout)

    assert why(plain) is None and why(plain, method="ties") is None
    assert "basis shift" in why(shifted, method="ties") and "shift_rows" in why(shifted, method="ties")
    groups = make_layout("per_module_type", ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.w"], 3)
    assert "coefficients" in why(plain, groups)


def test_after_a_basis_shift_the_recipe_is_comments_only_and_points_to_the_shift_rows(workspace):  # noqa: F811
    cfg = parse_config(config_dict(method="ties"), workspace)
    shifted = {"lambda": [0.5, 0.2, 0.1], "basis_version": 1, "coordinates": [0.3, 0.1, 0.0]}
    text = recipe_text(cfg, [], shifted, make_layout("per_expert", ["w"], 3))
    assert all(line.startswith("#") for line in text.splitlines()) and yaml.safe_load(text) is None
    assert "cannot reproduce merged/" in text and "shift_rows" in text


def test_written_recipe_validates_as_mergekits_config(workspace):  # noqa: F811
    mergekit_config = pytest.importorskip("mergekit.config", reason="the `mergekit` extra")
    settings = {"method": {"name": "dare_ties", "density": 0.5, "seed": 4}, "baselines": False, "dtype": "bfloat16"}
    quiet_run(write_config(workspace, "recipe-dare", optimizer={"budget": 4}, **settings))
    text = (workspace / "runs" / "recipe-dare" / "merged" / RECIPE).read_text()
    recipe = yaml.safe_load(text)
    mergekit_config.MergeConfiguration.model_validate(recipe)
    assert "seed" not in recipe["parameters"] and "in distribution" in text
    assert recipe["dtype"] == "float32" and recipe["out_dtype"] == "bfloat16"
    assert all(m["parameters"]["density"] == 0.5 for m in recipe["models"])


def test_merged_has_a_model_card_with_experts_lambda_scores_against_baselines_and_the_command(workspace):  # noqa: F811
    path = write_config(workspace, "card", method={"name": "ties", "density": 0.5}, optimizer={"budget": 4})
    cmd = [sys.executable, "-m", "evogm_opt.cli", "merge", str(path), "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    out = workspace / "runs" / "card"
    card = (out / "merged" / "README.md").read_text()
    assert card.startswith(f"---\nbase_model: {workspace / 'base'}\n")
    for expert in ("expert0", "second", "expert2"):
        assert expert in card
    assert "ties" in card and "'density': 0.5" in card
    results = json.loads((out / "results.json").read_text())
    lam = results["best"]["lambda"]
    assert "| all | " + " | ".join(f"{w:+.4f}" for w in lam) + " |" in card  # λ per expert, one group
    assert results["table"] in card and "uniform TA (λ = 1/N)" in card and "| model | seen val |" in card
    assert f"    evogm-opt merge {path} --quiet\n" in card


def test_a_mergekit_recipe_given_to_evogm_opt_merge_is_refused_with_our_schema_for_it(tmp_path):
    recipe = {
        "merge_method": "ties",
        "base_model": "Qwen/Qwen2.5-1.5B",
        "models": [
            {"model": "Qwen/Qwen2.5-1.5B+adapters/math", "parameters": {"weight": 0.7, "density": 0.4}},
            {"model": "tuned/code", "parameters": {"weight": 0.3, "density": 0.4}},
        ],
        "parameters": {"normalize": True},
        "dtype": "bfloat16",
    }
    path = tmp_path / "mergekit.yml"
    path.write_text(yaml.safe_dump(recipe))
    r = subprocess.run([sys.executable, "-m", "evogm_opt.cli", "merge", str(path)], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "unknown keys" not in r.stderr and "this is a mergekit recipe" in r.stderr
    assert "base: Qwen/Qwen2.5-1.5B" in r.stderr and "experts: [adapters/math, tuned/code]" in r.stderr
    assert "method: {name: ties, normalize: True, density: 0.4}" in r.stderr
    assert "weights are not copied: they become the searched coefficients" in r.stderr
    assert not (tmp_path / "merge-run").exists()  # nothing written
