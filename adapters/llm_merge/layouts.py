"""Coefficient layouts: the flat vector the optimizer sees → one coefficient per expert for every tensor.

- ``per_expert``: N coordinates, one λ_i per expert for the whole model (the EvoGM paper's search space).
- ``per_layer_group``: the decoder layers are split into G contiguous groups (layer ℓ of L goes to group
  ⌊ℓ·G/L⌋); parameters outside the decoder layers form two more groups, ``embeddings`` (names containing
  ``embed``) and ``head`` (everything else: ``lm_head``, the final norm). N coordinates per group.
- ``per_module_type``: ``attention`` (``self_attn``/``attn``), ``mlp`` (``mlp``/``feed_forward``), and ``other``.

Only groups that hold a parameter some expert touches get coordinates, so no coordinate is dead. The flat
vector is group-major: ``[group 0: λ_1 … λ_N, group 1: λ_1 … λ_N, …]``.

Simplex option: within each group the N coordinates z ∈ [-1, 1]^N become weights w = softmax(κ·z) (Σ w = 1,
all w > 0). The sharpness κ sets how far from uniform a corner of the box reaches: with κ = 4 and N = 4 a
coordinate at +1 against three at −1 gives w ≈ 0.9990; κ → 0 is uniform averaging.

The merge code only asks :meth:`CoefficientLayout.group_weights` and :meth:`CoefficientLayout.group_of`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.")


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
    if re.search(r"(?:^|\.)(?:self_attn|attn|attention)\.", param):
        return "attention"
    if re.search(r"(?:^|\.)(?:mlp|feed_forward|ffn)\.", param):
        return "mlp"
    return "other"


def make_layout(
    name: str,
    params: Iterable[str],
    n_experts: int,
    *,
    groups: int = 4,
    n_layers: int | None = None,
    simplex: bool = False,
    sharpness: float = 4.0,
) -> CoefficientLayout:
    """Build a layout over the touched parameters ``params``.

    Args:
        n_layers: the model's number of decoder layers (``config.num_hidden_layers``); by default the largest
            layer index found among ``params`` plus one.
    """
    params = sorted(params)
    if n_experts < 1 or not params:
        raise ValueError("a layout needs at least one expert and one parameter")
    if not sharpness > 0:
        raise ValueError(f"simplex sharpness must be > 0, got {sharpness}")
    labels: dict[str, str] = {}
    if name == "per_expert":
        labels = {p: "all" for p in params}
        order = ["all"]
    elif name == "per_layer_group":
        indices = [i for i in map(_layer_index, params) if i is not None]
        total = n_layers if n_layers is not None else (max(indices) + 1 if indices else 0)
        if groups < 1 or (total and groups > total):
            raise ValueError(f"groups must be between 1 and the number of layers ({total}), got {groups}")
        for p in params:
            i = _layer_index(p)
            if i is None:
                labels[p] = "embeddings" if "embed" in p else "head"
            else:
                if i >= total:
                    raise ValueError(f"{p} is in layer {i} but the model has {total} layers")
                labels[p] = f"layers {i * groups // total}"
        spans = {}
        for i in range(total):
            spans.setdefault(i * groups // total, []).append(i)
        order = ["embeddings"] + [f"layers {g}" for g in range(groups)] + ["head"]
        rename = {f"layers {g}": f"layers {v[0]}" + (f"-{v[-1]}" if len(v) > 1 else "") for g, v in spans.items()}
        labels = {p: rename.get(lab, lab) for p, lab in labels.items()}
        order = [rename.get(o, o) for o in order]
    elif name == "per_module_type":
        labels = {p: _module_type(p) for p in params}
        order = ["attention", "mlp", "other"]
    else:
        raise ValueError(f"unknown layout {name!r}; choose per_expert, per_layer_group or per_module_type")
    used = [g for g in order if g in set(labels.values())]
    index = {g: k for k, g in enumerate(used)}
    return CoefficientLayout(name, n_experts, tuple(used), {p: index[g] for p, g in labels.items()}, simplex, sharpness)
