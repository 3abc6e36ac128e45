"""TIES (https://arxiv.org/abs/2306.01708): trim each τ_i to its largest entries, elect a sign per entry, sum the
experts that agree with it — mergekit's definitions (``generalized_task_arithmetic.py``)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from llm_merge.merges.base import MergeMethod
from llm_merge.merges.sparsify import magnitude_trim
from llm_merge.merges.task_arithmetic import finish


def elected_sum(deltas: list[torch.Tensor], weights: torch.Tensor, normalize: bool, scale: float) -> torch.Tensor:
    """mergekit's TIES consensus: sign "+" where Σ λ_i τ̂_i ≥ 0; the agreeing λ_i τ̂_i summed (zeros never agree)
    and, with ``normalize``, divided by the signed Σ λ_i of the agreeing experts (0 → 1)."""
    w = weights.float().to(deltas[0].device).view(-1, *([1] * deltas[0].dim()))
    scaled = torch.stack([d.float() for d in deltas]) * w
    elected = torch.where(scaled.sum(dim=0) >= 0, 1.0, -1.0)
    agree = torch.sign(scaled) == elected
    total = (scaled * agree).sum(dim=0)
    divisor = None
    if normalize:
        divisor = (w * agree).sum(dim=0)
        divisor[divisor == 0] = 1.0
    return finish(total, divisor, scale)


class Ties(MergeMethod):
    name = "ties"
    reference_url = "https://arxiv.org/abs/2306.01708"
    parameters: ClassVar[dict[str, Any]] = {
        "density": 1.0,
        "normalize": True,
        "rescale": False,
        "lambda": 1.0,
        "int8_mask": False,
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.density, self.normalize = float(self.options["density"]), bool(self.options["normalize"])
        self.rescale = bool(self.options.get("rescale", False))
        self.scale = float(self.options.get("lambda", 1.0))

    def prepare(self, param: str, deltas: list[torch.Tensor]) -> list[torch.Tensor]:
        return [magnitude_trim(d, self.density, self.rescale) for d in deltas]

    def merged_delta(self, prepared: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        return elected_sum(prepared, weights, self.normalize, self.scale)
