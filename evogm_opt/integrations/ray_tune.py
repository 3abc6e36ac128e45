"""``GenerativeSearch``: EvoGM (or any optimizer of the core) as a Ray Tune ``Searcher``.

Tune calls ``suggest`` once per trial and ``on_trial_complete`` when it ends; we hand out one row of the
optimizer's current ``ask`` per suggestion and ``tell`` each result as it arrives (the core protocol accepts
results in any order and any subset of a generation). A trial that errors, or ends without the metric, is told
as a failed evaluation, so it is never credited to another candidate. Works under ``ConcurrencyLimiter``.

Search space: Tune's ``uniform``/``loguniform``/``quniform``/``randint``/``lograndint``/``qrandint`` domains are
searched jointly (log domains in log space, quantised and integer ones rounded on the way out); ``choice`` and
other domains are sampled at random (seeded) with a one-time warning. Constants pass through.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune.search import Searcher
from ray.tune.search.sample import Domain, Float, Integer, LogUniform, Quantized
from ray.tune.search.variant_generator import parse_spec_vars
from ray.tune.utils.util import unflatten_list_dict

from evogm_opt import _state
from evogm_opt.base import Optimizer
from evogm_opt.integrations._common import OptimizerFactory, ParameterAxis, default_factory


def _axis(domain: Float | Integer) -> ParameterAxis:
    """Tune's quantised domains snap to multiples of q; ``randint``'s upper bound is exclusive."""
    sampler = domain.get_sampler()
    inner = sampler.sampler if isinstance(sampler, Quantized) else sampler
    log = isinstance(inner, LogUniform) or type(inner).__name__ == "_LogUniform"
    integer = isinstance(domain, Integer)
    high = float(domain.upper) - 1 if integer else float(domain.upper)
    step = sampler.q if isinstance(sampler, Quantized) else None
    return ParameterAxis(float(domain.lower), high, log, integer, step, 0.0)


class GenerativeSearch(Searcher):
    """A Ray Tune searcher driven by an ask/tell optimizer of ``evogm_opt`` (EvoGM's default preset by default).

    Args:
        space: a Tune search space (``{"lr": tune.loguniform(1e-4, 1e-1), ...}``); or pass it as
            ``param_space`` to the Tuner and Tune hands it over through ``set_search_properties``.
        metric, mode: the reported metric and ``"min"``/``"max"``.
        seed: seeds the optimizer and the sampling of non-numeric domains.
        optimizer_factory: ``(dim, seed, maximize) -> Optimizer`` for another optimizer or preset.
    """

    def __init__(
        self,
        space: dict[str, Any] | None = None,
        metric: str | None = None,
        mode: str | None = None,
        *,
        seed: int | None = None,
        optimizer_factory: OptimizerFactory | None = None,
    ) -> None:
        if mode not in (None, "min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        super().__init__(metric=metric, mode=mode)
        self._seed = seed
        self._factory = optimizer_factory or default_factory
        self._rng = np.random.default_rng(seed)
        self._space: dict[str, Any] | None = None
        self._optimizer: Optimizer | None = None
        self._live: dict[str, np.ndarray] = {}
        self._queue: list[np.ndarray] = []
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
        if self._space is None or self._metric is None or self._mode is None:
            raise RuntimeError("GenerativeSearch needs a search space, a metric and a mode before suggest()")
        if self._optimizer is None:
            self._optimizer = self._factory(len(self._paths), self._seed, self._mode == "max")
        if not self._queue:
            self._queue = list(self._optimizer.ask())
        row = self._queue.pop(0)
        self._live[trial_id] = row
        unit = self._optimizer.box.to_unit(row[None])[0]
        flat = dict(self._constants)
        for path, dim, u in zip(self._paths, self._dims, unit):
            flat["/".join(map(str, path))] = dim.from_unit(u)
        for path, domain in self._other:
            flat["/".join(map(str, path))] = self._sample_other(path, domain)
        return unflatten_list_dict(flat)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        row = self._live.pop(trial_id, None)
        if row is None or self._optimizer is None:
            return  # not ours (e.g. a restored trial we never suggested)
        value = float("nan")
        if not error and result is not None and self._metric in result:
            value = float(result[self._metric])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._optimizer.tell(row[None], [value])

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
        if optimizer.dim != len(self._paths):
            raise ValueError(f"checkpoint has {optimizer.dim} numeric parameters; this space has {len(self._paths)}")
        self._optimizer = optimizer
        self._metric, self._mode = state["metric"], state["mode"]
        rows = np.asarray(state["live_rows"], dtype=float).reshape(-1, optimizer.dim)
        self._live = {i: rows[k] for k, i in enumerate(state["live_ids"])}
        self._queue = list(np.asarray(state["queue"], dtype=float).reshape(-1, optimizer.dim))
        self._rng = _state.rng_from_state(state["rng"])

    # ------------------------------------------------------------------ internals
    @property
    def optimizer(self) -> Optimizer | None:
        return self._optimizer

    def _set_space(self, config: dict[str, Any]) -> None:
        resolved, domains, grids = parse_spec_vars(config)
        if grids:
            raise ValueError("grid_search is not supported by GenerativeSearch; use Tune's BasicVariantGenerator")
        self._constants = {"/".join(map(str, path)): value for path, value in resolved}
        self._paths, self._dims, self._other = [], [], []
        for path, domain in sorted(domains, key=lambda pd: tuple(map(str, pd[0]))):
            if isinstance(domain, (Float, Integer)) and domain.lower is not None and domain.upper is not None:
                self._paths.append(path)
                self._dims.append(_axis(domain))
            else:
                self._other.append((path, domain))
        if not self._paths:
            raise ValueError("GenerativeSearch needs at least one numeric (uniform/loguniform/randint) parameter")
        self._space = config
        self._warned: set[str] = set()

    def _sample_other(self, path: tuple, domain: Domain) -> Any:
        name = "/".join(map(str, path))
        if name not in self._warned:
            self._warned.add(name)
            warnings.warn(
                f"GenerativeSearch samples {name!r} at random: only numeric domains are searched", stacklevel=3
            )
        return domain.sample(random_state=np.random.RandomState(int(self._rng.integers(2**31))))
