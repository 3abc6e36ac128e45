"""``GenerativeSampler``: EvoGM (or any optimizer of the core) as an Optuna sampler.

Every parameter is searched jointly — float (linear, log, stepped), int (linear, log, stepped) and categorical —
through the one encoding of :mod:`evogm_opt.integrations.space` (categoricals as a relaxed one-hot decoded by
argmax, with a margin so no choice is lost). The joint space is the *union* of the parameters of the finished
trials: a conditional parameter keeps its coordinates in every row and is ignored where a trial does not use it.
A parameter goes to the independent sampler (``RandomSampler`` by default) only before any trial that has it has
finished, or when finished trials disagree on its distribution (a changed range): that one says why in a one-time
warning that points at the user's line. When the joint space changes
the optimizer restarts on the new one and is re-told every finished trial.

Distributed studies: the optimizer is fed from the *storage*. Each trial's row (the point in the optimizer's box
that was evaluated) is kept in the trial's system attributes. Before every relative sample, trials that finished
since the last one (COMPLETE with their value; FAIL and PRUNED as failed evaluations, each told once) are told to
this process's optimizer in trial-number order, whichever process ran them; rows this process did not ask are
external rows to it (the core protocol takes them). ``n_jobs > 1`` threads share one optimizer under a lock.

No configuration is asked twice until the space is exhausted (``skip_duplicates``, on by default): a proposal that
repeats the configuration of any trial of the storage — finished, or running in this or another thread or process
— is replaced by the unused configuration nearest to it (:mod:`evogm_opt.integrations.distinct`), and a random
startup trial draws each discrete parameter among the values that do not complete a configuration another trial
holds. A configuration is a trial's values of the joint space's parameters; a running trial holds the one its row
gives it, before it has suggested them all. Once every configuration of a finite space is finished or running, a
trial takes one that only running trials hold, then, once all are finished, the optimizer's proposal (a one-time
warning says so).
Optuna itself reports failed and pruned trials; telling them to the optimizer is logged at DEBUG only.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import math
import os
import sys
import threading
import warnings
import zlib
from collections.abc import Hashable
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.storages import InMemoryStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

import evogm_opt
from evogm_opt.base import Optimizer
from evogm_opt.integrations import space as enc
from evogm_opt.integrations._common import OptimizerFactory, derived_seed, row_key, sampler_factory
from evogm_opt.integrations.distinct import Distinct, Used, level_key

logger = logging.getLogger(__name__)

_ROW_ATTR = "evogm:row"  # + ":0", ":1", …: the trial's row as JSON {name: [coordinates]}, in chunks
_CHUNK = 2000  # RDB storages cap a system attribute at 2046 characters
_FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
_CLAIM_ATTEMPTS = 8

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


def to_param(dist: BaseDistribution, margin: float = enc.DEFAULT_MARGIN) -> enc.Param:
    """An Optuna distribution as a parameter of the shared encoding (Optuna's grids start at ``low``)."""
    if isinstance(dist, FloatDistribution):
        return enc.Real(dist.low, dist.high, log=bool(dist.log), step=dist.step)
    if isinstance(dist, IntDistribution):
        return enc.Integer(int(dist.low), int(dist.high), log=bool(dist.log), step=int(dist.step or 1))
    if isinstance(dist, CategoricalDistribution):
        return enc.Categorical(dist.choices, margin=margin)
    raise TypeError(f"GenerativeSampler cannot encode {type(dist).__name__}")


class _PerTrialRandomSampler(RandomSampler):
    """``RandomSampler`` whose draws for a trial are seeded by ``(seed, trial number)``: a run repeats with its seed,
    and two processes given the same seed draw different first trials (one shared seed would repeat them)."""

    def __init__(self, seed: int | None) -> None:
        super().__init__(seed=seed)
        self._base_seed = seed
        self._per_trial: dict[int, RandomSampler] = {}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        sampler = self._per_trial.get(trial._trial_id)
        if sampler is None:
            sampler = self._per_trial[trial._trial_id] = RandomSampler(derived_seed(self._base_seed, trial.number))
        return sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: list[float] | None
    ) -> None:
        self._per_trial.pop(trial._trial_id, None)

    def reseed_rng(self) -> None:
        pass  # draws are seeded per trial; Optuna reseeds each thread of n_jobs > 1, which changes nothing here


def _stored_row(trial: FrozenTrial) -> dict[str, list[float]] | None:
    attrs = trial.system_attrs
    if f"{_ROW_ATTR}:0" not in attrs:
        return None
    chunks, i = [], 0
    while f"{_ROW_ATTR}:{i}" in attrs:
        chunks.append(attrs[f"{_ROW_ATTR}:{i}"])
        i += 1
    try:
        return json.loads("".join(chunks))
    except ValueError:  # a row half-written by a process that died: encode the trial from its params instead
        return None


class GenerativeSampler(BaseSampler):
    """An Optuna sampler driven by an ask/tell optimizer of ``evogm_opt`` (EvoGM's default preset by default).

    Args:
        seed: seeds the optimizer, the categorical margin and the independent sampler.
        optimizer_factory: ``(dim, seed, maximize) -> Optimizer`` to use another optimizer or preset, e.g.
            ``lambda d, s, m: GenerativeOptimizer(d, seed=s, maximize=m, preset="paper")``.
        independent_sampler: for parameters outside the joint space (default: random, seeded per trial from
            ``seed`` and the trial number, so processes that share a seed do not draw the same first trials).
        warn_independent_sampling: warn once when a parameter is sampled independently for a reason worth knowing.
        categorical_margin: probability that a categorical is drawn uniformly instead of by the optimizer
            (per categorical and trial; see :mod:`evogm_opt.integrations.space`).
        n_startup_trials: the first trials are sampled independently (at random), as Optuna's TPE and GP samplers
            do; they reveal the conditional parameters, so the optimizer starts on (nearly) the whole space.
        popsize: trials per generation of the default optimizer (default: see ``sampler_factory``).
        skip_duplicates: no configuration is asked twice until the space is exhausted: a proposal that repeats
            the configuration of a finished or running trial (equal values for every joint parameter that trial used)
            is replaced by the unused configuration nearest to it (counted in ``duplicates_skipped``); once a
            finite space is exhausted, trials repeat configurations, ones only running trials hold first (counted
            in ``repeats``, with a one-time warning). Turn off for a noisy objective you want re-measured.
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        optimizer_factory: OptimizerFactory | None = None,
        independent_sampler: BaseSampler | None = None,
        warn_independent_sampling: bool = True,
        categorical_margin: float = enc.DEFAULT_MARGIN,
        n_startup_trials: int = 10,
        popsize: int | None = None,
        skip_duplicates: bool = True,
    ) -> None:
        if not 0.0 <= categorical_margin <= 1.0:
            raise ValueError(f"categorical_margin must be in [0, 1], got {categorical_margin}")
        if n_startup_trials < 0 or (popsize is not None and popsize < 2):
            raise ValueError(f"n_startup_trials must be >= 0 and popsize >= 2, got {n_startup_trials}, {popsize}")
        if popsize is not None and optimizer_factory is not None:
            raise ValueError("give popsize to your optimizer_factory's optimizer, not to GenerativeSampler")
        self._seed = seed
        self._factory = optimizer_factory or sampler_factory(popsize)
        self._n_startup = n_startup_trials
        self._skip_duplicates = skip_duplicates
        self.duplicates_skipped = 0  # proposals that repeated a used configuration, replaced by an unused one
        self.repeats = 0  # trials handed a used configuration because none was left
        self._independent = independent_sampler or _PerTrialRandomSampler(seed)
        self._margin = categorical_margin
        self._rng = np.random.default_rng(seed)
        self._warn = warn_independent_sampling
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._study_id: int | None = None
        self._optimizer: Optimizer | None = None
        self._space: dict[str, BaseDistribution] = {}
        self._encoding = enc.SearchSpace({})
        self._told: set[int] = set()
        self._queue: list[np.ndarray] = []
        # the union search space, grown incrementally over finished trials
        self._scanned: set[int] = set()
        self._dists: dict[str, BaseDistribution] = {}
        self._conflicts: set[str] = set()
        self._chosen: dict[int, dict[str, Any]] = {}  # trial id -> discrete values sampled independently

    # ------------------------------------------------------------------ Optuna's sampler interface
    def reseed_rng(self) -> None:
        self._independent.reseed_rng()
        self._rng = np.random.default_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        with self._lock:
            self._reset_for(study)
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
                if t.number in self._scanned:
                    continue
                self._scanned.add(t.number)
                for name, dist in t.distributions.items():
                    known = self._dists.setdefault(name, dist)
                    if known != dist:
                        self._conflicts.add(name)
            if len(study.get_trials(deepcopy=False, states=_FINISHED)) < self._n_startup:
                return {}
            return {
                name: dist
                for name, dist in sorted(self._dists.items())
                if name not in self._conflicts and not dist.single()
            }

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if study._is_multi_objective():
            raise ValueError("GenerativeSampler supports single-objective studies only")
        if not search_space:
            return {}
        with self._lock:
            self._prepare(study, search_space, trial.number)
            self._sync(study, trial)
            shared = not isinstance(study._storage, InMemoryStorage)  # other processes may be sampling too
            for attempt in range(_CLAIM_ATTEMPTS):
                values, row, fresh = self._next()
                self._store(study, trial, row)
                # Two processes can pick the same configuration between one's read of the storage and its write
                # (the deterministic part of an initial design, say). Whoever reads after both writes sees the
                # clash and picks again, from a point of its queue that depends on the trial number, so processes
                # that run in step do not clash again on the next row.
                last = attempt == _CLAIM_ATTEMPTS - 1
                if not shared or not fresh or last or not self._held_elsewhere(study, trial, values, row):
                    break
                rng = np.random.default_rng([trial.number, attempt])
                shift = int(rng.integers(len(self._queue) + 1))
                self._queue = self._queue[shift:] + self._queue[:shift]
                self._sync(study, trial)
        return values

    def _store(self, study: optuna.Study, trial: FrozenTrial, row: np.ndarray) -> None:
        text = json.dumps(self._encoding.split(row))
        for i in range(0, max(1, math.ceil(len(text) / _CHUNK))):
            study._storage.set_trial_system_attr(
                trial._trial_id, f"{_ROW_ATTR}:{i}", text[i * _CHUNK : (i + 1) * _CHUNK]
            )

    def _held_elsewhere(self, study: optuna.Study, trial: FrozenTrial, values: dict[str, Any], row: np.ndarray) -> bool:
        """Whether another trial not told yet holds this configuration (this row, with ``skip_duplicates`` off)."""
        others = [
            t for t in study.get_trials(deepcopy=False) if t.number != trial.number and t.number not in self._told
        ]
        if self._skip_duplicates:
            held = Used(self._encoding, filter(None, (self._reference(t) for t in others)))
            return held.holds(values)
        key = row_key(row)
        for t in others:
            stored = _stored_row(t)
            if stored is not None and row_key(self._encoding.encode(t.params, stored)) == key:
                return True
        return False

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        if self._warn and param_name not in self._warned:
            reason = self._why_independent(param_name, param_distribution)
            if reason is not None:
                self._warned.add(param_name)
                _warn_at_user(
                    f"GenerativeSampler samples {param_name!r} ({type(param_distribution).__name__}) with "
                    f"{type(self._independent).__name__}: {reason}"
                )
        value = self._independent.sample_independent(study, trial, param_name, param_distribution)
        if self._skip_duplicates:
            value = self._unused_value(study, trial, param_name, param_distribution, value)
        return value

    def _unused_value(
        self, study: optuna.Study, trial: FrozenTrial, name: str, dist: BaseDistribution, value: Any
    ) -> Any:
        """``value``, or, when every configuration that starts with it is used (see :func:`_used_up`), a value of
        ``dist`` drawn among those that leave one free. The random startup trials are chosen one parameter at a
        time, so this is the rule there."""
        if _size(dist) is None:
            return value  # a continuous float never repeats
        with self._lock:  # threads: a value chosen here is seen by the others before Optuna stores it
            others = [self._as_chosen(t) for t in study.get_trials(deepcopy=False) if t.number != trial.number]
            taken = _used_up(others, trial.params, name, dist)
            if dist.to_internal_repr(value) in taken:
                free = [v for v in _discrete_values(dist) or [] if dist.to_internal_repr(v) not in taken]
                if free:
                    seed = derived_seed(self._seed, trial.number)
                    rng = np.random.default_rng(None if seed is None else [seed, zlib.crc32(name.encode())])
                    value = free[int(rng.integers(len(free)))]
            self._chosen.setdefault(trial._trial_id, {})[name] = value
        return value

    def _as_chosen(self, t: FrozenTrial) -> tuple[dict[str, Any], dict[str, BaseDistribution]]:
        """Another trial's parameters and distributions as a random choice must avoid them: those it has chosen
        (or was enqueued with), and, for a running trial this sampler handed a row, the joint parameters it will
        read (:meth:`_reference`): it has them already, though it may not have suggested them yet."""
        params = {**_fixed(t), **self._chosen.get(t._trial_id, {}), **t.params}
        if t.state in _FINISHED or self._optimizer is None or _stored_row(t) is None:
            return params, t.distributions
        reference = self._reference(t) or {}
        return {**reference, **params}, {**{n: self._space[n] for n in reference}, **t.distributions}

    def _why_independent(self, name: str, dist: BaseDistribution) -> str | None:
        """Why ``name`` is outside the joint space, in the user's terms; None when that is not news: no finished
        trial has it yet (it joins the joint space once one has). Optuna sets single-valued ranges itself."""
        del dist
        if name in self._conflicts:
            return (
                "its distribution differs between finished trials (e.g. a changed range), and only parameters with "
                "one distribution in every finished trial that has them are searched jointly"
            )
        return None

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._independent.before_trial(study, trial)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: list[float] | None
    ) -> None:
        self._independent.after_trial(study, trial, state, values)
        self._chosen.pop(trial._trial_id, None)

    # ------------------------------------------------------------------ internals
    @property
    def optimizer(self) -> Optimizer | None:
        """This process's optimizer (None before the first relative sample)."""
        return self._optimizer

    @property
    def search_space(self) -> enc.SearchSpace:
        """The encoding the optimizer currently searches (parameters in name order)."""
        return self._encoding

    def _reset_for(self, study: optuna.Study) -> None:
        if self._study_id == study._study_id:
            return
        self._study_id = study._study_id
        self._scanned, self._dists, self._conflicts = set(), {}, set()
        self._optimizer, self._space = None, {}

    def _prepare(self, study: optuna.Study, search_space: dict[str, BaseDistribution], number: int) -> None:
        if self._optimizer is not None and search_space == self._space:
            return
        if self._optimizer is not None:
            dropped = sorted(set(self._space) - set(search_space))
            added = sorted(set(search_space) - set(self._space))
            change = (f"lost {dropped}" if dropped else "") + (" and " if dropped and added else "")
            change += f"gained {added}" if added else ""
            message = (
                f"GenerativeSampler's joint search space {change or 'changed'}: its optimizer restarts on "
                f"{len(search_space)} parameters after {self._optimizer.n_evals} evaluations and is told again every "
                "finished trial; what it had learned beyond those values (generator, step size) starts over"
            )
            if dropped:  # a changed range: news to the user. A new (conditional) parameter is the normal case.
                _warn_at_user(message + " (a parameter whose range differs between finished trials leaves it)")
            else:
                logger.info(message)
        self._space = dict(search_space)
        self._encoding = enc.SearchSpace({n: to_param(d, self._margin) for n, d in search_space.items()})
        maximize = study.direction == StudyDirection.MAXIMIZE
        # seeded per (seed, trial number): reproducible in one process, and processes that share a seed and a
        # storage do not all propose the same rows
        self._optimizer = self._factory(self._encoding.dim, derived_seed(self._seed, number), maximize)
        self._told = set()
        self._distinct = Distinct(self._encoding)
        self._done = Used(self._encoding)  # configurations of finished trials
        self._running = Used(self._encoding)  # of trials not finished, as of the last sync
        self._branches = _Branches(self._encoding)  # which parameters completed trials used, by their choices
        self._warned_exhausted = False
        self._queue = []

    def _to_user(self, unit: np.ndarray) -> np.ndarray:
        return self._optimizer.box.to_user(np.asarray(unit, dtype=float)[None])[0]

    def _sync(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Tell every finished trial of the storage not told yet, and note the configurations that the finished
        trials and the ones still running (other than ``trial``) hold."""
        finished, running = [], []
        for t in study.get_trials(deepcopy=False):
            if t.number not in self._told and t.number != trial.number:
                # running: here, in another thread or process, or waiting
                (finished if t.state in _FINISHED else running).append(t)
        self._learn(finished)
        # after _learn: which parameters a running trial will read is learnt from the completed ones
        self._running = Used(self._encoding, filter(None, map(self._reference, running)))

    def _learn(self, finished: list[FrozenTrial]) -> None:
        """Tell the optimizer these finished trials, and note their configurations and the parameters they used."""
        rows, values = [], []
        for t in finished:
            self._told.add(t.number)
            rows.append(self._to_user(self._encoding.encode(t.params, _stored_row(t))))
            ok = t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
            values.append(float(t.value) if ok else float("nan"))
            if t.state == TrialState.COMPLETE:
                self._branches.add(self._joint(t.params))
        for t in finished:
            # a failed or pruned trial may have stopped before choosing all its parameters: then it blocks nothing
            params = self._joint(t.params)
            if params and (t.state == TrialState.COMPLETE or self._expected(params) <= set(params)):
                self._done.add(params)
        if rows:
            _told_by_optuna.active.on = True
            try:
                self._optimizer.tell(np.array(rows), values)
            finally:
                _told_by_optuna.active.on = False

    def _next(self) -> tuple[dict[str, Any], np.ndarray, bool]:
        """The next asked row, decoded, and whether its configuration is unused. One row of the optimizer per
        trial: a proposal that repeats a used configuration is replaced by the nearest unused one (the optimizer
        is told only what is evaluated), so the work per trial stays flat however often it repeats itself."""
        if not self._queue:
            self._queue = list(self._optimizer.ask())
        asked = self._optimizer.box.to_unit(self._queue.pop(0)[None])[0]
        values, row = self._encoding.decode(asked, self._rng)
        used = (self._done, self._running)
        if not self._skip_duplicates or not self._distinct.repeats(values, used):
            return values, row, True
        found = self._distinct.nearest_unused(row, used, self._rng)
        if found is not None:
            self.duplicates_skipped += 1
            return found[0], found[1], True
        self.repeats += 1
        self._warn_exhausted()
        return (*self._not_finished(values, row), False)

    def _not_finished(self, values: dict[str, Any], row: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
        """Once every configuration is finished or running: the proposal, unless a finished trial holds it; then,
        while there is one, the nearest configuration that only running trials hold — not measured yet (they may
        fail or be pruned), where a finished one's value is known."""
        if not self._distinct.repeats(values, (self._done,)):
            return values, row
        found = self._distinct.nearest_unused(row, (self._done,), self._rng)
        return (values, row) if found is None else found

    def _warn_exhausted(self) -> None:
        if self._distinct.finite and not self._warned_exhausted:
            self._warned_exhausted = True
            _warn_at_user(
                "GenerativeSampler has asked every configuration of the search space (finished or running); from "
                "now on trials repeat configurations, as the optimizer proposes them"
            )

    def _joint(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` on the joint space: what a configuration is. A parameter outside it is single-valued (no
        choice), or sampled independently because finished trials disagree on its range; keeping it would make
        every configuration that has it unmatchable by the optimizer's proposals (which hold joint parameters
        only), and so turn the rule off for all the others."""
        return {name: value for name, value in params.items() if name in self._space}

    def _expected(self, params: dict[str, Any]) -> set[str]:
        """The joint parameters a trial with these values reads: those completed trials with its choices read
        (see :class:`_Branches`); all of them where no completed trial made its choices (not knowing which it
        reads, it is held to every one: a configuration with too few parameters would hide unused ones)."""
        names = self._branches.expected(params)
        return set(self._space) if names is None else set(names)

    def _reference(self, t: FrozenTrial) -> dict[str, Any] | None:
        """The configuration a trial not yet told holds, as far as it is known (None: not known yet).

        Known are the joint parameters it has chosen (or was enqueued with). With the row this sampler handed it,
        so are the values it will get for every other joint parameter: it holds those it will read, as completed
        trials with its choices read them — a trial that has chosen ``classifier="svm"`` in another thread and
        not yet its ``C`` holds one configuration of that branch, not the branch. Without a row (a random startup
        trial, chosen a parameter at a time) it holds what it has chosen once that is every parameter such
        trials read; before, it holds nothing (a prefix would block every configuration that starts with it)."""
        known = self._joint({**_fixed(t), **self._chosen.get(t._trial_id, {}), **t.params})
        stored = _stored_row(t)
        if stored is None:
            return known if known and self._expected(known) <= set(known) else None
        values = {**self._encoding.decode(self._encoding.encode(known, stored))[0], **known}
        return {name: values[name] for name in (self._expected(values) & set(stored)) | set(known)}


class _Branches:
    """Which joint parameters completed trials read, by their categorical choices: what a running trial will read.

    A define-by-run objective reads a branch's parameters after the choice that opens it, so another thread or
    process sees a trial that has chosen its branch and not yet its parameters. Trials with the same choices read
    the same parameters, so those of completed ones tell. Where they differ (a branch opened by an int, say),
    the union is taken: a running trial may then hold a narrower configuration than it will use (another trial
    may repeat it while both run), never a wider one (which would hide unused configurations).
    """

    def __init__(self, space: enc.SearchSpace) -> None:
        self._space = space
        self._seen: set[tuple[tuple[tuple[str, Hashable], ...], frozenset[str]]] = set()  # (choices, names read)

    def add(self, params: dict[str, Any]) -> None:
        self._seen.add((self._choices(params), frozenset(params)))

    def expected(self, values: dict[str, Any]) -> frozenset[str] | None:
        """The parameters completed trials that made the choices of ``values`` read; None when there is none."""
        mine = dict(self._choices(values))
        like = [names for choices, names in self._seen if all(mine.get(n, _NONE) == k for n, k in choices)]
        return frozenset().union(*like) if like else None

    def _choices(self, params: dict[str, Any]) -> tuple[tuple[str, Hashable], ...]:
        categorical = (n for n in sorted(params) if isinstance(self._space.params.get(n), enc.Categorical))
        return tuple((n, level_key(self._space, n, params[n])) for n in categorical)


_NONE = object()  # a choice not made


def _fixed(t: FrozenTrial) -> dict[str, Any]:
    """The parameters a trial was enqueued with (``study.enqueue_trial``), before it runs."""
    fixed = t.system_attrs.get("fixed_params") if t.state == TrialState.WAITING else None
    return dict(fixed) if isinstance(fixed, dict) else {}


def _used_up(
    others: list[tuple[dict[str, Any], dict[str, BaseDistribution]]],
    mine: dict[str, Any],
    name: str,
    dist: BaseDistribution,
) -> set[float]:
    """Values of ``name`` (Optuna's internal representation) with which a trial whose parameters so far are
    ``mine`` can only repeat one of the ``others`` (their parameters and distributions): either one of them has
    exactly these parameters and this value, or all the ones that agree so far go on with the same further
    discrete parameters and hold every combination of them (a branch of a conditional space, or a row of a grid,
    used up)."""
    prefix = set(mine) | {name}
    branches: dict[float, tuple[set[tuple[str, ...]], set[tuple], list[int | None]]] = {}
    for params, dists in others:
        if not prefix <= set(params) or dists.get(name, dist) != dist:
            continue
        if not all(_same(dists.get(n), params[n], mine[n]) for n in mine):
            continue
        rest = tuple(sorted(set(params) - prefix))
        sets, seen, sizes = branches.setdefault(dist.to_internal_repr(params[name]), (set(), set(), []))
        sets.add(rest)
        seen.add((rest, tuple(_internal(dists.get(n), params[n]) for n in rest)))
        sizes[:] = [_size(dists.get(n)) for n in rest]
    taken = set()
    for v, (sets, seen, sizes) in branches.items():
        if () in sets or (len(sets) == 1 and None not in sizes and len(seen) >= math.prod(sizes)):
            taken.add(v)
    return taken


def _size(dist: BaseDistribution | None, limit: int = 100_000) -> int | None:
    """How many values a discrete distribution has (None: a continuous float, or more than ``limit``)."""
    if isinstance(dist, CategoricalDistribution):
        return len(dist.choices)
    step = getattr(dist, "step", None)
    if step is None or not isinstance(dist, (IntDistribution, FloatDistribution)):
        return None
    n = int(math.floor((dist.high - dist.low) / step + 1e-9)) + 1
    return n if n <= limit else None


def _internal(dist: BaseDistribution | None, value: Any) -> Any:
    if dist is not None:
        try:
            return dist.to_internal_repr(value)
        except (ValueError, TypeError):
            pass
    return repr(value)


def _discrete_values(dist: BaseDistribution) -> list[Any] | None:
    """Every value of a discrete distribution (see :func:`_size`); None for a continuous float."""
    n = _size(dist)
    if n is None:
        return None
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution):
        return [int(dist.low + k * dist.step) for k in range(n)]
    return [min(dist.low + k * dist.step, dist.high) for k in range(n)]


def _same(dist: BaseDistribution | None, a: Any, b: Any) -> bool:
    """Whether two values of a parameter are the same (by Optuna's internal representation where it can)."""
    return _internal(dist, a) == _internal(dist, b)
