"""Merge methods, one small class each behind a registry (the shape of mergekit's merge-method registry).

A method turns the base tensor θ₀ and the experts' task vectors τ_i (for one parameter) plus the searched
per-expert weights λ into the merged tensor. What does not depend on λ — TIES's trimming, DARE's keep masks — is
computed once per parameter in ``prepare`` and reused for every candidate λ; ``merge`` never modifies its inputs.

By default every method is **mergekit 0.1.5's** (``mergekit/merge_methods/generalized_task_arithmetic.py`` and
``mergekit/sparsify.py``): the same parameter names, defaults and arithmetic, so a λ found here is mergekit's
``weight`` per model and the merge is the one ``mergekit-yaml`` writes (tested against mergekit itself, fp32,
tensor by tensor: tests/test_llm_merge_mergekit.py). With τ̂_i the sparsified task vectors:

- ``task_arithmetic``: δ = Σ λ_i τ_i.
- ``ties`` (https://arxiv.org/abs/2306.01708): τ̂_i keeps exactly k = max(1, ⌊density·n⌋) entries of τ_i, the
  largest by magnitude; the sign per entry is "+" where Σ λ_i τ̂_i ≥ 0, else "−"; δ = Σ over the experts whose
  λ_i τ̂_i has the elected sign (zeros never agree).
- ``dare_linear`` / ``dare_ties`` (https://arxiv.org/abs/2311.03099): τ̂_i keeps each entry with probability
  ``density`` (a Bernoulli mask), then task arithmetic / the TIES election above.
- ``rescale`` (DARE's default): τ̂_i is scaled to τ_i's L1 norm, ‖τ_i‖₁/‖τ̂_i‖₁ (not 1/density), unless either
  norm is below 1e-7.
- ``normalize`` (TIES's default): δ is divided by the *signed* Σ λ_i — over the agreeing experts per entry for
  TIES/DARE-TIES (0 → 1), over all experts for TA/DARE-linear (|Σ| < 1e-8 → 1).
- ``lambda``: δ is multiplied by it last; θ = θ₀ + δ.

This project's first definitions (``convention: evogm-0.1``: round(density·n) entries, a Σ|λ_i| normaliser, DARE's
``drop``) were removed in evogm-opt 0.2.0; their code is at commit a95bed8. ``convention: mergekit``, the only value
left, is accepted and ignored, so that configs and ``evogm_merge.json`` records written before still load.

Any other name — or any name with ``backend: mergekit`` — is a method of mergekit's own registry, computed by
mergekit tensor by tensor (``llm_merge.merges.mergekit_methods``, the ``mergekit`` extra).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llm_merge.merges.base import MergeMethod, check_parameters
from llm_merge.merges.registry import MERGE_METHODS

BACKENDS = ("evogm", "mergekit")  # ``backend``: this registry, computed in place, or mergekit's, computed by it


def _backend(name: str, options: Mapping[str, Any]) -> str:
    """Who computes the merge: ``backend`` if given, else this registry for its names and mergekit for any other."""
    backend = options.get("backend", "evogm" if name in MERGE_METHODS else "mergekit")
    if backend not in BACKENDS:
        raise ValueError(f"method {name}: backend must be evogm or mergekit, got {backend!r}")
    if backend == "evogm" and name not in MERGE_METHODS:
        raise ValueError(
            f"method {name}: backend evogm computes {', '.join(sorted(MERGE_METHODS))} only; "
            "backend: mergekit (the default for other names) has mergekit compute it"
        )
    return backend


def get_method(name: str, **options: Any) -> MergeMethod:
    """The method ``name`` with its parameters: ours (in place) or, for other names or ``backend: mergekit``,
    mergekit's (``llm_merge.merges.mergekit_methods.MergekitMethod``)."""
    if _backend(name, options) == "mergekit":
        from llm_merge.merges.mergekit_methods import MergekitMethod

        return MergekitMethod(name, **options)
    return MERGE_METHODS[name](**{k: v for k, v in options.items() if k != "backend"})


def validate_method(name: str, options: Mapping[str, Any], n_experts: int | None = None) -> None:
    """Check a method name and its parameters before anything loads; a ``ValueError`` with one line that names the
    bad key (and lists the allowed ones) otherwise. ``n_experts``: also check that a mergekit method takes that many.

    ``validate_method("ties", {"densty": 0.2})`` raises "method ties: unknown parameter 'densty'; allowed:
    density, int8_mask, lambda, normalize, rescale".
    """
    if _backend(name, options) == "mergekit":
        from llm_merge.merges.mergekit_methods import MergekitMethod

        method = MergekitMethod(name, **options)
        if n_experts is not None:
            method.check_experts(n_experts)
        return
    options = {k: v for k, v in options.items() if k != "backend"}
    check_parameters(name, MERGE_METHODS[name].parameters, options)
