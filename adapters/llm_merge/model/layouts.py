"""Coefficient layouts: the flat vector the optimizer sees → one coefficient per expert for every tensor.

- ``per_expert``: N coordinates, one λ_i per expert for the whole model (the EvoGM paper's search space).
- ``per_layer_group``: the decoder layers are split into G contiguous groups (layer ℓ of L goes to group
  ⌊ℓ·G/L⌋); parameters outside the decoder layers form two more groups, ``embeddings`` (names containing
  ``embed``, and T5's/BART's ``shared`` embedding) and ``head`` (everything else: ``lm_head``, the final norm).
  N coordinates per group. An encoder–decoder's two stacks are grouped each on its own (``n_layers`` a mapping
  ``{"encoder": L_e, "decoder": L_d}``): G groups of encoder layers and G of decoder layers.
- ``per_module_type``: ``attention`` (``self_attn``/``attn``, T5's ``SelfAttention``/``EncDecAttention``, BART's
  ``encoder_attn``: self- and cross-attention), ``mlp`` (``mlp``/``feed_forward``, T5's ``DenseReluDense``,
  BART's ``fc1``/``fc2``), and ``other``.

Only groups that hold a parameter some expert touches get coordinates, so no coordinate is dead. The flat
vector is group-major: ``[group 0: λ_1 … λ_N, group 1: λ_1 … λ_N, …]``.

Simplex option: within each group the N coordinates z ∈ [-1, 1]^N become weights w = softmax(κ·z) (Σ w = 1,
all w > 0). The sharpness κ sets how far from uniform a corner of the box reaches: with κ = 4 and N = 4 a
coordinate at +1 against three at −1 gives w ≈ 0.9990; κ → 0 is uniform averaging.

The merge code only asks :meth:`CoefficientLayout.group_weights` and :meth:`CoefficientLayout.group_of`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from llm_merge.model.names import LAYOUTS

# the leftmost match: T5's "encoder.block.3.layer.0.…" is block 3 (its "layer.0" is the block's sub-layer)
LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|block|layer)\.(\d+)\.")
STACK = re.compile(r"(?:^|\.)(encoder|decoder)\.")


@dataclass(frozen=True)
class CoefficientLayout:
    name: str
    n_experts: int
    group_names: tuple[str, ...]
    assignment: dict[str, int]  # parameter name -> group index
    simplex: bool = False
    sharpness: float = 4.0

    @property
    def dim(self) -> int:
        return self.n_experts * len(self.group_names)

    def group_of(self, param: str) -> int:
        return self.assignment[param]

    def group_weights(self, flat: np.ndarray) -> np.ndarray:
        """(…, dim) optimizer coordinates → (…, G, N) coefficients per group and expert."""
        flat = np.asarray(flat, dtype=np.float64)
        if flat.shape[-1] != self.dim or not np.isfinite(flat).all():
            raise ValueError(f"the {self.name} layout needs {self.dim} finite coordinates, got shape {flat.shape}")
        w = flat.reshape(*flat.shape[:-1], len(self.group_names), self.n_experts)
        if self.simplex:
            z = self.sharpness * w
            z = np.exp(z - z.max(axis=-1, keepdims=True))
            w = z / z.sum(axis=-1, keepdims=True)
        return w

    def describe(self, flat: np.ndarray, expert_names: Sequence[str]) -> dict[str, dict[str, float]]:
        """{group: {expert: coefficient}} — for reports."""
        w = self.group_weights(flat)
        return {g: {e: float(w[k, i]) for i, e in enumerate(expert_names)} for k, g in enumerate(self.group_names)}


def _layer_index(param: str) -> int | None:
    m = LAYER.search(param)
    return None if m is None else int(m.group(1))


def _module_type(param: str) -> str:
    attention = r"self_attn|attn|attention|SelfAttention|EncDecAttention|encoder_attn|cross_attn|crossattention"
    if re.search(rf"(?:^|\.)(?:{attention})\.", param):
        return "attention"
    if re.search(r"(?:^|\.)(?:mlp|feed_forward|ffn|DenseReluDense|fc1|fc2)\.", param):
        return "mlp"
    return "other"


def _is_embedding(param: str) -> bool:
    return "embed" in param or param.rsplit(".", 2)[-2:-1] == ["shared"]


def _layer_groups(
    params: list[str], groups: int, n_layers: int | Mapping[str, int] | None
) -> tuple[dict[str, str], list[str]]:
    """per_layer_group's label of each parameter and the groups in order (one set of layer groups per stack)."""
    stacked = isinstance(n_layers, Mapping)
    stacks = ("encoder", "decoder") if stacked else ("",)

    def stack_of(p: str) -> str:
        m = STACK.search(p) if stacked else None
        return m.group(1) if m else ""

    labels: dict[str, str] = {}
    order = ["embeddings"]
    for stack in stacks:
        mine = [p for p in params if stack_of(p) == stack]
        indices = [i for i in map(_layer_index, mine) if i is not None]
        given = n_layers.get(stack) if stacked else n_layers
        total = given if given is not None else (max(indices) + 1 if indices else 0)
        where = f"the {stack}'s" if stack else "the number of"
        if groups < 1 or (total and groups > total):
            raise ValueError(f"groups must be between 1 and {where} layers ({total}), got {groups}")
        prefix = f"{stack} " if stack else ""
        spans: dict[int, list[int]] = {}
        for i in range(total):
            spans.setdefault(i * groups // total, []).append(i)
        name = {g: f"{prefix}layers {v[0]}" + (f"-{v[-1]}" if len(v) > 1 else "") for g, v in spans.items()}
        for p in mine:
            i = _layer_index(p)
            if i is None:
                labels[p] = "embeddings" if _is_embedding(p) else "head"
            elif i >= total:
                raise ValueError(f"{p} is in layer {i} but the {stack or 'model'} has {total} layers")
            else:
                labels[p] = name[i * groups // total]
        order += [name[g] for g in sorted(name)]
    for p in params:
        if p not in labels:  # an encoder–decoder parameter in neither stack (the shared embedding, lm_head)
            if _layer_index(p) is not None:
                raise ValueError(f"{p} is in a layer of neither the encoder nor the decoder")
            labels[p] = "embeddings" if _is_embedding(p) else "head"
    return labels, [*order, "head"]


def make_layout(
    name: str,
    params: Iterable[str],
    n_experts: int,
    *,
    groups: int = 4,
    n_layers: int | Mapping[str, int] | None = None,
    simplex: bool = False,
    sharpness: float = 4.0,
) -> CoefficientLayout:
    """Build a layout over the touched parameters ``params``.

    Args:
        n_layers: the model's number of decoder layers (``config.num_hidden_layers``), or for an encoder–decoder
            ``{"encoder": L_e, "decoder": L_d}`` (``llm_merge.run.assemble.layer_counts``); by default the largest layer
            index found among ``params`` (per stack) plus one.
    """
    params = sorted(params)
    if n_experts < 1 or not params:
        raise ValueError("a layout needs at least one expert and one parameter")
    if not sharpness > 0:
        raise ValueError(f"simplex sharpness must be > 0, got {sharpness}")
    if name not in LAYOUTS:
        raise ValueError(f"unknown layout {name!r}; choose {', '.join(LAYOUTS[:-1])} or {LAYOUTS[-1]}")
    labels: dict[str, str] = {}
    if name == "per_expert":
        labels = {p: "all" for p in params}
        order = ["all"]
    elif name == "per_layer_group":
        labels, order = _layer_groups(params, groups, n_layers)
    else:  # per_module_type
        labels = {p: _module_type(p) for p in params}
        order = ["attention", "mlp", "other"]
    used = [g for g in order if g in set(labels.values())]
    index = {g: k for k, g in enumerate(used)}
    return CoefficientLayout(name, n_experts, tuple(used), {p: index[g] for p, g in labels.items()}, simplex, sharpness)
