"""Every mergekit method is searchable (the ``mergekit`` extra): a method of mergekit's registry, computed by mergekit
itself per candidate (``llm_merge.merges.mergekit_methods``), with one of its per-model parameters as the searched λ.

The merges are compared with mergekit's ``run_merge`` (what ``mergekit-yaml`` runs) on the same recipe: a tiny
random Llama saved to disk, a full fine-tune and two peft adapters that mergekit merges itself, fp32, every tensor
within 1e-6. Random methods (DELLA, DARE) are compared entry by entry: both sides seed torch's generator with
``mask_seed(seed, tensor)`` before each tensor. Each test records the max abs difference it measured.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from evogm_opt.cli_faults import install_hint

mergekit = pytest.importorskip(
    "mergekit", reason=f"mergekit is not importable: install the `mergekit` extra ({install_hint('mergekit')})"
)
transformers = pytest.importorskip("transformers", reason="the llm_merge adapter needs the `llm` extra")
yaml = pytest.importorskip("yaml", reason="the llm_merge adapter needs the `llm` extra")

from llm_merge.merges import get_method  # noqa: E402
from llm_merge.merges.mergekit_methods import MergekitMethod, seeded_torch  # noqa: E402
from llm_merge.merges.sparsify import mask_seed  # noqa: E402
from llm_merge.model.fitness import MergeFitness  # noqa: E402
from llm_merge.run.config import ConfigError, parse_config  # noqa: E402
from llm_merge.run.recipes import RECIPE  # noqa: E402

from tests.test_llm_merge_mergekit import base_and_experts, llama_workspace  # noqa: E402, F401
from tests.test_llm_merge_recipes import mergekit_yaml  # noqa: E402
from tests.test_llm_merge_run import config_dict, quiet_run, workspace, write_config  # noqa: E402, F401

TOL = 1e-6


@pytest.fixture
def seeded_mergekit(monkeypatch):
    """mergekit's per-tensor task seeds torch's generator with ``mask_seed(seed, tensor)``, as the search does."""
    from mergekit.merge_methods.task_adapter import ExecuteMergeMethodTask

    original = ExecuteMergeMethodTask.execute

    def use_seed(seed: int) -> None:
        def seeded(self, tensors, **kwargs):
            with seeded_torch(mask_seed(seed, self.output_weight.name), torch.device("cpu")):
                return original(self, tensors, **kwargs)

        monkeypatch.setattr(ExecuteMergeMethodTask, "execute", seeded)

    return use_seed


def run_merge_on(recipe: dict, out: Path, cache: Path) -> dict[str, torch.Tensor]:
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions
    from safetensors.torch import load_file

    options = MergeOptions(lora_merge_cache=str(cache), copy_tokenizer=False, write_model_card=False, quiet=True)
    run_merge(MergeConfiguration.model_validate(recipe), str(out), options=options)
    return load_file(str(out / "model.safetensors"))


def max_abs_diff(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> tuple[str, float]:
    assert set(ours) == set(theirs)
    errs = {k: (ours[k].float() - theirs[k].float()).abs().max().item() for k in ours}
    worst = max(errs, key=errs.get)
    return worst, errs[worst]


# (method, our options, λ): mergekit's own methods through the generic path — TA as mergekit computes it, the
# GTA family's sparsifications (random: DARE, DELLA; magnitude outliers: breadcrumbs) and two that are not task
# arithmetic (linear ignores the base and merges every tensor; multislerp interpolates whole tensors)
CASES = [
    ("task_arithmetic", {"backend": "mergekit"}, [0.7, -0.4, 0.5]),
    ("ties", {"backend": "mergekit", "density": 0.3}, [0.7, -0.4, 0.5]),
    ("dare_ties", {"backend": "mergekit", "density": 0.5, "seed": 3}, [0.7, -0.4, 0.5]),
    ("della", {"density": 0.5, "epsilon": 0.1, "seed": 3}, [0.7, -0.4, 0.5]),
    ("della_linear", {"density": 0.6, "epsilon": 0.2, "seed": 5}, [0.7, 0.4, 0.5]),
    ("breadcrumbs", {"density": 0.8, "gamma": 0.05}, [0.7, -0.4, 0.5]),
    ("breadcrumbs_ties", {"density": 0.7, "gamma": 0.1}, [0.7, -0.4, 0.5]),
    ("linear", {}, [0.7, 0.4, 0.5]),
    ("multislerp", {}, [0.7, 0.4, 0.5]),
]


def recipe_for(root: Path, name: str, options: dict, weights) -> dict:
    """The mergekit recipe of the merge: what the run's ``merged/mergekit.yml`` writer produces."""
    method = get_method(name, **options)
    shared, per_model = method.mergekit_parameters()
    sources = [str(root / "tuned"), f"{root / 'base'}+{root / 'lora0'}", f"{root / 'base'}+{root / 'lora1'}"]
    recipe = {
        "merge_method": name,
        "dtype": "float32",
        "models": [{"model": s, "parameters": {method.coefficient: w, **per_model}} for s, w in zip(sources, weights)],
        "parameters": shared,
    }
    if method.takes_base:
        recipe["base_model"] = str(root / "base")
    return recipe


@pytest.mark.parametrize(("name", "options", "weights"), CASES, ids=[c[0] for c in CASES])
def test_a_mergekit_computed_merge_equals_run_merge_on_the_same_recipe(
    llama_workspace,  # noqa: F811
    tmp_path,
    seeded_mergekit,
    name,
    options,
    weights,
    record_property,
):
    root = llama_workspace
    method = get_method(name, **options)
    assert isinstance(method, MergekitMethod)
    seeded_mergekit(method.seed)
    reference = run_merge_on(recipe_for(root, name, options, weights), tmp_path / "out", root / "lora-cache")

    model, pristine, experts = base_and_experts(root)
    MergeFitness(model, None, experts, [], method=method).apply(np.array(weights))
    worst, err = max_abs_diff(model.state_dict(), reference)
    record_property("max_abs_diff", err)
    assert err <= TOL, f"{name} {worst}: max |ours − mergekit| = {err:.3g}"
    assert max((model.state_dict()[k] - pristine[k]).abs().max().item() for k in pristine) > 1e-3


def test_random_methods_draw_the_same_masks_for_every_candidate_and_others_for_another_seed():
    g = torch.Generator().manual_seed(0)
    base = 0.02 * torch.randn(16, 24, generator=g)
    deltas = [0.01 * torch.randn(16, 24, generator=g) for _ in range(3)]
    della = get_method("della", density=0.5, epsilon=0.1, seed=1)
    prepared = della.prepare_with_base("w", deltas, base)
    w = torch.tensor([0.6, -0.3, 0.9])
    before = torch.random.get_rng_state()
    first = della.merge(base, prepared, w)
    assert torch.equal(torch.random.get_rng_state(), before)  # torch's own generator is left as it was
    assert torch.equal(della.merge(base, prepared, w), first)
    other = get_method("della", density=0.5, epsilon=0.1, seed=2)
    assert not torch.equal(other.merge(base, other.prepare_with_base("w", deltas, base), w), first)
    assert della.stochastic(3) and not get_method("breadcrumbs", density=0.8).stochastic(3)


def test_methods_that_merge_whole_tensors_rewrite_every_tensor_those_of_task_vectors_only_the_touched(workspace):  # noqa: F811
    from llm_merge.model.fitness import merged_parameters
    from llm_merge.model.loading import load_expert

    from tests.test_llm_merge_experts import tiny_qwen

    model = tiny_qwen()
    experts = [load_expert(workspace / f"expert{i}", model, None, on_other_base="ignore") for i in range(2)]
    touched = sorted(set().union(*(e.params for e in experts)))
    assert merged_parameters(model, experts, get_method("della", density=0.5)) == touched
    assert merged_parameters(model, experts, get_method("linear")) == sorted(n for n, _ in model.named_parameters())


# --- the schema: everything checked before a model loads, one line each ---------------------------------------


def parse(workspace: Path, method, **overrides):  # noqa: F811
    return parse_config(config_dict(method=method, **overrides), workspace)


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ({"name": "dela"}, "not one of ours (dare_linear, dare_ties, task_arithmetic, ties) nor of mergekit's ("),
        ({"name": "della", "densty": 0.5}, "method della: unknown parameter 'densty'; allowed: backend, "),
        ({"name": "della", "coefficient": "gamma"}, "per-model numeric parameters (density, epsilon, weight)"),
        ({"name": "della", "weight": 0.5}, "weight is the searched coefficient"),
        ({"name": "della", "density": [0.2, 0.5]}, "one value (the same for every expert)"),
        ({"name": "della", "density": "half"}, "density must be a float"),
        ("model_stock", "no per-model parameter for it (its parameters: filter_wise)"),
        ({"name": "slerp", "t": 0.5}, "no per-model parameter"),
        ("nuslerp", "method nuslerp with 3 experts: Merge method requires exactly 2 non-base inputs"),
        ({"name": "della", "backend": "evogm"}, "backend evogm computes dare_linear, dare_ties"),
        ({"name": "ties", "backend": "gpu"}, "backend must be evogm or mergekit"),
        ({"name": "della", "density": 0.5, "coefficient": "epsilon"}, "mergekit has no default for weight"),
        # DELLA needs density ± epsilon inside (0, 1): searching epsilon over the default box [-1, 1] cannot work
        (
            {"name": "della", "density": 0.5, "coefficient": "epsilon", "weight": 1.0},
            "fails to merge at epsilon = -1, an end of the searched range",
        ),
        ({"name": "della", "density": 0.9, "epsilon": 0.15}, "Epsilon must be chosen such that"),
    ],
)
def test_a_bad_mergekit_method_entry_is_one_config_error_before_loading(workspace, method, message):  # noqa: F811
    with pytest.raises(ConfigError) as info:
        parse(workspace, method)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_mergekit_method_entry_parses_and_its_coefficient_may_be_another_per_model_parameter(workspace):  # noqa: F811
    cfg = parse(workspace, {"name": "della", "density": 0.5, "epsilon": 0.1, "seed": 4})
    assert cfg.method == "della" and cfg.method_options == {"density": 0.5, "epsilon": 0.1, "seed": 4}
    searched = {"name": "della", "coefficient": "density", "weight": 1.0, "epsilon": 0.05}
    cfg = parse(workspace, searched, optimizer={"name": "random", "options": {"bounds": [0.1, 0.9]}})
    method = get_method(cfg.method, **cfg.method_options)
    assert method.coefficient == "density" and method.options["weight"] == 1.0
    assert parse(workspace, {"name": "task_arithmetic", "backend": "mergekit"}).method_options["backend"] == "mergekit"


def test_a_della_recipe_given_as_our_config_is_refused_with_the_entry_that_searches_it(workspace):  # noqa: F811
    shared = {"density": 0.5, "epsilon": 0.1}
    recipe = {
        "merge_method": "della",
        "base_model": "base",
        "models": [{"model": f"base+expert{i}", "parameters": {"weight": 0.7 - 0.4 * i, **shared}} for i in (0, 1)],
        "parameters": {"lambda": 0.9},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(recipe, workspace)
    assert "method: {name: della, lambda: 0.9, density: 0.5, epsilon: 0.1}" in str(info.value)
    assert parse(workspace, {"name": "della", "lambda": 0.9, **shared}).method == "della"  # and that entry parses


def test_without_mergekit_a_mergekit_method_says_how_to_install_it(workspace, monkeypatch):  # noqa: F811
    monkeypatch.setitem(sys.modules, "mergekit", None)  # import mergekit raises ImportError
    with pytest.raises(ConfigError, match=re.escape(install_hint("mergekit"))):
        parse(workspace, {"name": "della", "density": 0.5})
    with pytest.raises(ConfigError, match=re.escape(install_hint("mergekit"))):
        parse(workspace, {"name": "task_arithmetic", "backend": "mergekit"})
    assert parse(workspace, {"name": "ties", "density": 0.5}).method == "ties"  # ours need no mergekit


# --- end to end: a search from a YAML config and its mergekit.yml --------------------------------------------


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("della", {"name": "della", "density": 0.5, "epsilon": 0.1, "seed": 2}),
        ("breadcrumbs", {"name": "breadcrumbs", "density": 0.8, "gamma": 0.05}),
    ],
)
def test_a_search_with_a_mergekit_method_writes_a_recipe_that_reproduces_merged(
    workspace,  # noqa: F811
    tmp_path,
    seeded_mergekit,
    name,
    method,
    record_property,
):
    from safetensors.torch import load_file

    settings = {"method": method, "baselines": False, "optimizer": {"name": "random", "budget": 6, "seed": 2}}
    result = quiet_run(write_config(workspace, f"mk-{name}", **settings))
    assert result.results["n_evals"] == 6
    merged = workspace / "runs" / f"mk-{name}" / "merged"
    ours = load_file(str(merged / "model.safetensors"))
    text = (merged / RECIPE).read_text()
    recipe = yaml.safe_load(text)
    assert recipe["merge_method"] == name and ("in distribution" in text) == (name == "della")
    weights = [m["parameters"]["weight"] for m in recipe["models"]]
    assert weights == pytest.approx(result.results["best"]["lambda"], abs=0) and min(weights) < 0 < max(weights)
    out = tmp_path / "out"
    if name == "della":  # random masks: mergekit's run_merge, seeded per tensor as the search was
        seeded_mergekit(method["seed"])
        theirs = run_merge_on(recipe, out, tmp_path / "cache")
    else:  # deterministic: mergekit's own CLI on the written file
        cmd = [mergekit_yaml(), str(merged / RECIPE), str(out), "--lora-merge-cache", str(tmp_path / "cache")]
        r = subprocess.run([*cmd, "--quiet", "--no-copy-tokenizer"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        theirs = load_file(str(out / "model.safetensors"))
    worst, err = max_abs_diff(ours, theirs)
    record_property("max_abs_diff", err)
    assert err <= TOL, f"{worst}: max |merged/ − mergekit| = {err:.3g}"
    base = load_file(str(workspace / "base" / "model.safetensors"))
    assert max((ours[k] - base[k]).abs().max().item() for k in ours) > 1e-3  # the recipe merged something


@pytest.mark.parametrize(
    "method", [{"name": "della", "coefficient": "density", "weight": 1.0, "epsilon": 0.05}, "ties"]
)
def test_evogm_with_other_bounds_than_the_unit_box_is_refused_for_a_nonlinear_merge(workspace, method):  # noqa: F811
    """Under EvoGM a nonlinear merge is scored at the basis coordinates in [-1, 1], not at the bounded x."""
    optimizer = {"name": "evogm", "options": {"bounds": [0.1, 0.9]}}
    with pytest.raises(ConfigError, match=r"^optimizer.options.bounds: .* use cmaes") as info:
        parse(workspace, method, optimizer=optimizer)
    assert "\n" not in str(info.value)
    assert parse(workspace, "task_arithmetic", optimizer=optimizer).optimizer.options["bounds"] == [0.1, 0.9]
