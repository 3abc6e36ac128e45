"""Our task arithmetic, TIES, DARE-linear and DARE-TIES against mergekit itself (the ``mergekit`` extra).

Two levels, both through mergekit's own code: its tensor API (``mergekit.merge_methods.merge_tensors``, which runs
the registered generalized-task-arithmetic methods) on the same fp32 tensors, dense experts and LoRA experts in
mergekit's ``base+lora`` form (W₀ + s·B·A); and ``run_merge`` (what ``mergekit-yaml`` runs) on a tiny random Llama
saved to disk, with a full fine-tune and peft adapters that mergekit merges itself. DARE's masks are drawn by
each side from a torch generator seeded the same way (``llm_merge.merges.mask_seed``), and compared in
distribution over seeds. Each test records the max abs difference it measured (``record_property``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from evogm_opt.cli_faults import install_hint

mergekit = pytest.importorskip(
    "mergekit", reason=f"mergekit is not importable: install the `mergekit` extra ({install_hint('mergekit')})"
)
transformers = pytest.importorskip("transformers", reason="the llm_merge adapter needs the `llm` extra")
peft = pytest.importorskip("peft", reason="the llm_merge adapter needs the `llm` extra")

from llm_merge.merges import get_method  # noqa: E402
from llm_merge.merges.sparsify import mask_seed  # noqa: E402
from llm_merge.model.experts import LoraFactors, dense_expert, load_lora_expert  # noqa: E402
from llm_merge.model.fitness import MergeFitness  # noqa: E402
from mergekit.merge_methods import merge_tensors  # noqa: E402

TOL = 1e-6
POSITIVE = [0.6, 0.9, 0.3, 1.2]
MIXED = [0.8, -0.5, 1.1, -0.3]
# (method, options): mergekit's defaults first, then the knobs one by one
CASES = [
    ("task_arithmetic", {}),
    ("task_arithmetic", {"normalize": True, "lambda": 0.8}),
    ("ties", {}),
    ("ties", {"density": 0.2}),
    ("ties", {"density": 0.2, "normalize": False}),
    ("ties", {"density": 0.5, "rescale": True, "lambda": 1.5}),
    ("dare_linear", {"density": 0.5}),
    ("dare_linear", {"density": 0.3, "rescale": False, "normalize": True}),
    ("dare_ties", {"density": 0.5}),
    ("dare_ties", {"density": 0.4, "normalize": True, "lambda": 0.7}),
]


def mergekit_parameters(options: dict, weights) -> dict:
    """Our options as mergekit parameters: the same names, minus our DARE ``seed`` (mergekit uses torch's RNG)."""
    return {**{k: v for k, v in options.items() if k != "seed"}, "weight": list(weights)}


def experts_for_one_tensor(seed: int = 0, shape=(24, 40)):
    """A base tensor like a model's (std 0.02), two dense experts (θ_i − θ₀ computed in fp32, as ``dense_expert``
    does and as mergekit does) and two LoRA experts (exact s·B·A; mergekit sees W₀ + s·B·A)."""
    g = torch.Generator().manual_seed(seed)
    base = 0.02 * torch.randn(shape, generator=g)
    models, deltas = [], []
    for scale in (0.004, 0.01):
        tuned = base + scale * torch.randn(shape, generator=g)
        models.append(tuned)
        deltas.append(dense_expert("d", {"w": base}, {"w": tuned}).delta("w"))
    for rank, alpha in ((4, 8.0), (2, 16.0)):
        a = 0.1 * torch.randn(rank, shape[1], generator=g)
        b = 0.05 * torch.randn(shape[0], rank, generator=g)
        factors = LoraFactors(a, b, alpha / rank)
        models.append(base + factors.delta())  # mergekit's base+lora: peft adds s·B·A to W₀
        deltas.append(factors.delta())
    return base, models, deltas


def ours(method, base, deltas, weights, param="w"):
    return method.merge(base, method.prepare(param, deltas), torch.tensor(weights, dtype=torch.float32))


def theirs(name, options, base, models, weights, param="w"):
    if name.startswith("dare"):
        torch.manual_seed(mask_seed(options.get("seed", 0), param))  # mergekit draws from torch's global generator
    params = mergekit_parameters(options, weights)
    return merge_tensors([base, *models], name, base_index=0, parameters=params, dtype=torch.float32)


@pytest.mark.parametrize("weights", [POSITIVE, MIXED], ids=["positive", "mixed-sign"])
@pytest.mark.parametrize(("name", "options"), CASES, ids=[f"{n}-{o}" for n, o in CASES])
def test_tensor_merge_equals_mergekits(name, options, weights, record_property):
    base, models, deltas = experts_for_one_tensor()
    mine = ours(get_method(name, **options), base, deltas, weights)
    reference = theirs(name, options, base, models, weights)
    err = (mine - reference).abs().max().item()
    record_property("max_abs_diff", err)
    assert err <= TOL, f"{name} {options} λ={weights}: max |ours − mergekit| = {err:.3g}"
    assert (mine - base).abs().max() > 100 * TOL  # a merge that changed something


@pytest.mark.parametrize("name", ["ties", "dare_ties"])
def test_dense_only_and_lora_only_experts_equal_mergekits(name, record_property):
    base, models, deltas = experts_for_one_tensor(seed=1)
    method = get_method(name, density=0.3)
    errs = []
    for pick in ([0, 1], [2, 3]):  # two full fine-tunes; two LoRA adapters
        sub_models, sub_deltas = [models[i] for i in pick], [deltas[i] for i in pick]
        mine = ours(method, base, sub_deltas, [0.9, -0.6])
        errs.append((mine - theirs(name, {"density": 0.3}, base, sub_models, [0.9, -0.6])).abs().max().item())
    record_property("max_abs_diff", max(errs))
    assert max(errs) <= TOL


def test_dare_masks_are_mergekits_when_seeded_the_same_way():
    base, models, deltas = experts_for_one_tensor(seed=2)
    dare = get_method("dare_linear", density=0.5, seed=11, rescale=False)
    kept = [p != 0 for p in dare.prepare("w", deltas)]
    torch.manual_seed(mask_seed(11, "w"))
    from mergekit.sparsify import SparsificationMethod, sparsify

    for mask, delta in zip(kept, deltas):
        assert torch.equal(mask, sparsify(delta, density=0.5, method=SparsificationMethod.random) != 0)
    other_seed = theirs("dare_linear", {"density": 0.5, "seed": 12}, base, models, POSITIVE)
    assert (
        ours(get_method("dare_linear", density=0.5, seed=11), base, deltas, POSITIVE) - other_seed
    ).abs().max() > 1e-4


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("dare_linear", {"density": 0.5}),
        ("dare_linear", {"density": 0.3, "rescale": False}),
        ("dare_ties", {"density": 0.5}),
        ("dare_ties", {"density": 0.4, "normalize": True}),
    ],
)
def test_dare_in_distribution_over_seeds(name, options, record_property):
    """Independent draws (ours seeded 0…K−1, mergekit's global generator seeded apart from ours): the mean merges
    agree entry by entry within 5.5 standard errors, and for DARE-linear equal the expectation."""
    draws = 300
    base, models, deltas = experts_for_one_tensor(seed=3, shape=(10, 12))
    weights = [0.8, -0.5, 1.1, -0.3]
    mine = torch.stack([ours(get_method(name, seed=k, **options), base, deltas, weights) for k in range(draws)])
    reference = []
    for k in range(draws):
        torch.manual_seed(10**6 + k)
        params = mergekit_parameters(options, weights)
        reference.append(merge_tensors([base, *models], name, base_index=0, parameters=params, dtype=torch.float32))
    mk = torch.stack(reference)
    se = (mine.var(dim=0) / draws + mk.var(dim=0) / draws).sqrt() + 1e-9
    z = ((mine.mean(dim=0) - mk.mean(dim=0)).abs() / se).max().item()
    record_property("max_z_ours_vs_mergekit", z)
    record_property("max_abs_diff_of_means", (mine.mean(dim=0) - mk.mean(dim=0)).abs().max().item())
    assert z < 5.5, f"mean merges differ by {z:.2f} standard errors"
    if name == "dare_linear":
        w = torch.tensor(weights).view(-1, 1, 1)
        full = (w * torch.stack(deltas)).sum(dim=0)
        scale = options.get("lambda", 1.0) / (w.sum() if options.get("normalize") else 1.0)
        expected = base + scale * (full if options.get("rescale", True) else options["density"] * full)
        for sample in (mine, mk):
            z_exp = ((sample.mean(dim=0) - expected).abs() / (sample.var(dim=0) / draws).sqrt().clamp_min(1e-9)).max()
            assert z_exp < 5.5, f"mean merge is {z_exp:.2f} standard errors from the expectation"


# --- end to end: mergekit's run_merge (mergekit-yaml's code path) on a tiny Llama saved to disk -----------------


def tiny_llama(seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    return transformers.AutoModelForCausalLM.from_config(config).float().eval()


@pytest.fixture(scope="module")
def llama_workspace(tmp_path_factory):
    """base/, one full fine-tune (every tensor moved), two peft LoRA adapters with different targets and ranks."""
    root = tmp_path_factory.mktemp("mergekit")
    tiny_llama().save_pretrained(root / "base")
    tuned = tiny_llama()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    tuned.save_pretrained(root / "tuned")
    for i, (targets, rank) in enumerate(((["q_proj", "v_proj", "down_proj"], 4), (["q_proj", "o_proj", "up_proj"], 2))):
        model = transformers.AutoModelForCausalLM.from_pretrained(root / "base")
        lora = peft.get_peft_model(model, peft.LoraConfig(r=rank, lora_alpha=8, target_modules=targets))
        torch.manual_seed(20 + i)
        with torch.no_grad():
            for n, p in lora.named_parameters():
                if "lora_" in n:
                    p.normal_(0, 0.2)
        lora.save_pretrained(root / f"lora{i}")
    return root


def base_and_experts(root: Path):
    """The workspace's base model (fp32), a copy of its weights, and its three experts as ours (full fine-tune, then
    the two LoRA adapters: mergekit's model order)."""
    model = transformers.AutoModelForCausalLM.from_pretrained(root / "base").float()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    pristine = {k: v.clone() for k, v in model.state_dict().items()}
    tuned = transformers.AutoModelForCausalLM.from_pretrained(root / "tuned").float().state_dict()
    experts = [
        dense_expert("tuned", pristine, tuned),
        load_lora_expert(root / "lora0", shapes, base_name=str(root / "base"), on_other_base="error"),
        load_lora_expert(root / "lora1", shapes, base_name=str(root / "base"), on_other_base="error"),
    ]
    return model, pristine, experts


def run_mergekit(root: Path, name: str, options: dict, weights, out: Path) -> dict[str, torch.Tensor]:
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions
    from safetensors.torch import load_file

    sources = [str(root / "tuned"), f"{root / 'base'}+{root / 'lora0'}", f"{root / 'base'}+{root / 'lora1'}"]
    density = {"density": options["density"]} if "density" in options else {}
    shared = {k: v for k, v in options.items() if k not in ("density", "seed")}
    config = {
        "merge_method": name,
        "base_model": str(root / "base"),
        "dtype": "float32",
        "models": [{"model": s, "parameters": {"weight": w, **density}} for s, w in zip(sources, weights)],
        **({"parameters": shared} if shared else {}),
    }
    options_mk = MergeOptions(
        lora_merge_cache=str(root / "lora-cache"), copy_tokenizer=False, write_model_card=False, quiet=True
    )
    run_merge(MergeConfiguration.model_validate(config), str(out), options=options_mk)
    return load_file(str(out / "model.safetensors"))


@pytest.mark.parametrize(
    ("name", "options", "weights"),
    [
        ("task_arithmetic", {}, [0.7, -0.4, 0.5]),
        ("ties", {"density": 0.3}, [0.7, 0.4, 0.5]),
        ("ties", {"density": 0.3}, [0.7, -0.4, 0.5]),
        ("ties", {"density": 0.3, "normalize": False}, [0.7, -0.4, 0.5]),
        ("dare_linear", {"density": 0.5, "seed": 3}, [0.7, -0.4, 0.5]),
        ("dare_ties", {"density": 0.5, "seed": 3}, [0.7, -0.4, 0.5]),
    ],
)
def test_mergekit_yaml_run_on_a_tiny_llama_equals_our_merge(
    llama_workspace, tmp_path, monkeypatch, name, options, weights, record_property
):
    root = llama_workspace
    if name.startswith("dare"):  # seed mergekit's generator per tensor as ours is seeded (mask_seed)
        from mergekit.merge_methods.generalized_task_arithmetic import GeneralizedTaskArithmeticMerge

        original = GeneralizedTaskArithmeticMerge.merge_group

        def seeded(self, group, **parameters):
            torch.manual_seed(mask_seed(options["seed"], group.metadata.name))
            return original(self, group, **parameters)

        monkeypatch.setattr(GeneralizedTaskArithmeticMerge, "merge_group", seeded)
    reference = run_mergekit(root, name, options, weights, tmp_path / "out")

    model, pristine, experts = base_and_experts(root)
    fitness = MergeFitness(model, None, experts, [], method=get_method(name, **options))
    fitness.apply(np.array(weights))
    merged = model.state_dict()
    assert set(reference) == set(merged)
    errs = {k: (merged[k] - reference[k]).abs().max().item() for k in reference}
    record_property("max_abs_diff", max(errs.values()))
    worst = max(errs, key=errs.get)
    assert errs[worst] <= TOL, f"{worst}: max |ours − mergekit| = {errs[worst]:.3g}"
    assert max((merged[k] - pristine[k]).abs().max().item() for k in merged) > 1e-3
