"""Any merge method in mergekit's registry as a searched merge (the ``mergekit`` extra): the coefficient searched
per expert is one per-model parameter of the method (``weight`` by default) and mergekit computes every tensor.

Per candidate, each tensor is merged in this process from tensors already in memory, through mergekit's tensor
API (``mergekit.merge_methods.merge_tensors``): the method's own ``_execute_resolved``, which is what
``mergekit-yaml``'s task graph runs for each tensor after loading it. Experts are whole models θ_i = θ₀ + τ_i in
fp32 (a LoRA adapter as W₀ + s·B·A: mergekit's ``BASE+ADAPTER``), built once per tensor in ``prepare_with_base``.

Methods that draw random numbers (DARE, DELLA) draw them from torch's global generator, as in ``mergekit-yaml``;
here the generator is seeded with ``mask_seed(seed, tensor)`` before each tensor (and restored after), so every
candidate sees the same masks and ``mergekit-yaml`` draws the same ones when seeded that way per tensor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from evogm_opt.cli_faults import install_hint
from llm_merge.merges.base import MergeMethod
from llm_merge.merges.registry import MERGE_METHODS
from llm_merge.merges.sparsify import mask_seed

INSTALL = install_hint("mergekit")
OURS = ("backend", "coefficient", "seed")  # our keys in a mergekit method's entry; the others are mergekit's


def mergekit_registry(name: str) -> Any:
    """mergekit's ``merge_methods`` module; a one-line ``ValueError`` with the install line where it is missing."""
    try:
        from mergekit import merge_methods
    except ImportError as exc:
        if name in MERGE_METHODS:  # ours, with backend: mergekit
            raise ValueError(f"method {name}: backend mergekit needs mergekit, not installed: {INSTALL}") from None
        raise ValueError(
            f"unknown merge method {name!r}: not one of ours ({', '.join(sorted(MERGE_METHODS))}); any other name "
            f"is looked up in mergekit's registry, which is not installed ({exc}): {INSTALL}"
        ) from None
    if not hasattr(merge_methods, "merge_tensors") or not hasattr(merge_methods, "registered_methods"):
        import mergekit

        raise ValueError(
            f"method {name}: mergekit {getattr(mergekit, '__version__', '?')} has no in-memory tensor API "
            f"(mergekit.merge_methods.merge_tensors); install mergekit >= 0.1.5: {INSTALL}"
        )
    return merge_methods


def _lookup(name: str) -> Any:
    """mergekit's registered method ``name``; unknown names are refused with ours and mergekit's listed."""
    merge_methods = mergekit_registry(name)
    known = sorted(m.spec.name for m in merge_methods.registered_methods())
    if name not in known:
        raise ValueError(
            f"unknown merge method {name!r}: not one of ours ({', '.join(sorted(MERGE_METHODS))}) nor of "
            f"mergekit's ({', '.join(known)})"
        )
    return merge_methods.get(name)


def _takes_numbers(parameter: Any) -> bool:
    try:
        return isinstance(parameter.validate(0.5), float)
    except ValueError:
        return False


@contextlib.contextmanager
def seeded_torch(seed: int, device: torch.device) -> Iterator[None]:
    """torch's global generator of ``device`` seeded with ``seed`` inside, and put back as it was after."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(cuda[0]):
                torch.cuda.manual_seed(seed)
        yield


@dataclass(frozen=True)
class _Inputs:
    """One tensor's inputs as mergekit takes them (fp32): the base first where the method takes one, then θ_i."""

    param: str  # the name its masks are seeded by (``#basis…`` after a basis shift)
    base: torch.Tensor
    tensors: tuple[torch.Tensor, ...]


class MergekitMethod(MergeMethod):
    """A method of mergekit's registry, computed by mergekit; λ_i is expert i's value of ``coefficient``.

    Options: mergekit's parameters of the method (one value for every expert where mergekit takes one per model),
    and ours: ``backend: mergekit``, ``coefficient`` (default ``weight``), ``seed`` (default 0).
    """

    linear = False

    def __init__(self, name: str, **options: Any) -> None:
        from mergekit.merge_methods.base import BasePolicy
        from mergekit.merge_methods.generalized_task_arithmetic import GeneralizedTaskArithmeticMerge

        self.name = name  # type: ignore[misc]  # an instance's name: one class serves every mergekit method
        self.kernel = _lookup(name)
        spec = self.kernel.spec
        self.declared = {p.name: p for p in spec.parameters}
        self.takes_base = spec.contract.base != BasePolicy.IGNORED  # type: ignore[misc]
        coefficient = options.get("coefficient", "weight")
        searchable = self._searchable()
        if coefficient not in searchable:
            raise ValueError(
                f"method {name}: coefficient must be one of its per-model numeric parameters "
                f"({', '.join(searchable) or 'none'}), got {coefficient!r}"
            )
        seed = options.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"method {name}: seed must be an integer, got {seed!r}")
        self.coefficient = coefficient  # type: ignore[misc]
        self.seed = seed
        self.fixed = self._fixed({k: v for k, v in options.items() if k not in OURS})
        # task-arithmetic-like methods merge τ_i = θ_i − θ₀: where every τ_i is 0 the result is θ₀ exactly; others
        # (linear, slerp-like) are computed for every tensor, as mergekit-yaml does
        self.keeps_untouched = isinstance(self.kernel, GeneralizedTaskArithmeticMerge)  # type: ignore[misc]
        defaults = {p.name: p.default for p in spec.parameters if not p.required and p.name != coefficient}
        self.options = {"backend": "mergekit", "coefficient": coefficient, "seed": seed, **defaults, **self.fixed}

    def _searchable(self) -> list[str]:
        """The per-model parameters a λ per expert can be: numeric, and not one the base would need a value of."""
        from mergekit.merge_methods.base import ParameterScope

        per_model = sorted(n for n, p in self.declared.items() if p.scope != ParameterScope.SHARED)
        if not per_model:
            shared = ", ".join(self.declared) or "none"
            raise ValueError(
                f"method {self.name}: mergekit declares no per-model parameter for it (its parameters: {shared}), so "
                "there is no coefficient per expert to search; merge it with mergekit-yaml"
            )
        per_input = [n for n in per_model if self.declared[n].scope == ParameterScope.INPUT]
        return [n for n in per_model if _takes_numbers(self.declared[n]) and not (n in per_input and self.takes_base)]

    def _fixed(self, given: dict[str, Any]) -> dict[str, Any]:
        """The method's other parameters, validated by mergekit's declarations (one value for every expert)."""
        allowed = ", ".join(sorted({*self.declared, *OURS} - {self.coefficient}))
        fixed: dict[str, Any] = {}
        for key, value in given.items():
            if key == self.coefficient:
                raise ValueError(
                    f"method {self.name}: {key} is the searched coefficient (one per expert), not a setting"
                )
            if key not in self.declared:
                raise ValueError(f"method {self.name}: unknown parameter {key!r}; allowed: {allowed}")
            if isinstance(value, (list, tuple, Mapping)):
                raise ValueError(
                    f"method {self.name}: {key} takes one value (the same for every expert), got {value!r}"
                )
            try:
                fixed[key] = self.declared[key].validate(value)
            except ValueError:
                kind = getattr(self.declared[key].value_type, "__name__", str(self.declared[key].value_type))
                raise ValueError(f"method {self.name}: {key} must be a {kind}, got {value!r}") from None
        missing = [n for n, p in self.declared.items() if p.required and n != self.coefficient and n not in fixed]
        if missing:
            raise ValueError(f"method {self.name}: mergekit has no default for {', '.join(missing)}; set it")
        return fixed

    def check_experts(self, n_experts: int) -> None:
        """mergekit's input contract for a base (where the method takes one) and ``n_experts`` models."""
        ids = list(range(n_experts + 1)) if self.takes_base else list(range(1, n_experts + 1))
        try:
            self.kernel.validate_inputs(ids, 0 if self.takes_base else None)
        except ValueError as exc:
            raise ValueError(f"method {self.name} with {n_experts} experts: {exc}") from None

    def check_coefficients(self, n_experts: int, values: Sequence[float]) -> None:
        """Merge a small random tensor at each coefficient value (all experts alike), so that a value mergekit
        rejects (DELLA's density ± epsilon outside (0, 1), …) is an error before any model loads."""
        for value in values:
            try:
                self._dry_run(n_experts, value, self.seed)
            except (ValueError, RuntimeError, TypeError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ValueError(
                    f"method {self.name}: mergekit fails to merge at {self.coefficient} = {value:g}, an end of the "
                    f"searched range ({first}); change the method's parameters or search a range it accepts "
                    "(optimizer.options.bounds)"
                ) from None

    def stochastic(self, n_experts: int) -> bool:
        """Two seeds give two merges of the same small random tensors (DARE, DELLA with density < 1)."""
        return not torch.equal(self._dry_run(n_experts, 0.7, 0), self._dry_run(n_experts, 0.7, 1))

    def _dry_run(self, n_experts: int, value: float, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        base = 0.02 * torch.randn(8, 16, generator=g)
        deltas = [0.01 * torch.randn(8, 16, generator=g) for _ in range(n_experts)]
        inputs = self.prepare_with_base("dry-run", deltas, base)
        return self._merged(inputs, torch.full((n_experts,), value), None, seed)

    def mergekit_parameters(self) -> tuple[dict[str, Any], dict[str, Any]]:
        from mergekit.merge_methods.base import ParameterScope

        given = {k: v for k, v in self.options.items() if k not in OURS}
        per_model = {k: v for k, v in given.items() if self.declared[k].scope != ParameterScope.SHARED}
        return {k: v for k, v in given.items() if k not in per_model}, per_model

    def prepare(self, param: str, deltas: list[torch.Tensor]) -> _Inputs:
        raise TypeError(f"method {self.name}: mergekit merges whole tensors; call prepare_with_base(param, deltas, θ₀)")

    def prepare_with_base(self, param: str, deltas: list[torch.Tensor], base: torch.Tensor) -> _Inputs:
        theta0 = base.float()
        models = tuple(theta0 + d.to(theta0.device, torch.float32) for d in deltas)
        return _Inputs(param, theta0, (theta0, *models) if self.takes_base else models)

    def merge(self, base: torch.Tensor, prepared: _Inputs, weights: torch.Tensor) -> torch.Tensor:
        """mergekit's merge in fp32 (its ``dtype: float32``), cast once to the base's dtype."""
        return self._merged(prepared, weights, base.dtype, self.seed)

    def merged_delta(self, prepared: _Inputs, weights: torch.Tensor) -> torch.Tensor:
        return self._merged(prepared, weights, None, self.seed) - prepared.base

    def _merged(self, prepared: _Inputs, weights: torch.Tensor, out_dtype: torch.dtype | None, seed: int):
        from mergekit.merge_methods import merge_tensors

        parameters = {**self.fixed, self.coefficient: [float(w) for w in weights.tolist()]}
        with seeded_torch(mask_seed(seed, prepared.param), prepared.base.device):
            return merge_tensors(
                prepared.tensors,
                self.kernel,
                parameters=parameters,
                base_index=0 if self.takes_base else None,
                name=prepared.param.split("#")[0],
                dtype=torch.float32,
                out_dtype=out_dtype,
            )

    def __repr__(self) -> str:
        return f"MergekitMethod({self.name!r}, {', '.join(f'{k}={v!r}' for k, v in self.options.items())})"
