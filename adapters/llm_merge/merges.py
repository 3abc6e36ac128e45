"""Merge methods, one small class each behind a registry (the shape of mergekit's merge-method registry).

A method turns the base tensor θ₀ and the experts' task vectors τ_i (for one parameter) plus coefficients λ
into the merged tensor. What does not depend on λ — TIES's trimming, DARE's keep masks — is computed once per
parameter in ``prepare`` and reused for every candidate λ; ``merge`` never modifies its inputs.

- ``task_arithmetic``: θ₀ + Σ λ_i τ_i (linear, so the LoRA path can stay factored).
- ``ties`` (Yadav et al. 2023): trim each τ_i to its top-``density`` fraction by magnitude; elect the sign per
  entry as sign(Σ λ_i τ̂_i); keep the entries of λ_i τ̂_i that agree with it ("disjoint"). The merged delta is
  the **sum** of the agreeing entries, or with ``normalize=True`` their sum divided by Σ|λ_i| over the agreeing
  experts (mergekit's normaliser, the TIES paper's disjoint mean when all |λ_i| are equal).
- ``dare_linear`` / ``dare_ties`` (Yu et al. 2024): keep each entry of τ_i with probability 1 − p (a seeded
  Bernoulli mask per expert and parameter), rescale by 1/(1 − p), then task arithmetic / the TIES sign election.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import torch

MERGE_METHODS: dict[str, type[MergeMethod]] = {}


def register(cls: type[MergeMethod]) -> type[MergeMethod]:
    if cls.name in MERGE_METHODS:
        raise ValueError(f"merge method {cls.name!r} registered twice")
    MERGE_METHODS[cls.name] = cls
    return cls


def get_method(name: str, **options: Any) -> MergeMethod:
    if name not in MERGE_METHODS:
        raise ValueError(f"unknown merge method {name!r}; choose one of {sorted(MERGE_METHODS)}")
    return MERGE_METHODS[name](**options)


class MergeMethod:
    name: ClassVar[str]
    linear: ClassVar[bool] = False  # True: merged delta = Σ λ_i τ_i, so factored (LoRA) rebuilds are exact

    def prepare(self, param: str, deltas: list[torch.Tensor]) -> list[torch.Tensor]:
        """λ-independent preprocessing of one parameter's task vectors (trim, drop); cached by the caller."""
        return deltas

    def merge(self, base: torch.Tensor, prepared: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        return base + self.merged_delta(prepared, weights).to(base.dtype)

    def merged_delta(self, prepared: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _weighted_sum(deltas: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(deltas[0], dtype=torch.float32)
    for w, d in zip(weights.tolist(), deltas):
        if w != 0.0:
            out.add_(d.float(), alpha=w)
    return out


def _disjoint(deltas: list[torch.Tensor], weights: torch.Tensor, normalize: bool) -> torch.Tensor:
    scaled = torch.stack([w * d.float() for w, d in zip(weights.tolist(), deltas)])
    elected = torch.sign(scaled.sum(dim=0))
    agree = (torch.sign(scaled) == elected) & (scaled != 0)
    total = (scaled * agree).sum(dim=0)
    if not normalize:
        return total
    mass = (weights.abs().float().view(-1, *([1] * deltas[0].dim())) * agree).sum(dim=0)
    return torch.where(mass > 0, total / mass.clamp_min(1e-12), torch.zeros_like(total))


def _trim(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the top ``density`` fraction of entries by magnitude (ties at the threshold kept)."""
    if density >= 1.0:
        return delta
    k = max(1, int(round(density * delta.numel())))
    threshold = delta.abs().flatten().kthvalue(delta.numel() - k + 1).values
    return torch.where(delta.abs() >= threshold, delta, torch.zeros_like(delta))


@register
class TaskArithmetic(MergeMethod):
    name = "task_arithmetic"
    linear = True

    def merged_delta(self, prepared: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        return _weighted_sum(prepared, weights)


@register
class Ties(MergeMethod):
    name = "ties"

    def __init__(self, density: float = 0.2, normalize: bool = False) -> None:
        if not 0.0 < density <= 1.0:
            raise ValueError(f"TIES density must be in (0, 1], got {density}")
        self.density, self.normalize = float(density), bool(normalize)

    def prepare(self, param: str, deltas: list[torch.Tensor]) -> list[torch.Tensor]:
        return [_trim(d.float(), self.density) for d in deltas]

    def merged_delta(self, prepared: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        return _disjoint(prepared, weights, self.normalize)


class _Dare(MergeMethod):
    def __init__(self, drop: float = 0.5, seed: int = 0, normalize: bool = False) -> None:
        if not 0.0 <= drop < 1.0:
            raise ValueError(f"DARE drop probability must be in [0, 1), got {drop}")
        self.drop, self.seed, self.normalize = float(drop), int(seed), bool(normalize)

    def prepare(self, param: str, deltas: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for i, d in enumerate(deltas):
            # one generator per (seed, parameter, expert): masks do not depend on the visiting order or the process
            digest = hashlib.blake2b(f"{self.seed}|{param}|{i}".encode(), digest_size=8).digest()
            g = torch.Generator().manual_seed(int.from_bytes(digest, "little") % (2**63))
            # drawn on the CPU so that the mask is the same on every device, then moved to the tensor's
            keep = (torch.rand(d.shape, generator=g) >= self.drop).to(d.device)
            out.append(torch.where(keep, d.float() / (1.0 - self.drop), torch.zeros_like(d, dtype=torch.float32)))
        return out


@register
class DareLinear(_Dare):
    name = "dare_linear"

    def merged_delta(self, prepared: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        return _weighted_sum(prepared, weights)


@register
class DareTies(_Dare):
    name = "dare_ties"

    def merged_delta(self, prepared: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        return _disjoint(prepared, weights, self.normalize)
