"""Batched-λ LoRA forward: P candidate merges scored in one pass, no weight rebuild.

For task arithmetic over LoRA experts the merged layer is W₀ + Σ_i λ_i s_i B_i A_i, so its output is

    y = W₀x + B_cat · ((A_cat x) ⊙ (λ_row ⊗ s))

with the experts' factors concatenated along the rank (A_cat: R × in, B_cat: out × R, R = Σ r_i) and a
coefficient vector per *batch row*. Stacking P candidates × M examples as rows therefore scores all P merges in
the forwards one merge would take, with the model's weights left at W₀. The extra work per layer is
R·(in + out) multiply-adds per token against in·out for W₀ (≈ 12–21 % for rank-16 × 10 experts at
Qwen2.5-1.5B's shapes), computed in fp32 and added in the layer's dtype.

The correction is a forward hook on each LoRA target module, so any architecture transformers builds works,
and the hooks are removed when the context exits.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


class BatchedLora:
    """Context manager adding the per-row LoRA correction to a model's target modules.

    Args:
        model: the model, holding the pristine weights W₀.
        factors: base parameter name (``"…q_proj.weight"``) -> ``(A_cat, B_cat, owner, scale[, group])``:
            concatenated factors, the expert index of each rank row, its scaling s, and the coefficient group
            of the tensor (``llm_merge.model.layouts``; 0 when omitted).
    """

    def __init__(self, model: torch.nn.Module, factors: Mapping[str, tuple[torch.Tensor, ...]]) -> None:
        modules = dict(model.named_modules())
        self._targets = []
        for param, entry in factors.items():
            a_cat, b_cat, owner, scale = entry[:4]
            group = entry[4] if len(entry) > 4 else 0
            name = param.removesuffix(".weight")
            if name not in modules:
                raise ValueError(f"no module {name!r} in the model for the factors of {param}")
            self._targets.append((modules[name], a_cat, b_cat, owner, scale, group))
        self._lam: torch.Tensor | None = None  # (rows, G, N): each row's coefficients per group and expert
        self._handles: list = []

    def set_rows(self, lam_rows: torch.Tensor) -> None:
        """λ for each batch row of the following forward(s), shape (rows, N) or (rows, G, N) with layout groups
        (generation keeps the rows through decoding)."""
        lam_rows = lam_rows.float()
        self._lam = lam_rows[:, None, :] if lam_rows.dim() == 2 else lam_rows

    def _hook(self, a_cat, b_cat, owner, scale, group):
        def add_correction(module, inputs, output):
            x = inputs[0]
            if self._lam is None or self._lam.shape[0] != x.shape[0]:
                rows = None if self._lam is None else self._lam.shape[0]
                raise RuntimeError(f"BatchedLora: λ set for {rows} rows, the forward has {x.shape[0]}")
            coeff = self._lam[:, group].to(x.device)[:, owner] * scale  # (rows, R): λ_row ⊗ s
            low = torch.einsum("b...i,ri->b...r", x.float(), a_cat)  # A_cat x
            low = low * coeff.view(coeff.shape[0], *([1] * (low.dim() - 2)), coeff.shape[1])
            return output + torch.einsum("b...r,or->b...o", low, b_cat).to(output.dtype)

        return add_correction

    def __enter__(self) -> BatchedLora:
        for module, *entry in self._targets:
            self._handles.append(module.register_forward_hook(self._hook(*entry)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._lam = None
