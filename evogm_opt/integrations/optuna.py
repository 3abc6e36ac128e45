"""``GenerativeSampler``: EvoGM (or any optimizer of the core) as an Optuna sampler.

Relative sampling covers the float and int parameters of the intersection search space, mapped to the box
[-1, 1]^d the optimizer works in (log-scaled parameters in log space; ints and stepped floats rounded on the way
out). Other parameters (categoricals, single-valued ranges) go to an independent sampler — ``RandomSampler`` by
default — with a one-time warning.

Distributed studies: the optimizer is fed from the *storage*, not from this process's memory. Before every
relative sample, trials that finished since the last one (COMPLETE with their value; FAIL and PRUNED as failed
evaluations) are told to this process's optimizer, in trial-number order, whichever process ran them; rows that
this process did not ask are external rows to it (the core protocol takes them). So several processes sharing
one RDB study each propose from every finished trial, and ``n_jobs > 1`` threads share one optimizer under a lock.
"""

from __future__ import annotations

import math
import threading
import warnings
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from evogm_opt.base import Optimizer
from evogm_opt.integrations._common import OptimizerFactory, ParameterAxis, default_factory


def _axis(dist: FloatDistribution | IntDistribution) -> ParameterAxis:
    """Optuna's grids start at ``low``; an int distribution steps by 1 unless it says otherwise."""
    integer = isinstance(dist, IntDistribution)
    step = (dist.step or 1) if integer else dist.step
    return ParameterAxis(dist.low, dist.high, bool(dist.log), integer, step, float(dist.low))


class GenerativeSampler(BaseSampler):
    """An Optuna sampler driven by an ask/tell optimizer of ``evogm_opt`` (EvoGM's default preset by default).

    Args:
        seed: seeds the optimizer and the independent sampler.
        optimizer_factory: ``(dim, seed, maximize) -> Optimizer`` to use another optimizer or preset, e.g.
            ``lambda d, s, m: GenerativeOptimizer(d, seed=s, maximize=m, preset="paper")``.
        independent_sampler: for parameters outside the relative search space (default ``RandomSampler``).
        warn_independent_sampling: warn once when a parameter is sampled independently.
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        optimizer_factory: OptimizerFactory | None = None,
        independent_sampler: BaseSampler | None = None,
        warn_independent_sampling: bool = True,
    ) -> None:
        self._seed = seed
        self._factory = optimizer_factory or default_factory
        self._independent = independent_sampler or RandomSampler(seed=seed)
        self._warn = warn_independent_sampling
        self._warned: set[str] = set()
        self._search_space = IntersectionSearchSpace(include_pruned=True)
        self._lock = threading.Lock()
        self._optimizer: Optimizer | None = None
        self._names: tuple[str, ...] = ()
        self._axes: list[ParameterAxis] = []
        self._told: set[int] = set()
        self._queue: list[np.ndarray] = []

    # ------------------------------------------------------------------ Optuna's sampler interface
    def reseed_rng(self) -> None:
        self._independent.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        space = {}
        for name, dist in self._search_space.calculate(study).items():
            if isinstance(dist, (FloatDistribution, IntDistribution)) and not dist.single():
                space[name] = dist
        return space

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if study._is_multi_objective():
            raise ValueError("GenerativeSampler supports single-objective studies only")
        if not search_space:
            return {}
        with self._lock:
            self._prepare(study, search_space)
            self._sync(study)
            if not self._queue:
                self._queue = list(self._optimizer.ask())
            row = self._queue.pop(0)
        return {name: axis.from_unit(u) for name, axis, u in zip(self._names, self._axes, self._to_unit_row(row))}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        if self._warn and param_name not in self._warned and len(study.trials) > 1:
            self._warned.add(param_name)
            warnings.warn(
                f"GenerativeSampler samples {param_name!r} ({type(param_distribution).__name__}) with "
                f"{type(self._independent).__name__}: only float and int parameters are searched jointly",
                stacklevel=2,
            )
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._independent.before_trial(study, trial)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: list[float] | None
    ) -> None:
        self._independent.after_trial(study, trial, state, values)

    # ------------------------------------------------------------------ internals
    @property
    def optimizer(self) -> Optimizer | None:
        """This process's optimizer (None before the first relative sample)."""
        return self._optimizer

    def _prepare(self, study: optuna.Study, search_space: dict[str, BaseDistribution]) -> None:
        names = tuple(sorted(search_space))
        if self._optimizer is not None and names == self._names:
            return
        if self._optimizer is not None:
            warnings.warn("the relative search space changed; GenerativeSampler starts a new optimizer", stacklevel=3)
        self._names = names
        self._axes = [_axis(search_space[n]) for n in names]
        maximize = study.direction == StudyDirection.MAXIMIZE
        self._optimizer = self._factory(len(names), self._seed, maximize)
        self._told = set()
        self._queue = []

    def _to_unit_row(self, row: np.ndarray) -> np.ndarray:
        return self._optimizer.box.to_unit(np.asarray(row, dtype=float)[None])[0]

    def _sync(self, study: optuna.Study) -> None:
        """Tell every finished trial of the storage that holds all current parameters and is not told yet."""
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED))
        rows, values = [], []
        for t in sorted(finished, key=lambda t: t.number):
            if t.number in self._told or not all(n in t.params for n in self._names):
                continue
            self._told.add(t.number)
            unit = np.array([axis.to_unit(t.params[n]) for n, axis in zip(self._names, self._axes)])
            rows.append(self._optimizer.box.to_user(unit[None])[0])
            ok = t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
            values.append(float(t.value) if ok else float("nan"))
        if rows:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # failed trials are expected input here, not news
                self._optimizer.tell(np.array(rows), values)
