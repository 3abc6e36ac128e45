"""EvoGM as a nevergrad optimizer: ``register()`` adds ``"EvoGM"`` to ``ng.optimizers.registry``.

Registration goes through the registry's public ``register_name`` and happens only when you call
:func:`register` (importing this module changes nothing in nevergrad). The optimizer works on nevergrad's
fully bounded parametrizations: ``ng.p.helpers.Normalizer`` maps nevergrad's standardized data to the unit box,
where our ask/tell optimizer runs. A parametrization with an unbounded coordinate is refused with a
``ValueError`` naming it (nevergrad's arctan squashing would send the box's faces to ±1.6e16).

    import nevergrad as ng
    from evogm_opt.integrations.nevergrad import register

    register()
    opt = ng.optimizers.registry["EvoGM"](ng.p.Array(shape=(4,), lower=-1, upper=1), budget=80)
    best = opt.minimize(lambda x: float(((x - 0.3) ** 2).sum()))
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:
    import nevergrad as ng
    from nevergrad.optimization import base
    from nevergrad.parametrization import helpers
except ImportError as exc:  # pragma: no cover - the extra is installed in CI
    raise ImportError("evogm_opt.integrations.nevergrad needs nevergrad: pip install 'evogm-opt[nevergrad]'") from exc

from evogm_opt.optimizer import GenerativeOptimizer

NAME = "EvoGM"


def _unbounded_coordinates(parametrization: Any) -> list[str]:
    """Names of the coordinates of ``parametrization`` that lack a finite lower or upper bound, in the order of
    its standardized data, e.g. ``["w[0]", "w[1]", "k (a Choice)"]``."""
    names = {id(p): name for name, p in helpers.flatten(parametrization)}
    parents = dict(helpers.flatten(parametrization))
    out: list[str] = []
    for data in helpers.list_data(parametrization):
        name = names.get(id(data), "")
        owner = parents.get(name.rpartition(".")[0]) if "." in name else None
        if isinstance(owner, ng.p.BaseChoice):  # its weights: unbounded by construction
            out.append(f"{name.rpartition('.')[0]} (a {type(owner).__name__}: EvoGM searches numbers in a box)")
            continue
        shape = np.shape(data.value)
        lower, upper = (_full(b, shape) for b in data.bounds)
        for index in np.ndindex(shape):
            side = [s for s, b in (("lower", lower[index]), ("upper", upper[index])) if not np.isfinite(b)]
            if side:
                label = f"{name or 'value'}[{', '.join(map(str, index))}]" if index else name or "value"
                out.append(f"{label} (no {' or '.join(side)})")
    return out


def _full(bound: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A nevergrad bound (None, or an array broadcastable to the value) as an array of the value's shape."""
    array = np.full(shape, np.nan) if bound is None else np.asarray(bound, dtype=float)
    return np.broadcast_to(array.reshape(()) if array.size == 1 else array, shape)


class _EvoGM(base.Optimizer):
    """nevergrad ``Optimizer`` driving a :class:`GenerativeOptimizer` on the unit box."""

    def __init__(
        self,
        parametrization: Any,
        budget: int | None = None,
        num_workers: int = 1,
        *,
        preset: str = "default",
        popsize: int | None = None,
    ) -> None:
        super().__init__(parametrization, budget=budget, num_workers=num_workers)
        self._normalizer = ng.p.helpers.Normalizer(self.parametrization)
        # Refused at the first ask or tell, not here: nevergrad's ConfiguredOptimizer builds one on an unbounded
        # parametrization (an int dimension) as a self-check when it is configured.
        self._unbounded_error: str | None = None
        if not (self._normalizer.working and self._normalizer.fully_bounded):
            unbounded = _unbounded_coordinates(self.parametrization) or ["(nevergrad could not find its bounds)"]
            shown = ", ".join(unbounded[:10]) + (f" and {len(unbounded) - 10} more" if len(unbounded) > 10 else "")
            self._unbounded_error = (
                f"EvoGM needs a finite lower and upper bound on every coordinate; unbounded: {shown}. "
                "Bound them, e.g. ng.p.Array(shape=(n,), lower=..., upper=...) or ng.p.Scalar(lower=..., upper=...)"
            )
        seed = int(self._rng.randint(2**31 - 1))  # nevergrad's seeded random state: parametrization.random_state
        self._optimizer = GenerativeOptimizer(
            self.dimension, bounds=(0.0, 1.0), seed=seed, preset=preset, popsize=popsize
        )
        self._asked_points: dict[str, np.ndarray] = {}  # candidate uid -> the unit-box point we asked

    def _check_bounded(self) -> None:
        if self._unbounded_error is not None:
            raise ValueError(self._unbounded_error)

    def _internal_ask_candidate(self) -> Any:
        self._check_bounded()
        u = self._optimizer.ask(1)[0]
        candidate = self.parametrization.spawn_child().set_standardized_data(self._normalizer.backward(u))
        self._asked_points[candidate.uid] = u
        return candidate

    def _internal_tell_candidate(self, candidate: Any, loss: float) -> None:
        self._check_bounded()
        u = self._asked_points.pop(candidate.uid, None)
        if u is None:  # told without an ask: its position in the unit box, told as an external row
            data = candidate.get_standardized_data(reference=self.parametrization)
            u = np.clip(self._normalizer.forward(data), 0.0, 1.0)
        self._optimizer.tell(u[None, :], [float(loss)])

    def _internal_provide_recommendation(self) -> np.ndarray | None:
        best = self._optimizer.best
        return None if best is None else self._normalizer.backward(best.x)


class EvoGM(base.ConfiguredOptimizer):
    """EvoGM (ICML 2026) as a configured nevergrad optimizer.

    Args:
        preset: a :class:`GenerativeOptimizer` preset (``"default"`` or ``"paper"``).
        popsize: population size, default 2·dimension.
    """

    def __init__(self, *, preset: str = "default", popsize: int | None = None) -> None:
        super().__init__(_EvoGM, locals())


def register(name: str = NAME, **config: Any) -> EvoGM:
    """Add EvoGM to ``ng.optimizers.registry`` under ``name`` (idempotent for the same name)."""
    registry = ng.optimizers.registry
    if name in registry:
        existing = registry[name]
        if not isinstance(existing, EvoGM):
            raise ValueError(f"nevergrad already has an optimizer named {name!r}; pick another name")
        return existing
    optimizer = EvoGM(**config)
    registry.register_name(name, optimizer)
    return optimizer
