"""``GenerativeSampler``: EvoGM (or any optimizer of the core) as an Optuna sampler.

Relative sampling covers the float and int parameters of the intersection search space, mapped to the box
[-1, 1]^d the optimizer works in (log-scaled parameters in log space; ints and stepped floats rounded on the way
out). Other parameters go to an independent sampler — ``RandomSampler`` by default — with a one-time warning that
says why: a categorical, a single-valued range, or a float/int parameter that is not in every finished trial with
the same range (a conditional parameter). When that joint space shrinks, the optimizer restarts on the smaller
space, re-told every finished trial, and says so. Warnings point at the user's line, not into Optuna.

Distributed studies: the optimizer is fed from the *storage*, not from this process's memory. Before every
relative sample, trials that finished since the last one (COMPLETE with their value; FAIL and PRUNED as failed
evaluations) are told to this process's optimizer, in trial-number order, whichever process ran them; rows that
this process did not ask are external rows to it (the core protocol takes them). So several processes sharing
one RDB study each propose from every finished trial, and ``n_jobs > 1`` threads share one optimizer under a lock.
Optuna itself reports failed and pruned trials; telling them to the optimizer is logged at DEBUG only.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import os
import sys
import threading
import warnings
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace, intersection_search_space
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

import evogm_opt
from evogm_opt.base import Optimizer
from evogm_opt.integrations._common import OptimizerFactory, ParameterAxis, default_factory

logger = logging.getLogger(__name__)

# Frames of these packages, and of the thread pool that runs n_jobs > 1, are not the user's line.
_INTERNAL_PREFIXES = (
    os.path.dirname(optuna.__file__) + os.sep,
    os.path.dirname(evogm_opt.__file__) + os.sep,
    os.path.dirname(concurrent.futures.__file__) + os.sep,
    threading.__file__,
)


def _warn_at_user(message: str) -> None:
    """``warnings.warn`` attributed to the first frame outside Optuna and evogm_opt: the user's
    ``trial.suggest_*`` or ``study.optimize`` line (Python 3.11 has no ``skip_file_prefixes``)."""
    frame = sys._getframe(1)
    level = 2  # stacklevel 2 is our caller
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_INTERNAL_PREFIXES):
        frame = frame.f_back
        level += 1
    warnings.warn(message, UserWarning, stacklevel=level)


class _ToldByOptuna(logging.Filter):
    """While a thread tells the optimizer trials that Optuna already reported as failed or pruned, the core's
    WARNING about failed evaluations would repeat that news on every sync: it is re-logged here at DEBUG."""

    def __init__(self) -> None:
        super().__init__()
        self.active = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not getattr(self.active, "on", False):
            return True
        logger.debug("(reported by Optuna) %s", record.getMessage())
        return False


_told_by_optuna = _ToldByOptuna()
logging.getLogger("evogm_opt").addFilter(_told_by_optuna)  # the core's logger (evogm_opt.base)


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
        if self._warn and param_name not in self._warned:
            reason = self._why_independent(study, param_name, param_distribution)
            if reason is not None:
                self._warned.add(param_name)
                _warn_at_user(
                    f"GenerativeSampler samples {param_name!r} ({type(param_distribution).__name__}) with "
                    f"{type(self._independent).__name__}: {reason}"
                )
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    def _why_independent(self, study: optuna.Study, name: str, dist: BaseDistribution) -> str | None:
        """Why ``name`` is outside the joint space, in the user's terms; None when that is not news: no trial has
        finished yet (the first trials are sampled independently), or ``name`` joined the space since this trial
        started (``n_jobs > 1``)."""
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        if not finished:
            return None
        if not isinstance(dist, (FloatDistribution, IntDistribution)):
            return "only float and int parameters are searched jointly"
        if dist.single():
            return "its range holds a single value, so there is nothing to search"
        if name in intersection_search_space(finished, include_pruned=True):
            return None
        having = [t for t in finished if name in t.params]
        if len(having) < len(finished):
            return (
                f"it is in {len(having)} of {len(finished)} finished trials (a conditional parameter?), and only "
                "parameters present in every finished trial are searched jointly"
            )
        return (
            "its distribution differs between finished trials (e.g. a changed range), and only parameters with "
            "the same distribution in every finished trial are searched jointly"
        )

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
            # Optuna's intersection space only shrinks: a parameter left it (missing from a finished trial, or
            # its range changed). A box of another dimension needs a new optimizer; the data is kept.
            dropped = sorted(set(self._names) - set(names))
            added = sorted(set(names) - set(self._names))
            change = f"lost {dropped}" + (f" and gained {added}" if added else "")
            _warn_at_user(
                f"GenerativeSampler's joint search space {change} (a parameter missing from a finished trial or "
                f"with a changed range): its optimizer restarts on {list(names)} after "
                f"{self._optimizer.n_evals} evaluations and is told again every finished trial that has all of "
                "these; what it had learned beyond those values (generator, step size) starts over"
            )
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
            _told_by_optuna.active.on = True
            try:
                self._optimizer.tell(np.array(rows), values)
            finally:
                _told_by_optuna.active.on = False
