"""What every merge method is: a small class with declared parameters (mergekit's names and defaults) that turns θ₀
and the experts' task vectors into the merged tensor, and the checks that refuse a wrong parameter in one line.

The parameter checks live here, not in the registry, so that a method validates its own options without knowing
who registered it (``llm_merge.merges`` dispatches; this module imports nothing above it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch

# ``convention``: the one value a 0.1 config or record may carry; the other one's code is at REMOVED_AT
CONVENTION, REMOVED_AT = "mergekit", "a95bed8"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# what each parameter name accepts, whichever method takes it: (test, what a wrong value should have been)
PARAMETER_CHECKS: dict[str, tuple[Any, str]] = {
    "density": (lambda v: _is_number(v) and 0.0 < v <= 1.0, "a number in (0, 1] (the fraction of entries kept)"),
    "normalize": (lambda v: isinstance(v, bool), "true or false"),
    "rescale": (lambda v: isinstance(v, bool), "true or false"),
    "int8_mask": (lambda v: isinstance(v, bool), "true or false"),
    "lambda": (_is_number, "a finite number"),
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
}


def check_parameters(name: str, allowed: Mapping[str, Any], options: Mapping[str, Any]) -> None:
    """Each of ``options`` is one of ``allowed`` (a method's declared parameters) with a value of the right kind; a
    one-line ``ValueError`` that names the key and lists the allowed ones otherwise."""
    check_convention(name, options.get("convention", CONVENTION))
    for key, value in options.items():
        if key == "convention":
            continue
        if key not in allowed:
            hint = " (mergekit's knob is density = 1 − drop)" if key == "drop" and "density" in allowed else ""
            listed = ", ".join(sorted(allowed)) if allowed else "none"
            raise ValueError(f"method {name}: unknown parameter {key!r}; allowed: {listed}{hint}")
        test, expected = PARAMETER_CHECKS.get(key, (lambda v: True, ""))
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
        check_parameters(self.name, self.parameters, options)
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
