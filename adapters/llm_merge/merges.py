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
mergekit tensor by tensor (``llm_merge.mergekit_methods``, the ``mergekit`` extra).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch

MERGE_METHODS: dict[str, type[MergeMethod]] = {}
# ``convention``: the one value a 0.1 config or record may carry; the other one's code is at REMOVED_AT
CONVENTION, REMOVED_AT = "mergekit", "a95bed8"


def register(cls: type[MergeMethod]) -> type[MergeMethod]:
    if cls.name in MERGE_METHODS:
        raise ValueError(f"merge method {cls.name!r} registered twice")
    MERGE_METHODS[cls.name] = cls
    return cls


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
    mergekit's (``llm_merge.mergekit_methods.MergekitMethod``)."""
    if _backend(name, options) == "mergekit":
        from llm_merge.mergekit_methods import MergekitMethod

        return MergekitMethod(name, **options)
    return MERGE_METHODS[name](**{k: v for k, v in options.items() if k != "backend"})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# what each parameter name accepts, whichever method takes it: (test, what a wrong value should have been)
_CHECKS: dict[str, tuple[Any, str]] = {
    "density": (lambda v: _is_number(v) and 0.0 < v <= 1.0, "a number in (0, 1] (the fraction of entries kept)"),
    "normalize": (lambda v: isinstance(v, bool), "true or false"),
    "rescale": (lambda v: isinstance(v, bool), "true or false"),
    "int8_mask": (lambda v: isinstance(v, bool), "true or false"),
    "lambda": (_is_number, "a finite number"),
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
}


def validate_method(name: str, options: Mapping[str, Any], n_experts: int | None = None) -> None:
    """Check a method name and its parameters before anything loads; a ``ValueError`` with one line that names the
    bad key (and lists the allowed ones) otherwise. ``n_experts``: also check that a mergekit method takes that many.

    ``validate_method("ties", {"densty": 0.2})`` raises "method ties: unknown parameter 'densty'; allowed:
    density, int8_mask, lambda, normalize, rescale".
    """
    if _backend(name, options) == "mergekit":
        from llm_merge.mergekit_methods import MergekitMethod

        method = MergekitMethod(name, **options)
        if n_experts is not None:
            method.check_experts(n_experts)
        return
    options = {k: v for k, v in options.items() if k != "backend"}
    check_convention(name, options.get("convention", CONVENTION))
    allowed = MERGE_METHODS[name].parameters
    for key, value in options.items():
        if key == "convention":
            continue
        if key not in allowed:
            hint = " (mergekit's knob is density = 1 − drop)" if key == "drop" and "density" in allowed else ""
            listed = ", ".join(sorted(allowed)) if allowed else "none"
            raise ValueError(f"method {name}: unknown parameter {key!r}; allowed: {listed}{hint}")
        test, expected = _CHECKS.get(key, (lambda v: True, ""))
        if not test(value):
            raise ValueError(f"method {name}: {key} must be {expected}, got {value!r}")


def check_convention(name: str, convention: Any) -> None:
    """``convention: mergekit`` (what 0.1 wrote into every record) is accepted; ``evogm-0.1`` is refused in one
    line that says where its code lives."""
    if convention == "evogm-0.1":
        raise ValueError(
            f"method {name}: convention evogm-0.1 (this project's first TIES/DARE definitions) was removed in "
            f"evogm-opt 0.2.0; its code is at commit {REMOVED_AT} (git checkout {REMOVED_AT}); without the key "
            "the method is mergekit's"
        )
    if convention != CONVENTION:
        raise ValueError(f"method {name}: convention must be {CONVENTION} (the only one), got {convention!r}")


class MergeMethod:
    """One merge method. Subclasses set ``name``, declare their parameters with defaults in ``parameters``, and
    implement ``merged_delta`` (and ``prepare`` for λ-independent work)."""

    name: ClassVar[str]
    reference_url: ClassVar[str] = ""
    parameters: ClassVar[dict[str, Any]] = {}  # mergekit's names and defaults
    linear: bool = False  # True: merged delta = Σ λ_i τ_i, so factored (LoRA) rebuilds are exact
    # True: experts that all equal θ₀ merge to θ₀ exactly, so a tensor no expert changes is never rewritten
    keeps_untouched: bool = True
    coefficient: str = "weight"  # the mergekit per-model parameter that a searched λ_i is
    takes_base: bool = True  # a mergekit recipe names the base (``base_model``)

    def __init__(self, **options: Any) -> None:
        validate_method(self.name, options)
        options = {k: v for k, v in options.items() if k != "convention"}
        self.options: dict[str, Any] = {**self.parameters, **options}

    def prepare(self, param: str, deltas: list[torch.Tensor]) -> Any:
        """λ-independent preprocessing of one parameter's task vectors (trim, drop); cached by the caller and handed
        back to ``merge``/``merged_delta``."""
        return deltas

    def prepare_with_base(self, param: str, deltas: list[torch.Tensor], base: torch.Tensor) -> Any:
        """``prepare`` told θ₀ of the parameter too (what ``MergeFitness`` calls): methods that merge whole tensors
        (mergekit's) need it; the others ignore it."""
        return self.prepare(param, deltas)

    def stochastic(self, n_experts: int) -> bool:
        """Whether the merge draws random numbers (masks), so that mergekit reproduces it only in distribution."""
        return False

    def check_coefficients(self, n_experts: int, values: Sequence[float]) -> None:
        """Refuse coefficient values the method cannot merge at (a ``ValueError``); these take any finite λ."""

    def mergekit_parameters(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The options as a mergekit recipe's (global ``parameters``, each model's ``parameters`` besides λ)."""
        shared = {k: v for k, v in self.options.items() if k != "seed"}
        return shared, ({"density": shared.pop("density")} if "density" in shared else {})

    def merge(self, base: torch.Tensor, prepared: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        """θ₀ + δ, added in fp32 and cast once to the base's dtype."""
        return (base.float() + self.merged_delta(prepared, weights)).to(base.dtype)

    def merged_delta(self, prepared: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options.items())})"


def _weighted_sum(deltas: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(deltas[0], dtype=torch.float32)
    for w, d in zip(weights.tolist(), deltas):
        if w != 0.0:
            out.add_(d.float(), alpha=w)
    return out


def _finish(delta: torch.Tensor, divisor: torch.Tensor | float | None, scale: float) -> torch.Tensor:
    """mergekit's last two steps: δ / divisor (when normalising), then × lambda."""
    if divisor is not None:
        delta = delta / divisor
    return delta * scale if scale != 1.0 else delta


def _elected(deltas: list[torch.Tensor], weights: torch.Tensor, normalize: bool, scale: float) -> torch.Tensor:
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
    return _finish(total, divisor, scale)


def _linear(deltas: list[torch.Tensor], weights: torch.Tensor, normalize: bool, scale: float) -> torch.Tensor:
    """mergekit's task arithmetic: Σ λ_i τ_i, with ``normalize`` divided by Σ λ_i (|Σ| < 1e-8 → 1)."""
    divisor = None
    if normalize:
        total = float(weights.float().sum())  # summed in fp32, as mergekit does
        divisor = total if abs(total) >= 1e-8 else 1.0
    return _finish(_weighted_sum(deltas, weights), divisor, scale)


def _rescaled(delta: torch.Tensor, kept: torch.Tensor, rescale: bool) -> torch.Tensor:
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
    return _rescaled(delta, delta * mask.view_as(delta), rescale)


def mask_seed(seed: int, param: str) -> int:
    """The torch seed of one parameter's DARE masks: ``torch.manual_seed(mask_seed(seed, param))`` before mergekit
    merges that tensor makes mergekit draw the same masks (it draws from torch's global generator, expert by
    expert, one ``torch.bernoulli`` of a density-filled fp32 tensor each, as ``prepare`` does here)."""
    digest = hashlib.blake2b(f"{seed}|{param}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % (2**63)


@register
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
        return _linear(prepared, weights, self.normalize, self.scale)


@register
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
        return _elected(prepared, weights, self.normalize, self.scale)


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
            out.append(_rescaled(d, d * keep.to(d.device), self.rescale))
        return out


@register
class DareLinear(_Dare):
    name = "dare_linear"
    reference_url = "https://arxiv.org/abs/2311.03099"

    def merged_delta(self, prepared: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        return _linear(prepared, weights, self.normalize, self.scale)


@register
class DareTies(_Dare):
    name = "dare_ties"
    reference_url = "https://arxiv.org/abs/2311.03099"

    def merged_delta(self, prepared: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        return _elected(prepared, weights, self.normalize, self.scale)
