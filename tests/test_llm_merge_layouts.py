"""Coefficient layouts: hand-checked group assignments, simplex weights, and merges that use them exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the llm_merge adapter needs the `llm` extra")

from llm_merge import load_lora_expert  # noqa: E402
from llm_merge.demo.cpu_demo import char_tokenizer  # noqa: E402
from llm_merge.model.fitness import MergeFitness  # noqa: E402
from llm_merge.model.layouts import make_layout  # noqa: E402

from tests.test_llm_merge_experts import base_shapes, make_adapter, tiny_qwen  # noqa: E402

PARAMS = [
    "model.embed_tokens.weight",
    *(f"model.layers.{i}.self_attn.q_proj.weight" for i in range(4)),
    *(f"model.layers.{i}.mlp.down_proj.weight" for i in range(4)),
    "lm_head.weight",
]


def test_layer_groups_are_contiguous_and_outside_parameters_get_their_own_groups():
    layout = make_layout("per_layer_group", PARAMS, n_experts=3, groups=2)
    assert layout.group_names == ("embeddings", "layers 0-1", "layers 2-3", "head") and layout.dim == 12
    assert layout.group_of("model.embed_tokens.weight") == 0 and layout.group_of("lm_head.weight") == 3
    assert [layout.group_of(f"model.layers.{i}.mlp.down_proj.weight") for i in range(4)] == [1, 1, 2, 2]
    uneven = make_layout("per_layer_group", PARAMS[1:5], n_experts=2, groups=3)  # 4 layers in 3 groups
    assert uneven.group_names == ("layers 0-1", "layers 2", "layers 3")  # ⌊ℓ·G/L⌋: 0,0,1,2; untouched groups dropped
    with pytest.raises(ValueError, match="groups must be between"):
        make_layout("per_layer_group", PARAMS, 3, groups=5)
    flat = np.arange(12.0) / 12
    w = layout.group_weights(flat)
    assert w.shape == (4, 3) and w[2].tolist() == (flat[6:9]).tolist()  # group-major


def test_module_types_and_per_expert():
    layout = make_layout("per_module_type", PARAMS, n_experts=2)
    assert layout.group_names == ("attention", "mlp", "other")
    assert layout.group_of("model.layers.3.self_attn.q_proj.weight") == 0
    assert layout.group_of("model.layers.0.mlp.down_proj.weight") == 1
    assert layout.group_of("lm_head.weight") == 2
    assert make_layout("per_expert", PARAMS, 5).dim == 5
    with pytest.raises(ValueError, match="unknown layout"):
        make_layout("per_head", PARAMS, 2)


def test_simplex_is_a_softmax_per_group():
    layout = make_layout("per_module_type", PARAMS, n_experts=4, simplex=True, sharpness=4.0)
    flat = np.array([1, -1, -1, -1, 0, 0, 0, 0, 0.5, -0.5, 0.25, 0.0])
    w = layout.group_weights(flat)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    corner = math.exp(4) / (math.exp(4) + 3 * math.exp(-4))
    assert w[0, 0] == pytest.approx(corner) and corner > 0.998
    np.testing.assert_allclose(w[1], 0.25)
    e = np.exp(4 * np.array([0.5, -0.5, 0.25, 0.0]))
    np.testing.assert_allclose(w[2], e / e.sum(), rtol=1e-12)


@pytest.fixture(scope="module")
def experts(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    shapes = base_shapes(tiny_qwen())
    return [load_lora_expert(make_adapter(root / f"e{i}", seed=i + 1), shapes) for i in range(2)]


def test_merge_with_a_layer_group_layout_uses_each_tensors_own_coefficients(experts):
    model = tiny_qwen()
    pristine = {k: v.clone() for k, v in model.state_dict().items()}
    touched = sorted(set().union(*(e.params for e in experts)))
    layout = make_layout("per_layer_group", touched, 2, groups=2, n_layers=model.config.num_hidden_layers)
    assert layout.group_names == ("layers 0", "layers 1")
    fitness = MergeFitness(model, char_tokenizer(), experts, [], layout=layout)
    flat = np.array([0.9, -0.3, 0.2, 0.7])  # layer 0: (0.9, -0.3); layer 1: (0.2, 0.7)
    fitness.apply(flat)
    for name in touched:
        lam = flat[:2] if ".layers.0." in name else flat[2:]
        expected = pristine[name] + sum(w * e.delta(name) for w, e in zip(lam, experts) if e.delta(name) is not None)
        torch.testing.assert_close(model.state_dict()[name], expected, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="4 finite numbers"):
        fitness.apply([0.1, 0.2])

    # the batched-λ forward reads the same per-group coefficients
    ids = torch.randint(2, 40, (2, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        merged = model(input_ids=ids).logits
        fitness.restore()
        with fitness.batched_lora() as lora:
            lora.set_rows(torch.from_numpy(layout.group_weights(np.stack([flat, flat])).astype(np.float32)))
            torch.testing.assert_close(model(input_ids=ids).logits, merged, atol=2e-5, rtol=1e-4)

    ties = MergeFitness(tiny_qwen(), char_tokenizer(), experts, [], method="ties", layout=layout)
    with pytest.raises(ValueError, match="one coefficient per expert"):
        ties.rebase(np.eye(4))
    with pytest.raises(ValueError, match="other experts or parameters"):
        MergeFitness(tiny_qwen(), char_tokenizer(), experts[:1], [], layout=layout)
