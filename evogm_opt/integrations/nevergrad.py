"""EvoGM as a nevergrad optimizer: ``register()`` adds ``"EvoGM"`` to ``ng.optimizers.registry``.

Registration goes through the registry's public ``register_name`` and happens only when you call
:func:`register` (importing this module changes nothing in nevergrad). The parametrization is searched through
the encoding of :mod:`evogm_opt.integrations.space`, the one the Optuna sampler and the Ray Tune searcher use:
each bounded number (``Array``/``Scalar``/``Log``, integer-cast or not, ``TransitionChoice`` as the ordered index it
is) is one coordinate on nevergrad's own normalized scale (``ng.p.helpers.Normalizer``: log-scaled parameters in
log space), and each ``ng.p.Choice`` is a categorical over its options (a relaxed one-hot, decoded by argmax,
with a margin). A numeric parameter inside a ``Choice`` option is a conditional parameter: kept, and ignored
where its option is not chosen. A number without a finite lower and upper bound is refused with a ``ValueError``
naming it (nevergrad's arctan squashing would send the box's faces to ±1.6e16).

No candidate repeats the configuration of a told or pending one while an unused one can be found
(:mod:`evogm_opt.integrations.distinct`): a configuration is the candidate's values as nevergrad casts them (an
integer-cast number by its int, a ``Choice`` by its option). With only ``Choice`` parameters the space is listed
whole and the rule holds until it is exhausted; with numbers the unused configuration is searched for near the
proposal and then anywhere in the box.

    import nevergrad as ng
    from evogm_opt.integrations.nevergrad import register

    register()
    param = ng.p.Dict(x=ng.p.Array(shape=(4,), lower=-1, upper=1), act=ng.p.Choice(["relu", "tanh"]))
    opt = ng.optimizers.registry["EvoGM"](param, budget=80)
    best = opt.minimize(lambda x, act: float(((x - 0.3) ** 2).sum()) + (act == "tanh"))
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

try:
    import nevergrad as ng
    from nevergrad.optimization import base
    from nevergrad.parametrization import helpers
except ImportError as exc:  # pragma: no cover - the extra is installed in CI
    from evogm_opt.cli_faults import install_hint

    raise ImportError(f"evogm_opt.integrations.nevergrad needs nevergrad: {install_hint('nevergrad')}") from exc

from evogm_opt import GenerativeOptimizer
from evogm_opt.integrations import space as enc
from evogm_opt.integrations.distinct import Distinct, Used

NAME = "EvoGM"


@dataclass(frozen=True)
class _Slot:
    """One data array of the parametrization: where it sits in the standardized data, and what it is."""

    name: str  # nevergrad's name of the array, or of the Choice whose weights it holds
    start: int
    size: int
    choice: int  # number of options when the array holds a Choice's weights (one row per repetition), else 0


def _slots(parametrization: Any) -> list[_Slot]:
    names = {id(p): name for name, p in helpers.flatten(parametrization)}
    parents = dict(helpers.flatten(parametrization))
    out, start = [], 0
    for data in helpers.list_data(parametrization):
        name = names.get(id(data), "")
        owner = parents.get(name.rpartition(".")[0]) if "." in name else None
        size = int(data.dimension)
        if isinstance(owner, ng.p.Choice) and name.endswith(".indices"):
            out.append(_Slot(name.rpartition(".")[0], start, size, len(owner)))
        elif isinstance(owner, ng.p.TransitionChoice) and name.endswith(".indices"):  # an ordered index: a number
            out.append(_Slot(name.rpartition(".")[0], start, size, 0))
        else:
            out.append(_Slot(name or "value", start, size, 0))
        start += size
    return out


def _unbounded_coordinates(parametrization: Any, slots: list[_Slot]) -> list[str]:
    """Labels of the numeric coordinates of ``parametrization`` that lack a finite lower or upper bound, in the
    order of its standardized data, e.g. ``["w[0] (no upper)", "b (no lower or upper)"]``."""
    out: list[str] = []
    for slot, data in zip(slots, helpers.list_data(parametrization)):
        if slot.choice:
            continue
        shape = np.shape(data.value)
        lower, upper = (_full(b, shape) for b in data.bounds)
        for index in np.ndindex(shape):
            side = [s for s, b in (("lower", lower[index]), ("upper", upper[index])) if not np.isfinite(b)]
            if side:
                label = f"{slot.name}[{', '.join(map(str, index))}]" if index else slot.name
                out.append(f"{label} (no {' or '.join(side)})")
    return out


def _full(bound: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A nevergrad bound (None, or an array broadcastable to the value) as an array of the value's shape."""
    array = np.full(shape, np.nan) if bound is None else np.asarray(bound, dtype=float)
    return np.broadcast_to(array.reshape(()) if array.size == 1 else array, shape)


class _EvoGM(base.Optimizer):
    """nevergrad ``Optimizer`` driving a :class:`GenerativeOptimizer` on the shared encoding's box."""

    def __init__(
        self,
        parametrization: Any,
        budget: int | None = None,
        num_workers: int = 1,
        *,
        preset: str = "default",
        popsize: int | None = None,
        categorical_margin: float = enc.DEFAULT_MARGIN,
    ) -> None:
        super().__init__(parametrization, budget=budget, num_workers=num_workers)
        self._normalizer = ng.p.helpers.Normalizer(self.parametrization)
        self._slots = _slots(self.parametrization)
        # Refused at the first ask or tell, not here: nevergrad's ConfiguredOptimizer builds one on an unbounded
        # parametrization (an int dimension) as a self-check when it is configured.
        self._unbounded_error: str | None = None
        unbounded = _unbounded_coordinates(self.parametrization, self._slots)
        if unbounded or not self._normalizer.working:
            unbounded = unbounded or ["(nevergrad could not find its bounds)"]
            shown = ", ".join(unbounded[:10]) + (f" and {len(unbounded) - 10} more" if len(unbounded) > 10 else "")
            self._unbounded_error = (
                f"EvoGM needs a finite lower and upper bound on every coordinate; unbounded: {shown}. "
                "Bound them, e.g. ng.p.Array(shape=(n,), lower=..., upper=...) or ng.p.Scalar(lower=..., upper=...)"
            )
        params: dict[str, enc.Param] = {}
        for slot in self._slots:
            if slot.choice:
                reps = slot.size // slot.choice
                for r in range(reps):
                    label = slot.name if reps == 1 else f"{slot.name}[{r}]"
                    params[label] = enc.Categorical(range(slot.choice), margin=categorical_margin)
            else:
                for i in range(slot.size):
                    params[f"{slot.name}#{i}"] = enc.Real(0.0, 1.0)  # nevergrad's normalized scale
        self._encoding = enc.SearchSpace(params)
        seed = int(self._rng.randint(2**31 - 1))  # nevergrad's seeded random state: parametrization.random_state
        self._margin_rng = np.random.default_rng(seed)
        self._optimizer = GenerativeOptimizer(max(1, self._encoding.dim), seed=seed, preset=preset, popsize=popsize)
        self._asked_rows: dict[str, np.ndarray] = {}  # candidate uid -> the row told for it
        numbers = any(not slot.choice for slot in self._slots)  # nevergrad may cast them: compare cast values
        self._distinct = Distinct(self._encoding, self._configuration if numbers else None)
        self._done = Used(self._encoding)  # configurations told
        self._pending: dict[str, dict[str, Any]] = {}  # candidate uid -> its configuration, until told
        self.duplicates_skipped = 0  # proposals that repeated a used configuration, replaced by an unused one
        self.repeats = 0  # candidates of a used configuration because none was found

    @property
    def search_space(self) -> enc.SearchSpace:
        """The encoding EvoGM searches: ``"name#i"`` per numeric coordinate, the Choice's name per choice."""
        return self._encoding

    def _check_bounded(self) -> None:
        if self._unbounded_error is not None:
            raise ValueError(self._unbounded_error)

    def _candidate(self, values: dict[str, Any]) -> Any:
        unit = np.full(self.dimension, 0.5)
        for slot in self._slots:
            if not slot.choice:
                unit[slot.start : slot.start + slot.size] = [values[f"{slot.name}#{i}"] for i in range(slot.size)]
        candidate = self.parametrization.spawn_child().set_standardized_data(self._normalizer.backward(unit))
        flat = dict(helpers.flatten(candidate))
        for slot in self._slots:
            if slot.choice:
                reps = slot.size // slot.choice
                labels = [slot.name] if reps == 1 else [f"{slot.name}[{r}]" for r in range(reps)]
                flat[slot.name].indices.value = np.array([values[label] for label in labels], dtype=int)
        return candidate

    def _values(self, candidate: Any) -> dict[str, Any]:
        unit = self._normalizer.forward(candidate.get_standardized_data(reference=self.parametrization))
        flat = dict(helpers.flatten(candidate))
        values: dict[str, Any] = {}
        for slot in self._slots:
            if slot.choice:
                indices = np.asarray(flat[slot.name].indices.value).ravel()
                for r, k in enumerate(indices):
                    values[slot.name if len(indices) == 1 else f"{slot.name}[{r}]"] = int(k)
            else:
                for i in range(slot.size):
                    values[f"{slot.name}#{i}"] = float(np.clip(unit[slot.start + i], 0.0, 1.0))
        return values

    def _configuration(self, values: dict[str, Any]) -> dict[str, Any]:
        """What identifies the candidate of ``values``: its numbers as nevergrad casts them (an integer-cast
        coordinate as its int), its choices as option indices."""
        out = dict(values)
        for slot, data in zip(self._slots, helpers.list_data(self._candidate(values))):
            if not slot.choice:
                cast = np.asarray(data.value, dtype=float).ravel()
                out.update({f"{slot.name}#{i}": float(cast[i]) for i in range(slot.size)})
        return out

    def _internal_ask_candidate(self) -> Any:
        self._check_bounded()
        asked = self._optimizer.ask(1)[0]
        values, row = self._encoding.decode(asked[: self._encoding.dim], self._margin_rng)
        used = (self._done, Used(self._encoding, self._pending.values()))
        if self._distinct.repeats(values, used):
            found = self._distinct.nearest_unused(row, used, self._margin_rng)
            if found is None:
                self.repeats += 1
                if self._distinct.finite and self.repeats == 1:
                    warnings.warn(
                        "EvoGM has asked every configuration of the parametrization (told or pending); from now on "
                        "candidates repeat configurations, as the optimizer proposes them",
                        stacklevel=3,  # the caller of ask
                    )
            else:
                self.duplicates_skipped += 1
                values, row = found
        candidate = self._candidate(values)
        self._asked_rows[candidate.uid] = np.concatenate([row, asked[self._encoding.dim :]])
        self._pending[candidate.uid] = self._distinct.configuration(values)
        return candidate

    def _internal_tell_candidate(self, candidate: Any, loss: float) -> None:
        self._check_bounded()
        row = self._asked_rows.pop(candidate.uid, None)
        configuration = self._pending.pop(candidate.uid, None)
        if row is None:  # told without an ask: its values encoded, told as an external row
            values = self._values(candidate)
            configuration = self._distinct.configuration(values)
            row = self._encoding.encode(values)
            row = np.concatenate([row, np.zeros(self._optimizer.dim - len(row))])
        self._optimizer.tell(row[None, :], [float(loss)])
        self._done.add(configuration)

    def _internal_provide_recommendation(self) -> np.ndarray | None:
        best = self._optimizer.best
        if best is None:
            return None
        values, _ = self._encoding.decode(best.x[: self._encoding.dim])
        return self._candidate(values).get_standardized_data(reference=self.parametrization)


class EvoGM(base.ConfiguredOptimizer):
    """EvoGM (ICML 2026) as a configured nevergrad optimizer.

    Args:
        preset: a :class:`GenerativeOptimizer` preset (``"default"`` or ``"paper"``).
        popsize: population size, default 2·dimension.
        categorical_margin: probability that a ``Choice`` is drawn uniformly instead of by EvoGM (per choice and
            candidate; see :mod:`evogm_opt.integrations.space`).
    """

    def __init__(
        self, *, preset: str = "default", popsize: int | None = None, categorical_margin: float = enc.DEFAULT_MARGIN
    ) -> None:
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
