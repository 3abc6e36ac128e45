"""The λ-independent steps of TIES and DARE, as mergekit defines them (``mergekit/sparsify.py``): keep the largest
entries, rescale to the task vector's L1 norm, and the seed of one tensor's random masks."""

from __future__ import annotations

import hashlib

import torch


def rescaled(delta: torch.Tensor, kept: torch.Tensor, rescale: bool) -> torch.Tensor:
    """mergekit's ``rescale``: match τ's L1 norm (unless either norm is below 1e-7)."""
    if not rescale:
        return kept
    before, after = delta.abs().sum(), kept.abs().sum()
    if before < 1e-7 or after < 1e-7:
        return kept
    return kept * (before / after)


def magnitude_trim(delta: torch.Tensor, density: float, rescale: bool = False) -> torch.Tensor:
    """mergekit's ``magnitude`` sparsification: exactly max(1, ⌊density·n⌋) entries, the largest |τ| (equal
    magnitudes in index order)."""
    delta = delta.float()
    if density >= 1.0:
        return delta
    k = max(1, int(density * delta.numel()))
    order = torch.sort(delta.abs().reshape(-1), descending=True, stable=True).indices[:k]
    mask = torch.zeros(delta.numel(), dtype=delta.dtype, device=delta.device)
    mask[order] = 1.0
    return rescaled(delta, delta * mask.view_as(delta), rescale)


def mask_seed(seed: int, param: str) -> int:
    """The torch seed of one parameter's DARE masks: ``torch.manual_seed(mask_seed(seed, param))`` before mergekit
    merges that tensor makes mergekit draw the same masks (it draws from torch's global generator, expert by
    expert, one ``torch.bernoulli`` of a density-filled fp32 tensor each, as ``prepare`` does here)."""
    digest = hashlib.blake2b(f"{seed}|{param}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % (2**63)
