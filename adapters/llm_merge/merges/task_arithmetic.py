"""Task arithmetic (https://arxiv.org/abs/2212.04089): δ = Σ λ_i τ_i, mergekit's ``normalize`` and ``lambda`` after.

The weighted sum and the last two steps (÷ divisor, × lambda) are also what TIES and DARE finish with.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from llm_merge.merges.base import MergeMethod


def weighted_sum(deltas: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(deltas[0], dtype=torch.float32)
    for w, d in zip(weights.tolist(), deltas):
        if w != 0.0:
            out.add_(d.float(), alpha=w)
    return out


def finish(delta: torch.Tensor, divisor: torch.Tensor | float | None, scale: float) -> torch.Tensor:
    """mergekit's last two steps: δ / divisor (when normalising), then × lambda."""
    if divisor is not None:
        delta = delta / divisor
    return delta * scale if scale != 1.0 else delta


def linear_merge(deltas: list[torch.Tensor], weights: torch.Tensor, normalize: bool, scale: float) -> torch.Tensor:
    """mergekit's task arithmetic: Σ λ_i τ_i, with ``normalize`` divided by Σ λ_i (|Σ| < 1e-8 → 1)."""
    divisor = None
    if normalize:
        total = float(weights.float().sum())  # summed in fp32, as mergekit does
        divisor = total if abs(total) >= 1e-8 else 1.0
    return finish(weighted_sum(deltas, weights), divisor, scale)


class TaskArithmetic(MergeMethod):
    name = "task_arithmetic"
    reference_url = "https://arxiv.org/abs/2212.04089"
    parameters: ClassVar[dict[str, Any]] = {"normalize": False, "lambda": 1.0, "int8_mask": False}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.normalize = bool(self.options.get("normalize", False))
        self.scale = float(self.options.get("lambda", 1.0))
        # Σ λ_i τ_i exactly: the factored LoRA rebuild and the batched-λ forward apply, a basis shift is c @ B
        self.linear = not self.normalize and self.scale == 1.0

    def merged_delta(self, prepared: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        return linear_merge(prepared, weights, self.normalize, self.scale)
