"""DARE (https://arxiv.org/abs/2311.03099): keep each entry of τ_i with probability ``density`` (a Bernoulli mask,
seeded per tensor), rescale to τ_i's L1 norm, then task arithmetic (``dare_linear``) or TIES's election
(``dare_ties``) — mergekit's definitions."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from llm_merge.merges.base import MergeMethod
from llm_merge.merges.sparsify import mask_seed, rescaled
from llm_merge.merges.task_arithmetic import linear_merge
from llm_merge.merges.ties import elected_sum


class _Dare(MergeMethod):
    parameters: ClassVar[dict[str, Any]] = {
        "density": 1.0,
        "normalize": False,
        "rescale": True,
        "lambda": 1.0,
        "int8_mask": False,
        "seed": 0,  # ours: mergekit draws from torch's global generator (its --random-seed)
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.seed, self.normalize = int(self.options["seed"]), bool(self.options["normalize"])
        self.density = float(self.options["density"])
        self.rescale = bool(self.options["rescale"])
        self.scale = float(self.options["lambda"])

    def stochastic(self, n_experts: int) -> bool:
        return self.density < 1.0

    def prepare(self, param: str, deltas: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.density >= 1.0:  # mergekit returns τ untouched and draws nothing
            return [d.float() for d in deltas]
        # one generator per (seed, parameter), experts drawn in order: masks do not depend on the order parameters
        # are visited in or on the process; drawn on the CPU so that they are the same on every device
        g = torch.Generator().manual_seed(mask_seed(self.seed, param))
        out = []
        for d in deltas:
            keep = torch.bernoulli(torch.full(d.shape, self.density, dtype=torch.float32), generator=g)
            d = d.float()
            out.append(rescaled(d, d * keep.to(d.device), self.rescale))
        return out


class DareLinear(_Dare):
    name = "dare_linear"
    reference_url = "https://arxiv.org/abs/2311.03099"

    def merged_delta(self, prepared: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        return linear_merge(prepared, weights, self.normalize, self.scale)


class DareTies(_Dare):
    name = "dare_ties"
    reference_url = "https://arxiv.org/abs/2311.03099"

    def merged_delta(self, prepared: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        return elected_sum(prepared, weights, self.normalize, self.scale)
