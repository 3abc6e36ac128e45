"""``GenerativeSearch``: EvoGM (or any optimizer of the core) as a Ray Tune ``Searcher``.

Tune calls ``suggest`` once per trial and ``on_trial_complete`` when it ends; we hand out one row of the
optimizer's current ``ask`` per suggestion and ``tell`` each result as it arrives (the core protocol accepts
results in any order and any subset of a generation). A trial that errors, or ends without the metric, is told
as a failed evaluation, so it is never credited to another candidate. Works under ``ConcurrencyLimiter``.

Search space: every bounded domain is searched jointly through the encoding of
:mod:`evogm_opt.integrations.space` — ``uniform``/``loguniform``/``quniform``, ``randint``/``lograndint``/
``qrandint`` (Tune's bounds: ``randint``'s upper bound exclusive, quantised ones on multiples of q) and
``choice`` (a relaxed one-hot decoded by argmax, with a margin). ``qloguniform`` and ``qlograndint`` are searched
as a log-spaced grid of the k in q·k (a log int of the encoding), so each value is one point of a grid. Other
domains (``sample_from``, ``randn``) are sampled at random (seeded) with a one-time warning. Constants pass
through.

No configuration is suggested twice until the space is exhausted (``skip_duplicates``, on by default): a proposal
that repeats the configuration of a finished or running trial is replaced by the unused configuration nearest to
it (:mod:`evogm_opt.integrations.distinct`); once every configuration of a finite space has been suggested, trials
repeat the optimizer's proposals, with a one-time warning. Domains sampled at random are not part of the rule.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune.search import Searcher
from ray.tune.search.sample import Categorical, Domain, Float, Integer, LogUniform, Quantized
from ray.tune.search.variant_generator import parse_spec_vars
from ray.tune.utils.util import unflatten_list_dict

from evogm_opt import Optimizer, _state
from evogm_opt.integrations import space as enc
from evogm_opt.integrations._common import OptimizerFactory, sampler_factory
from evogm_opt.integrations.distinct import Distinct, Used


@dataclass(frozen=True)
class _Multiples:
    """A log-scaled quantised domain (``qlograndint``, ``qloguniform``), searched over k in q·k: the encoding has
    no log-scaled step, and a log int over k is one. Each value a trial gets is then one level of the encoding,
    so the no-repeat rule compares values exactly (a log float rounded on the way out would compare the raw
    floats, and many of them round to one value)."""

    q: float
    integer: bool  # qlograndint: an int; qloguniform: a float, as Tune samples it (round(v / q) · q)

    def value(self, k: int) -> int | float:
        return int(round(k * self.q)) if self.integer else k * self.q

    def index(self, value: float) -> int:
        return int(round(float(value) / self.q))


def _param(domain: Float | Integer | Categorical, margin: float) -> tuple[enc.Param, _Multiples | None]:
    """A Tune domain as a parameter of the shared encoding, and, for a log-scaled quantised domain, the q its
    value is the multiple of (the encoding's int is then k in q·k)."""
    if isinstance(domain, Categorical):
        return enc.Categorical(domain.categories, margin=margin), None
    sampler = domain.get_sampler()
    q = sampler.q if isinstance(sampler, Quantized) else None
    inner = sampler.sampler if isinstance(sampler, Quantized) else sampler
    log = isinstance(inner, LogUniform) or type(inner).__name__ == "_LogUniform"
    lower, upper = domain.lower, domain.upper
    integer = isinstance(domain, Integer)
    if q is None or (integer and q == 1):
        if integer:
            return enc.Integer(int(lower), int(upper) - 1, log=log), None
        return enc.Real(float(lower), float(upper), log=log), None
    lo, hi = math.ceil(lower / q - 1e-9), math.floor(upper / q + 1e-9)  # multiples of q, upper inclusive
    if log and lo >= 1:
        return enc.Integer(lo, hi, log=True), _Multiples(float(q), integer)
    if integer:
        return enc.Integer(int(lo * q), int(hi * q), step=int(q)), None
    return enc.Real(float(lo * q), float(hi * q), step=float(q)), None


class GenerativeSearch(Searcher):
    """A Ray Tune searcher driven by an ask/tell optimizer of ``evogm_opt`` (EvoGM's default preset by default).

    Args:
        space: a Tune search space (``{"lr": tune.loguniform(1e-4, 1e-1), "act": tune.choice([...]), ...}``); or
            pass it as ``param_space`` to the Tuner and Tune hands it over through ``set_search_properties``.
        metric, mode: the reported metric and ``"min"``/``"max"``.
        seed: seeds the optimizer, the categorical margin and the sampling of domains outside the joint search.
        optimizer_factory: ``(dim, seed, maximize) -> Optimizer`` for another optimizer or preset (default: EvoGM's
            default preset, 10 trials per generation; see ``evogm_opt.integrations._common.sampler_factory``).
        categorical_margin: probability that a ``choice`` is drawn uniformly instead of by the optimizer (per
            choice and trial; see :mod:`evogm_opt.integrations.space`).
        skip_duplicates: no configuration is suggested twice until the space is exhausted (a repeat of a
            finished or running trial's configuration is replaced by the nearest unused one, counted in
            ``duplicates_skipped``; after exhaustion, repeats are counted in ``repeats``). Turn off for a noisy
            objective you want re-measured.
    """

    def __init__(
        self,
        space: dict[str, Any] | None = None,
        metric: str | None = None,
        mode: str | None = None,
        *,
        seed: int | None = None,
        optimizer_factory: OptimizerFactory | None = None,
        categorical_margin: float = enc.DEFAULT_MARGIN,
        skip_duplicates: bool = True,
    ) -> None:
        if mode not in (None, "min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if not 0.0 <= categorical_margin <= 1.0:
            raise ValueError(f"categorical_margin must be in [0, 1], got {categorical_margin}")
        super().__init__(metric=metric, mode=mode)
        self._seed = seed
        self._factory = optimizer_factory or sampler_factory()
        self._margin = categorical_margin
        self._rng = np.random.default_rng(seed)
        self._space: dict[str, Any] | None = None
        self._optimizer: Optimizer | None = None
        self._live: dict[str, np.ndarray] = {}  # trial id -> the row told for it (optimizer coordinates)
        self._queue: list[np.ndarray] = []
        self._skip_duplicates = skip_duplicates
        self.duplicates_skipped = 0  # proposals that repeated a used configuration, replaced by an unused one
        self.repeats = 0  # suggestions of a used configuration because none was left
        if space:
            self._set_space(space)

    # ------------------------------------------------------------------ Tune's searcher interface
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any) -> bool:
        if self._space is not None:
            return False  # a space given at construction wins, as with Tune's bundled searchers
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        self._set_space(config)
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        optimizer = self._ready()
        if not self._queue:
            self._queue = list(optimizer.ask())
        asked = optimizer.box.to_unit(self._queue.pop(0)[None])[0]
        values, row = self._distinct_config(*self._encoding.decode(asked, self._rng))
        self._live[trial_id] = optimizer.box.to_user(row[None])[0]
        flat = dict(self._constants)
        for name, value in values.items():
            multiples = self._multiple[name]
            flat[name] = value if multiples is None else multiples.value(value)
        for name, domain in self._other.items():
            flat[name] = self._sample_other(name, domain)
        return unflatten_list_dict(flat)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        row = self._live.pop(trial_id, None)
        if row is None or self._optimizer is None:
            return  # not ours (e.g. a restored trial we never suggested)
        value = float("nan")
        if not error and result is not None and self._metric in result:
            value = float(result[self._metric])
        self._tell(row, value)

    def add_evaluated_point(
        self,
        parameters: dict[str, Any],
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        """Tell a configuration evaluated outside this searcher (warm start); errored or pruned ones as failed."""
        del intermediate_values
        optimizer = self._ready()
        flat = _flatten(parameters)
        missing = [name for name in self._encoding.params if name not in flat]
        if missing:
            raise ValueError(f"add_evaluated_point: parameters lack {missing} of the search space")
        values = {name: flat[name] for name in self._encoding.params}
        for name, multiples in self._multiple.items():
            if multiples is not None:
                values[name] = multiples.index(values[name])
        row = optimizer.box.to_user(self._encoding.encode(values)[None])[0]
        self._tell(row, float("nan") if error or pruned else float(value))

    def save(self, checkpoint_path: str) -> None:
        """Atomic checkpoint: the optimizer's own state plus the searcher's live trials and queue (no pickle)."""
        if self._optimizer is None:
            raise RuntimeError("nothing to save before the first suggestion")
        ids = sorted(self._live)
        dim = self._optimizer.dim
        _state.save_state(
            checkpoint_path,
            {
                "optimizer": self._optimizer.state_dict(),
                "metric": self._metric,
                "mode": self._mode,
                "live_ids": ids,
                "live_rows": np.array([self._live[i] for i in ids], dtype=float).reshape(len(ids), dim),
                "queue": np.array(self._queue, dtype=float).reshape(len(self._queue), dim),
                "rng": _state.rng_state(self._rng),
            },
        )

    def restore(self, checkpoint_path: str) -> None:
        if self._space is None:
            raise RuntimeError("restore() needs the search space: construct GenerativeSearch with it")
        state = _state.load_state(Path(checkpoint_path))
        optimizer = Optimizer.from_state_dict(state["optimizer"])
        if optimizer.dim != self._encoding.dim:
            raise ValueError(
                f"checkpoint has {optimizer.dim} coordinates; this search space encodes to {self._encoding.dim} "
                "(a different space)"
            )
        self._optimizer = optimizer
        self._done = Used(self._encoding, (self._values(x) for x in optimizer.evaluations.x))
        self._metric, self._mode = state["metric"], state["mode"]
        rows = np.asarray(state["live_rows"], dtype=float).reshape(-1, optimizer.dim)
        self._live = {i: rows[k] for k, i in enumerate(state["live_ids"])}
        self._queue = list(np.asarray(state["queue"], dtype=float).reshape(-1, optimizer.dim))
        self._rng = _state.rng_from_state(state["rng"])

    # ------------------------------------------------------------------ internals
    @property
    def optimizer(self) -> Optimizer | None:
        return self._optimizer

    @property
    def search_space(self) -> enc.SearchSpace:
        """The encoding the optimizer searches (parameters by their flattened path, ``"a/b"``)."""
        return self._encoding

    def _ready(self) -> Optimizer:
        if self._space is None or self._metric is None or self._mode is None:
            raise RuntimeError("GenerativeSearch needs a search space, a metric and a mode before suggest()")
        if self._optimizer is None:
            self._optimizer = self._factory(self._encoding.dim, self._seed, self._mode == "max")
        return self._optimizer

    def _tell(self, row: np.ndarray, value: float) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._optimizer.tell(row[None], [value])
        self._done.add(self._values(row))

    def _values(self, row: np.ndarray) -> dict[str, Any]:
        """The configuration of a told or live row (optimizer coordinates): its exact decoding."""
        return self._encoding.decode(self._optimizer.box.to_unit(row[None])[0])[0]

    def _distinct_config(self, values: dict[str, Any], row: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
        """``values`` and ``row``, or, when they repeat a finished or live trial's configuration, the nearest
        unused one (see :mod:`evogm_opt.integrations.distinct`)."""
        if not self._skip_duplicates:
            return values, row
        used = (self._done, Used(self._encoding, (self._values(r) for r in self._live.values())))
        if not self._distinct.repeats(values, used):
            return values, row
        found = self._distinct.nearest_unused(row, used, self._rng)
        if found is not None:
            self.duplicates_skipped += 1
            return found
        self.repeats += 1
        if self._distinct.finite and self.repeats == 1:
            warnings.warn(
                "GenerativeSearch has suggested every configuration of the search space (finished or running); "
                "from now on trials repeat configurations, as the optimizer proposes them",
                stacklevel=3,  # the caller of suggest
            )
        return values, row

    def _set_space(self, config: dict[str, Any]) -> None:
        resolved, domains, grids = parse_spec_vars(config)
        if grids:
            raise ValueError("grid_search is not supported by GenerativeSearch; use Tune's BasicVariantGenerator")
        self._constants = {_path(path): value for path, value in resolved}
        params: dict[str, enc.Param] = {}
        self._multiple: dict[str, _Multiples | None] = {}
        self._other: dict[str, Domain] = {}
        for path, domain in sorted(domains, key=lambda pd: tuple(map(str, pd[0]))):
            name = _path(path)
            bounded = isinstance(domain, (Float, Integer)) and all(
                b is not None and math.isfinite(b) for b in (domain.lower, domain.upper)
            )
            if bounded or isinstance(domain, Categorical):
                params[name], self._multiple[name] = _param(domain, self._margin)
            else:
                self._other[name] = domain
        self._encoding = enc.SearchSpace(params)
        self._distinct = Distinct(self._encoding)
        self._done = Used(self._encoding)  # configurations told (finished trials and evaluated points)
        if self._encoding.dim == 0:
            raise ValueError(
                "GenerativeSearch needs at least one searchable domain (uniform/loguniform/randint/choice …)"
            )
        self._space = config
        self._warned: set[str] = set()

    def _sample_other(self, name: str, domain: Domain) -> Any:
        if name not in self._warned:
            self._warned.add(name)
            warnings.warn(
                f"GenerativeSearch samples {name!r} ({type(domain).__name__}) at random: only bounded numeric "
                "domains and choices are searched",
                stacklevel=3,
            )
        return domain.sample(random_state=np.random.RandomState(int(self._rng.integers(2**31))))


def _path(path: tuple) -> str:
    return "/".join(map(str, path))


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "/"))
        else:
            out[name] = value
    return out
