"""llm_merge experts and merges on a tiny random-init Qwen2 model with real peft LoRA adapters (no downloads)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the llm_merge adapter needs the `llm` extra")
peft = pytest.importorskip("peft", reason="the llm_merge adapter needs the `llm` extra")

from llm_merge import ExpertError, dense_expert, get_method, load_lora_expert, validate_method  # noqa: E402


def tiny_qwen(seed: int = 0, hidden: int = 32, vocab: int = 64):
    torch.manual_seed(seed)
    config = transformers.Qwen2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    return transformers.AutoModelForCausalLM.from_config(config).float().eval()


def make_adapter(folder: Path, seed: int, **lora_kwargs) -> Path:
    base = tiny_qwen()
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], **lora_kwargs)
    model = peft.get_peft_model(base, config)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "lora_A" in name:
                p.normal_(0, 0.2)
    model.save_pretrained(folder)
    return folder


def base_shapes(model) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"use_rslora": True},
        {"rank_pattern": {"v_proj": 2}, "alpha_pattern": {"down_proj": 3}},
        {"rank_pattern": {r"layers\.1\..*v_proj": 2}, "alpha_pattern": {r"layers\.1\..*down_proj": 2}},
        {
            "use_rslora": True,
            "rank_pattern": {r"layers\.[01]\.self_attn\.q_proj": 2},
            "alpha_pattern": {r".*\.0\.mlp\..*": 16},
        },
    ],
)
def test_lora_task_vector_is_exact_against_peft_merge_and_unload(tmp_path, extra):
    folder = make_adapter(tmp_path / "a", seed=1, **extra)
    base = tiny_qwen()
    expert = load_lora_expert(folder, base_shapes(base))
    merged_ref = peft.PeftModel.from_pretrained(tiny_qwen(), folder).merge_and_unload().eval()
    ta = get_method("task_arithmetic")
    state = {k: v.clone() for k, v in base.state_dict().items()}
    for param in expert.params:
        state[param] = ta.merge(state[param], [expert.delta(param)], torch.tensor([1.0]))
    base.load_state_dict(state)
    ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(base(ids).logits, merged_ref(ids).logits, atol=1e-5, rtol=1e-5)
    ref_state = merged_ref.state_dict()
    for param in expert.params:
        torch.testing.assert_close(state[param], ref_state[param], atol=1e-6, rtol=1e-5)


def peft_delta_errors(folder: Path) -> dict[str, float]:
    """max |ΔW_ours − ΔW_peft| per module, ΔW_peft = peft's merge_and_unload − the base (fp32)."""
    base = tiny_qwen()
    expert = load_lora_expert(folder, base_shapes(base))
    merged = peft.PeftModel.from_pretrained(tiny_qwen(), folder).merge_and_unload().state_dict()
    pristine = base.state_dict()
    assert {k for k in merged if not torch.equal(merged[k], pristine[k])} <= expert.params
    return {p: (expert.delta(p) - (merged[p] - pristine[p])).abs().max().item() for p in expert.params}


def test_alpha_pattern_keys_are_regexes_matched_on_the_end_of_the_module_name(tmp_path):
    folder = make_adapter(tmp_path / "a", seed=1, alpha_pattern={r"layers\.1\..*down_proj": 2})
    expert = load_lora_expert(folder, base_shapes(tiny_qwen()))
    assert expert.factors["model.layers.1.mlp.down_proj.weight"].scaling == 0.5  # peft: α = 2 from the pattern, r = 4
    assert expert.factors["model.layers.0.mlp.down_proj.weight"].scaling == 2.0  # no match: lora_alpha / r = 8 / 4
    assert max(peft_delta_errors(folder).values()) <= 1e-6


def test_rank_pattern_keys_are_regexes_too(tmp_path):
    folder = make_adapter(tmp_path / "a", seed=1, rank_pattern={r"layers\.\d\.self_attn\.(q|v)_proj": 2})
    expert = load_lora_expert(folder, base_shapes(tiny_qwen()))
    f = expert.factors["model.layers.1.self_attn.v_proj.weight"]
    assert f.a.shape[0] == 2 and f.scaling == 4.0  # r = 2 from the pattern: α / r = 8 / 2
    assert expert.factors["model.layers.1.mlp.down_proj.weight"].a.shape[0] == 4
    assert max(peft_delta_errors(folder).values()) <= 1e-6


def test_rslora_scale_is_alpha_over_sqrt_r_as_in_peft(tmp_path):
    folder = make_adapter(tmp_path / "a", seed=1, use_rslora=True, rank_pattern={r".*\.1\.mlp\.down_proj": 2})
    expert = load_lora_expert(folder, base_shapes(tiny_qwen()))
    assert expert.factors["model.layers.1.mlp.down_proj.weight"].scaling == pytest.approx(8 / 2**0.5)
    assert expert.factors["model.layers.0.mlp.down_proj.weight"].scaling == pytest.approx(8 / 2)
    assert max(peft_delta_errors(folder).values()) <= 1e-6


def test_an_adapter_naming_another_base_model_warns_or_is_refused(tmp_path):
    from llm_merge import BaseModelMismatchWarning
    from llm_merge.model.loading import load_expert

    tiny_qwen().save_pretrained(tmp_path / "qwen-a")
    tiny_qwen().save_pretrained(tmp_path / "qwen-b")  # the same shapes (and here the same weights), another model
    trained_on = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "qwen-a")
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    peft.get_peft_model(trained_on, config).save_pretrained(tmp_path / "adapter")  # wraps trained_on in place
    named = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert named == str(tmp_path / "qwen-a")
    shapes = base_shapes(tiny_qwen())
    with pytest.warns(BaseModelMismatchWarning) as caught:
        load_lora_expert(tmp_path / "adapter", shapes, base_name=str(tmp_path / "qwen-b"))
    message = str(caught[0].message)
    assert str(tmp_path / "qwen-a") in message and str(tmp_path / "qwen-b") in message
    with pytest.raises(ExpertError, match="qwen-b"):
        load_lora_expert(tmp_path / "adapter", shapes, base_name=str(tmp_path / "qwen-b"), on_other_base="error")
    other = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "qwen-b")
    with pytest.warns(BaseModelMismatchWarning, match="qwen-a"):  # the run's loader compares with model.name_or_path
        load_expert(tmp_path / "adapter", other, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_lora_expert(tmp_path / "adapter", shapes, base_name=str(tmp_path / "qwen-b"), on_other_base="ignore")
        for same in (str(tmp_path / "qwen-a") + "/", "some-org/qwen-a", "/elsewhere/QWEN-A", None):
            load_lora_expert(tmp_path / "adapter", shapes, base_name=same, on_other_base="error")
        same_base = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "qwen-a")
        load_expert(tmp_path / "adapter", same_base, None, on_other_base="error")
    with pytest.raises(ValueError, match="on_other_base must be one of warn, error, ignore"):
        load_lora_expert(tmp_path / "adapter", shapes, base_name="x", on_other_base="refuse")


def test_same_base_model_reads_hub_ids_folders_and_hub_cache_snapshots():
    from llm_merge.model.experts import same_base_model

    assert same_base_model("Qwen/Qwen2.5-0.5B", "/models/Qwen2.5-0.5B")
    assert same_base_model("Qwen/Qwen2.5-0.5B", "/cache/hub/models--Qwen--Qwen2.5-0.5B/snapshots/0123abcd")
    assert not same_base_model("Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B-Instruct")
    assert not same_base_model("meta-llama/Llama-3.1-8B", "/models/Llama-3.1-8B-Instruct/")


def test_refusals(tmp_path):
    shapes = base_shapes(tiny_qwen())
    dora = make_adapter(tmp_path / "dora", seed=1, use_dora=True)
    with pytest.raises(ExpertError, match="DoRA"):
        load_lora_expert(dora, shapes)
    saved = make_adapter(tmp_path / "mts", seed=1, modules_to_save=["lm_head"])
    with pytest.raises(ExpertError, match="modules_to_save"):
        load_lora_expert(saved, shapes)
    good = make_adapter(tmp_path / "good", seed=1)
    with pytest.raises(ExpertError, match="another base"):
        load_lora_expert(good, base_shapes(tiny_qwen(hidden=48)))
    (good / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ExpertError, match="corrupt"):
        load_lora_expert(good, shapes)
    (good / "adapter_model.safetensors").unlink()
    with pytest.raises(ExpertError, match="missing"):
        load_lora_expert(good, shapes)
    with pytest.raises(ExpertError, match="adapter_config"):
        load_lora_expert(tmp_path, shapes)
    biased = make_adapter(tmp_path / "bias", seed=1, lora_bias=True)
    with pytest.raises(ExpertError, match="lora_bias"):
        load_lora_expert(biased, shapes)
    base, resized = tiny_qwen(), tiny_qwen(vocab=80)
    with pytest.raises(ExpertError, match="resized embeddings"):
        dense_expert("resized", base.state_dict(), resized.state_dict())


def test_dense_expert_is_the_parameter_difference():
    base, tuned = tiny_qwen(0), tiny_qwen(0)
    with torch.no_grad():
        tuned.model.layers[0].mlp.up_proj.weight.add_(0.5)
    expert = dense_expert("tuned", base.state_dict(), tuned.state_dict())
    assert expert.params == {"model.layers.0.mlp.up_proj.weight"}
    torch.testing.assert_close(expert.delta("model.layers.0.mlp.up_proj.weight"), torch.full((64, 32), 0.5))


T1 = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
T2 = torch.tensor([[-3.0, 1.0], [0.25, 4.0]])
BASE = torch.tensor([[10.0, 10.0], [10.0, 10.0]])


def test_task_arithmetic_by_hand():
    out = get_method("task_arithmetic").merge(BASE, [T1, T2], torch.tensor([0.5, -1.0]))
    torch.testing.assert_close(out, BASE + 0.5 * T1 - T2)


def test_ties_by_hand():
    ties = get_method("ties", density=0.5, normalize=False)  # keep exactly int(0.5·4) = 2 entries by magnitude
    prepared = ties.prepare("w", [T1, T2])
    torch.testing.assert_close(prepared[0], torch.tensor([[1.0, -2.0], [0.0, 0.0]]))
    torch.testing.assert_close(prepared[1], torch.tensor([[-3.0, 0.0], [0.0, 4.0]]))
    w = torch.tensor([1.0, 1.0])
    # entry (0,0): 1 vs -3 -> elected -, keep -3; (0,1): -2 only; (1,0): Σ = 0 elects "+", but zeros never agree
    torch.testing.assert_close(ties.merge(BASE, prepared, w), BASE + torch.tensor([[-3.0, -2.0], [0.0, 4.0]]))
    normalised = get_method("ties", density=0.5)  # mergekit's default: normalize true
    out = normalised.merge(BASE, prepared, torch.tensor([2.0, 1.0]))
    # (0,0): 2*1=2 vs -3 -> elected -, only expert 2 agrees: -3 / 1; (0,1): -4 / 2
    torch.testing.assert_close(out, BASE + torch.tensor([[-3.0, -2.0], [0.0, 4.0]]))
    assert torch.equal(T1, torch.tensor([[1.0, -2.0], [0.5, 0.0]]))  # inputs untouched


def test_ties_normalises_by_the_signed_sum_of_agreeing_weights():
    ties = get_method("ties", density=0.5)
    prepared = ties.prepare("w", [T1, T2])
    out = ties.merge(BASE, prepared, torch.tensor([1.0, -1.0]))
    # λ-scaled: [[1,-2],[0,0]] and [[3,0],[0,-4]]. (0,0): both agree on "+", divisor 1 + (-1) = 0 -> 1: 4.
    # (1,1): only expert 2 (λ = -1) agrees: -4 / -1 = 4.
    torch.testing.assert_close(out, BASE + torch.tensor([[4.0, -2.0], [0.0, 4.0]]))


def test_ties_zero_sign_sum_elects_plus():
    a, b = torch.tensor([[1.0, 2.0]]), torch.tensor([[-1.0, 1.0]])
    ties = get_method("ties", normalize=False)  # density 1.0 (mergekit's default): nothing trimmed
    torch.testing.assert_close(
        ties.merge(torch.zeros(1, 2), [a, b], torch.tensor([1.0, 1.0])), torch.tensor([[1.0, 3.0]])
    )


def test_ties_keeps_exactly_int_density_times_n_entries():
    delta = torch.tensor([3.0, 3.0, 2.0, 1.0, -0.5, 0.25, 0.1, -4.0, 0.3, 0.2])
    kept = get_method("ties", density=0.29).prepare("w", [delta])[0]
    assert torch.count_nonzero(kept) == 2  # int(2.9), the two largest magnitudes
    assert kept[7] == -4.0 and kept[0] == 3.0  # equal magnitudes: the first in index order


def test_task_arithmetic_normalize_and_lambda_follow_mergekit():
    ta = get_method("task_arithmetic", normalize=True, **{"lambda": 0.5})
    assert not ta.linear  # Σ λ_i τ_i / Σ λ_i is not linear in λ: no factored path, basis shifts materialise
    out = ta.merge(BASE, [T1, T2], torch.tensor([0.5, 1.5]))
    torch.testing.assert_close(out, BASE + 0.5 * (0.5 * T1 + 1.5 * T2) / 2.0)
    assert get_method("task_arithmetic").linear


def test_dare_masks_are_seeded_l1_rescaled_and_independent_of_lambda():
    dare = get_method("dare_linear", density=0.5, seed=3)
    big = torch.ones(200, 200)
    a, b = dare.prepare("w", [big])[0], get_method("dare_linear", density=0.5, seed=3).prepare("w", [big])[0]
    torch.testing.assert_close(a, b)
    assert len(a.unique()) == 2 and a.min() == 0.0
    torch.testing.assert_close(a.abs().sum(), big.abs().sum())  # mergekit's rescale: the L1 norm, not 1/density
    assert abs((a > 0).float().mean().item() - 0.5) < 0.02  # each entry kept with probability density
    assert not torch.equal(a, get_method("dare_linear", density=0.5, seed=4).prepare("w", [big])[0])
    plain = get_method("dare_linear", density=0.5, seed=3, rescale=False).prepare("w", [big])[0]
    assert torch.equal(plain > 0, a > 0) and set(plain.unique().tolist()) == {0.0, 1.0}
    out = dare.merge(torch.zeros(200, 200), [a], torch.tensor([0.5]))
    torch.testing.assert_close(out, 0.5 * a)


def test_the_removed_evogm_convention_is_refused_in_one_line_naming_the_commit_with_its_code():
    removed_at = r"^method ties: convention evogm-0\.1 .* removed in evogm-opt 0\.2\.0; its code is at commit a95bed8"
    with pytest.raises(ValueError, match=removed_at) as removed:
        get_method("ties", density=0.2, convention="evogm-0.1")
    assert "\n" not in str(removed.value)
    # what 0.1 wrote into every record and config is still read: the same merge as without the key
    kept = get_method("ties", density=0.5, convention="mergekit")
    assert kept.options == get_method("ties", density=0.5).options and "convention" not in kept.options


def test_unknown_method_and_bad_options_are_refused():
    with pytest.raises(ValueError, match="unknown merge method"):
        get_method("slerp9")
    with pytest.raises(ValueError, match="density"):
        get_method("ties", density=0.0)
    with pytest.raises(ValueError, match="drop"):
        get_method("dare_ties", drop=0.5)
    with pytest.raises(ValueError, match=r"convention must be mergekit \(the only one\), got 'peft'"):
        get_method("ties", convention="peft")


def test_validate_method_names_the_bad_key_and_lists_the_allowed_ones():
    with pytest.raises(ValueError) as typo:
        validate_method("ties", {"densty": 0.2})
    assert str(typo.value) == (
        "method ties: unknown parameter 'densty'; allowed: density, int8_mask, lambda, normalize, rescale"
    )
    with pytest.raises(ValueError, match=r"^method task_arithmetic: unknown parameter 'density'; allowed: "):
        validate_method("task_arithmetic", {"density": 0.5})
    with pytest.raises(ValueError, match=r"'drop'; allowed: .* \(mergekit's knob is density = 1 − drop"):
        validate_method("dare_linear", {"drop": 0.5})
    with pytest.raises(ValueError, match="method dare_ties: normalize must be true or false, got 'yes'"):
        validate_method("dare_ties", {"normalize": "yes"})
    validate_method("dare_ties", {"density": 0.3, "lambda": -1.0, "rescale": False, "int8_mask": True, "seed": 7})
    validate_method("ties", {"convention": "mergekit", "density": 0.2, "normalize": True})
    assert "\n" not in str(typo.value)


def test_adapter_config_is_read_not_guessed(tmp_path):
    folder = make_adapter(tmp_path / "a", seed=2, use_rslora=True)
    cfg = json.loads((folder / "adapter_config.json").read_text())
    expert = load_lora_expert(folder, base_shapes(tiny_qwen()))
    f = next(iter(expert.factors.values()))
    assert f.scaling == pytest.approx(cfg["lora_alpha"] / cfg["r"] ** 0.5)
