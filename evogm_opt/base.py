"""The ask/tell protocol every optimizer in this package follows, and the bookkeeping they all share.

Subclasses implement the algorithm in normalised or user coordinates through four small hooks; this base class
owns everything users rely on being identical across optimizers: input validation, the sign flip for
``maximize``, failed-evaluation handling, matching told rows to pending asks, the budget, the best point, and
plain-data checkpoints.
"""

from __future__ import annotations

import abc
import logging
import numbers
import os
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from evogm_opt import _state, registry
from evogm_opt._version import __version__
from evogm_opt.bounds import BoundsLike, Box
from evogm_opt.objectives import weighted_mean
from evogm_opt.pareto import ParetoArchive
from evogm_opt.stopping import budget_reason

logger = logging.getLogger("evogm_opt")

OptimizerT = TypeVar("OptimizerT", bound="Optimizer")

# version 2: ``optimizer`` holds the public registry name ("evogm"); version 1 (no ``state_version``) the class name
STATE_VERSION = 2


@dataclass(frozen=True)
class Evaluations:
    """Everything told, in order: ``x`` in the user's coordinates, ``y`` as the user reported it (NaN: failed;
    for K values per row, their weighted mean), ``evaluation`` the 1-based evaluation numbers."""

    x: np.ndarray
    y: np.ndarray
    evaluation: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Best:
    """The best point ever told: ``x`` in the user's coordinates, ``y`` as the user reported it."""

    x: np.ndarray
    y: float
    evaluation: int  # 1-based index of the evaluation that found it


class Optimizer(abc.ABC):
    """Base class: ``ask() -> X``, ``tell(X, y)``, ``best``, ``stop()``, ``state_dict()``, ``save``/``load``.

    Values are minimised unless ``maximize=True``. A non-finite or ``None`` value is a failed evaluation: it
    ranks below every finite value, counts against ``max_evals`` and can never become ``best``.
    Told rows are matched to pending asks by value; rows that were never asked are accepted as extra data
    (warm start) as long as they lie inside the bounds.

    Without ``max_evals``, :meth:`stop` still ends a ``while not opt.stop()`` loop by two default rules (pycma
    has its own; these are ours): ``AUTO_EVALS_PER_DIM``·dim evaluations, or no improvement of the best value in
    the last ``AUTO_PATIENCE`` generations (``AUTO_PATIENCE``·popsize evaluations). With ``max_evals`` they are off.
    """

    #: default rules, used only when ``max_evals`` is None
    AUTO_EVALS_PER_DIM: ClassVar[int] = 100
    AUTO_PATIENCE: ClassVar[int] = 25

    #: The public name its checkpoints carry (``evogm_opt.registry``); a subclass without one uses its class name.
    name: ClassVar[str] = ""
    #: Width of the per-row bookkeeping vector a subclass attaches to each asked row (0: none).
    payload_width: ClassVar[int] = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = cls.__dict__.get("name") or cls.__name__

    def __init__(
        self,
        dim: int,
        bounds: BoundsLike = (-1.0, 1.0),
        *,
        popsize: int | None = None,
        seed: int | None = None,
        maximize: bool = False,
        max_evals: int | None = None,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.dim = int(dim)
        self.box = Box.create(bounds, self.dim)
        if popsize is None:
            popsize = self.default_popsize(self.dim)
        if isinstance(popsize, bool) or not isinstance(popsize, numbers.Integral) or popsize < 1:
            raise ValueError(f"popsize must be a positive integer, got {popsize!r}")
        self.popsize = int(popsize)
        if max_evals is not None and (
            isinstance(max_evals, bool) or not isinstance(max_evals, numbers.Integral) or max_evals < 1
        ):
            raise ValueError(f"max_evals must be a positive integer or None, got {max_evals!r}")
        self.max_evals = None if max_evals is None else int(max_evals)
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        self.seed = int(seed)
        self.maximize = bool(maximize)
        self.rng = np.random.default_rng(self.seed)
        self.n_evals = 0
        self.n_failed = 0
        self.n_asked = 0
        self._best: Best | None = None
        self._best_internal = np.inf
        self._pending_x = np.empty((0, self.dim))
        self._pending_payload = np.empty((0, self.payload_width))
        self._record_x: list[np.ndarray] = []  # every told batch, user coordinates and user signs (evaluations)
        self._record_y: list[np.ndarray] = []
        # vector-valued tells (one value per task): searched on the weighted mean, non-dominated points archived
        self.n_objectives: int | None = None
        self.objective_weights: np.ndarray | None = None  # set before the first vector tell; default equal
        self.archive: ParetoArchive | None = None

    # ------------------------------------------------------------------ hooks for subclasses
    @staticmethod
    def default_popsize(dim: int) -> int:
        return 2 * dim

    @abc.abstractmethod
    def _propose(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``n`` new points in user coordinates (inside the box) and their payload rows."""

    @abc.abstractmethod
    def _observe(self, x: np.ndarray, y: np.ndarray, payload: np.ndarray, asked: np.ndarray) -> None:
        """Learn from told rows. ``y`` is minimised, failures are ``+inf``; ``asked`` marks matched rows."""

    def _config(self) -> dict[str, Any]:
        """Constructor arguments as plain data, so a checkpoint can rebuild the optimizer."""
        return {
            "dim": self.dim,
            "bounds": self.box.state(),
            "popsize": self.popsize,
            "seed": self.seed,
            "maximize": self.maximize,
            "max_evals": self.max_evals,
        }

    @classmethod
    def _constructor_arguments(cls, config: dict[str, Any]) -> dict[str, Any]:
        """A checkpoint's recorded :meth:`_config` as constructor arguments (a subclass completes old records)."""
        return config

    def _algorithm_state(self) -> dict[str, Any]:
        return {}

    def _check_algorithm_state(self, state: dict[str, Any]) -> None:
        """Refuse an algorithm state no run could have written, before :meth:`_load_algorithm_state` uses it.

        Called with the core (counters, bounds, record) already restored. Raise through :func:`_state.require` and
        its helpers, naming fields relative to the algorithm state (``"noise"``), so the error names the file and
        ``algorithm.noise``. Keep it cheap: a few array checks, no replay.
        """
        del state

    def _load_algorithm_state(self, state: dict[str, Any]) -> None:
        del state

    def _algorithm_stop(self) -> str | None:
        return None

    # ------------------------------------------------------------------ public protocol
    def ask(self, n: int | None = None) -> np.ndarray:
        """Return ``n`` (default ``popsize``) points to evaluate, shape ``(n, dim)``, inside the bounds."""
        if n is None:
            n = self.popsize
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"ask(n) needs a positive integer n, got {n!r}")
        x, payload = self._propose(int(n))
        x = np.clip(np.asarray(x, dtype=float), self.box.lower, self.box.upper)
        payload = np.asarray(payload, dtype=float).reshape(len(x), self.payload_width)
        self._pending_x = np.concatenate([self._pending_x, x])
        self._pending_payload = np.concatenate([self._pending_payload, payload])
        self.n_asked += len(x)
        return x.copy()

    def tell(self, x: Any, y: Any) -> None:
        """Report values for evaluated rows (any subset or order of asked rows, or rows never asked).

        ``y`` is one value per row, or K ≥ 2 values per row (shape ``(n, K)``, e.g. one score per task): then the
        search runs on their weighted mean (``objective_weights``, equal by default) and the non-dominated rows
        are kept in :attr:`archive` (a row with any non-finite value is a failed evaluation).

        Everything is validated before anything changes, so a refused call loses nothing already told.
        """
        points = self._validate_points(x)
        values, objectives = self._scalarized(y, len(points))
        if len(points) == 0:
            return
        if objectives is not None:
            if self.archive is None:
                self.n_objectives = objectives.shape[1]
                self.archive = ParetoArchive(self.dim, self.n_objectives, self.maximize)
            self.archive.add(points, objectives, np.arange(self.n_evals + 1, self.n_evals + len(points) + 1))
        pending_index = self._match_pending(points)
        asked = pending_index >= 0
        payload = np.full((len(points), self.payload_width), np.nan)
        payload[asked] = self._pending_payload[pending_index[asked]]
        keep = np.ones(len(self._pending_x), dtype=bool)
        keep[pending_index[asked]] = False
        self._pending_x = self._pending_x[keep]
        self._pending_payload = self._pending_payload[keep]

        failed = ~np.isfinite(values)
        self._record_x.append(points.copy())
        self._record_y.append(np.where(failed, np.nan, values))
        internal = np.where(failed, np.inf, -values if self.maximize else values)
        if failed.any():
            logger.warning(
                "%d of %d told evaluations failed (non-finite value); ranked worst", failed.sum(), len(values)
            )
        for i in range(len(points)):
            self.n_evals += 1
            if failed[i]:
                self.n_failed += 1
            elif internal[i] < self._best_internal:
                self._best_internal = float(internal[i])
                self._best = Best(x=points[i].copy(), y=float(values[i]), evaluation=self.n_evals)
        self._observe(points, internal, payload, asked)

    @property
    def best(self) -> Best | None:
        """Best point ever told (``None`` until a finite value has been told)."""
        return self._best

    def recommend(self) -> Best | None:
        """The point to deploy. ``best`` here; optimizers with a model of noisy values may choose otherwise
        (with a finite validation set, the luckiest observation is usually not the best point)."""
        return self._best

    def stop(self, default_rules: bool = True) -> bool:
        """Whether to stop: ``max_evals`` reached, the algorithm's own rule, or (without ``max_evals``, unless
        ``default_rules=False``: a caller with a budget of its own, like :func:`evogm_opt.loop.optimize`) the
        default rules."""
        return self._stop_reason(default_rules) is not None

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason(default_rules=True)

    def _stop_reason(self, default_rules: bool) -> str | None:
        if self.max_evals is not None and self.n_evals >= self.max_evals:
            return budget_reason(self.n_evals, self.max_evals)
        own = self._algorithm_stop()
        if own is None and default_rules and self.max_evals is None:
            return self._default_stop()
        return own

    def _default_stop(self) -> str | None:
        cap = self.AUTO_EVALS_PER_DIM * self.dim
        if self.n_evals >= cap:
            return f"default stopping rule: {self.n_evals} evaluations ({self.AUTO_EVALS_PER_DIM}·dim; set max_evals)"
        last = 0 if self._best is None else self._best.evaluation
        window = self._patience_window()
        if self.n_evals - last >= window:
            return f"default stopping rule: no improvement in the last {window} evaluations ({self._patience_words()})"
        return None

    def _patience_window(self) -> int:
        """Evaluations without an improvement that end a run without ``max_evals``: ``AUTO_PATIENCE`` generations."""
        return self.AUTO_PATIENCE * self.popsize

    def _patience_words(self) -> str:
        return f"{self.AUTO_PATIENCE} generations"

    @property
    def evaluations(self) -> Evaluations:
        """Every evaluation told so far, in order (``history`` of an optimizer may keep only part of it)."""
        x = np.concatenate(self._record_x) if self._record_x else np.empty((0, self.dim))
        y = np.concatenate(self._record_y) if self._record_y else np.empty(0)
        return Evaluations(x=x, y=y, evaluation=np.arange(1, len(y) + 1))

    @property
    def n_pending(self) -> int:
        return len(self._pending_x)

    # ------------------------------------------------------------------ validation
    def _validate_points(self, x: Any) -> np.ndarray:
        try:
            points = np.array(x, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"X must be a numeric array of shape (n, {self.dim}): {exc}") from exc
        if points.ndim != 2 or points.shape[1] != self.dim:
            raise ValueError(f"X must have shape (n, {self.dim}) (one row per point); got shape {points.shape}")
        if not np.all(np.isfinite(points)):
            row = int(np.flatnonzero(~np.all(np.isfinite(points), axis=1))[0])
            raise ValueError(f"X contains non-finite coordinates (row {row}); points must be finite")
        return self.box.check_inside(points)

    def _scalarized(self, y: Any, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(one value per row, the K-column values when K ≥ 2 were told — else None)."""
        try:
            array = np.array([np.nan if v is None else v for v in y] if isinstance(y, (list, tuple)) else y, float)
        except (TypeError, ValueError):
            array = None  # ragged or non-numeric: let _validate_values word the error
        if array is None or array.ndim != 2 or array.shape[1] < 2:
            return self._validate_values(y if array is None else array, n), None
        if len(array) != n:
            raise ValueError(f"y has {len(array)} rows but X has {n} rows")
        k = array.shape[1]
        if self.n_objectives is not None and k != self.n_objectives:
            raise ValueError(f"y has {k} values per row; this optimizer was told {self.n_objectives} before")
        return weighted_mean(array, self.objective_weights), array

    @staticmethod
    def _validate_values(y: Any, n: int) -> np.ndarray:
        items = list(y) if isinstance(y, (list, tuple)) else None
        if items is not None:
            items = [np.nan if v is None else v for v in items]
            y = items
        try:
            values = np.array(y, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"y must be a sequence of {n} numbers: {exc}") from exc
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1:
            raise ValueError(
                f"y must be one value per row, shape ({n},), or K values per row, ({n}, K); got {values.shape}"
            )
        if len(values) != n:
            raise ValueError(f"y has {len(values)} values but X has {n} rows")
        return values

    def _match_pending(self, points: np.ndarray) -> np.ndarray:
        """Index of the pending ask each row equals (``-1`` for rows never asked); each ask matches once."""
        slots: dict[bytes, list[int]] = {}
        for i, row in enumerate(self._pending_x):
            slots.setdefault(row.tobytes(), []).append(i)
        index = np.full(len(points), -1, dtype=int)
        for i, row in enumerate(points):
            bucket = slots.get(row.tobytes())
            if bucket:
                index[i] = bucket.pop(0)
        return index

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this optimizer is, as plain data."""
        best = None
        if self._best is not None:
            best = {"x": self._best.x.copy(), "y": self._best.y, "evaluation": self._best.evaluation}
        return {
            "optimizer": self.name,
            "state_version": STATE_VERSION,
            "library_version": __version__,
            "config": self._config(),
            "core": {
                "rng": _state.rng_state(self.rng),
                "n_evals": self.n_evals,
                "n_failed": self.n_failed,
                "n_asked": self.n_asked,
                "best": best,
                "best_internal": self._best_internal,
                "pending_x": self._pending_x.copy(),
                "pending_payload": self._pending_payload.copy(),
                "n_objectives": self.n_objectives,
                "objective_weights": None if self.objective_weights is None else np.asarray(self.objective_weights),
                "archive": None if self.archive is None else self.archive.state(),
                "told_x": self.evaluations.x,
                "told_y": self.evaluations.y,
            },
            "algorithm": self._algorithm_state(),
        }

    @classmethod
    def from_state_dict(cls: type[OptimizerT], state: dict[str, Any], **runtime: Any) -> OptimizerT:
        """Rebuild an optimizer from :meth:`state_dict`. ``runtime`` passes non-data arguments (callbacks)."""
        if isinstance(state, dict) and "scheduler" in state:  # evogm_opt.fidelity's checkpoints wrap an optimizer's
            raise ValueError("this state holds a FidelityScheduler: load it with FidelityScheduler.load(path)")
        if not isinstance(state, dict) or "optimizer" not in state or "config" not in state:
            raise ValueError("not an evogm-opt optimizer state (missing 'optimizer'/'config' entries)")
        name = state["optimizer"]
        target: type[Optimizer] = cls
        if cls is Optimizer:
            target = registry.class_for_checkpoint(name)
        elif name != cls.name and name != cls.__name__:  # format 1 named the class
            try:
                owner = registry.class_for_checkpoint(name).__name__
            except ValueError:
                owner = None
            hint = f"{owner}.load(path)" if owner else "the class that wrote it"
            raise TypeError(
                f"this state was written by {name!r}, not {cls.name!r}: load it with {hint} or evogm_opt.load(path)"
            )
        try:
            opt = target(**target._constructor_arguments(state["config"]), **runtime)
            opt._load_core(state["core"])
            algorithm = state["algorithm"]
            try:
                opt._check_algorithm_state(algorithm)
                opt._load_algorithm_state(algorithm)
            except _state.InvalidState as exc:
                raise exc.within("algorithm") from None
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"state for {name!r} is incomplete or malformed: {exc!r}") from exc
        return opt  # type: ignore[return-value]

    def _load_core(self, core: dict[str, Any]) -> None:
        """Restore the shared bookkeeping, refusing what no run could have written (:class:`_state.InvalidState`)."""
        require, dim, box = _state.require, self.dim, self.box
        n_evals = _state.count(core["n_evals"], "core.n_evals")
        n_failed = _state.count(core["n_failed"], "core.n_failed")
        n_asked = _state.count(core["n_asked"], "core.n_asked")
        require(n_failed <= n_evals, "core.n_failed", f"is {n_failed}, more than core.n_evals = {n_evals}")

        def inside(rows: np.ndarray) -> bool:
            return bool(np.all((rows >= box.lower) & (rows <= box.upper)))

        best, best_internal = core["best"], core["best_internal"]
        if best is None:
            require(n_failed == n_evals, "core.best", f"is missing though {n_evals - n_failed} evaluations succeeded")
            require(best_internal == np.inf, "core.best_internal", f"is {best_internal!r} without a best point")
        else:
            require(isinstance(best, dict), "core.best", "is not a record of x, y and evaluation")
            best_x = _state.array(best["x"], "core.best.x", (dim,))
            require(inside(best_x), "core.best.x", "lies outside the bounds")
            best_y = _state.number(best["y"], "core.best.y")
            evaluation = _state.count(best["evaluation"], "core.best.evaluation", low=1)
            require(evaluation <= n_evals, "core.best.evaluation", f"is {evaluation}, beyond core.n_evals = {n_evals}")
            require(
                best_internal == (-best_y if self.maximize else best_y),
                "core.best_internal",
                f"is {best_internal!r}, which is not core.best.y = {best_y!r} as minimised",
            )
        pending_x = _state.array(core["pending_x"], "core.pending_x", (None, dim))
        require(inside(pending_x), "core.pending_x", "has rows outside the bounds")
        require(len(pending_x) <= n_asked, "core.pending_x", f"has {len(pending_x)} rows; only {n_asked} were asked")
        pending_payload = _state.array(
            core["pending_payload"], "core.pending_payload", (len(pending_x), self.payload_width)
        )
        record: tuple[np.ndarray, np.ndarray] | None = None
        if "told_x" in core:  # absent before version 0.2: the record then starts at the resume
            told_y = _state.array(core["told_y"], "core.told_y", (None,), finite=False)
            require(len(told_y) == n_evals, "core.told_y", f"has {len(told_y)} rows but core.n_evals is {n_evals}")
            require(not np.isinf(told_y).any(), "core.told_y", "holds infinite values (failures are NaN)")
            failed = int(np.isnan(told_y).sum())
            require(failed == n_failed, "core.told_y", f"has {failed} failures but core.n_failed is {n_failed}")
            told_x = _state.array(core["told_x"], "core.told_x", (n_evals, dim))
            require(inside(told_x), "core.told_x", "has rows outside the bounds")
            if best is not None:
                row = evaluation - 1
                require(told_y[row] == best_y, "core.best.y", f"is not the value told at evaluation {evaluation}")
                require(np.array_equal(told_x[row], best_x), "core.best.x", f"is not the row told at {evaluation}")
            record = told_x, told_y

        self.rng = _state.rng_from_state(core["rng"])
        self.n_evals, self.n_failed, self.n_asked = n_evals, n_failed, n_asked
        self._best = None if best is None else Best(best_x, best_y, evaluation)
        self._best_internal = float(best_internal)
        self._pending_x = pending_x
        self._pending_payload = pending_payload
        if core.get("n_objectives") is not None:  # absent in checkpoints of scalar runs and older versions
            self.n_objectives = int(core["n_objectives"])
            weights = core.get("objective_weights")
            self.objective_weights = None if weights is None else np.asarray(weights, float).ravel()
            self.archive = ParetoArchive(self.dim, self.n_objectives, self.maximize)
            self.archive.load(core["archive"])
        if record is not None:
            self._record_x = [record[0]]
            self._record_y = [record[1]]

    def save(self, path: str | os.PathLike[str], *, owner: str | None = None) -> None:
        """Atomic checkpoint (JSON metadata + numpy arrays in one ``.npz``; no pickle), with a checksum.

        ``owner``: an opaque string (e.g. a run fingerprint) stored in the file, so that ``load(path, owner=...)``
        can refuse a checkpoint that belongs to another run.
        """
        _state.save_state(path, self.state_dict(), owner=owner)

    @classmethod
    def load(
        cls: type[OptimizerT], path: str | os.PathLike[str], *, owner: str | None = None, **runtime: Any
    ) -> OptimizerT:
        """Rebuild the optimizer a checkpoint holds; ``ValueError`` (one line naming the file) for a damaged or
        edited file, a state no run could have written, or — when ``owner`` is given — a file that belongs to
        another owner or to none."""
        checkpoint = _state.read_checkpoint(path)
        _state.check_owner(path, checkpoint.owner, owner)
        return cls._from_checkpoint(path, checkpoint.state, **runtime)

    @classmethod
    def _from_checkpoint(
        cls: type[OptimizerT], path: str | os.PathLike[str], state: dict[str, Any], **runtime: Any
    ) -> OptimizerT:
        """:meth:`from_state_dict` on the state read from ``path``, a refusal one line naming the file: the one
        way :meth:`load` and :func:`evogm_opt.resume.load_checkpoint` rebuild an optimizer."""
        try:
            return cls.from_state_dict(state, **runtime)
        except _state.InvalidState as exc:
            raise exc.at(path) from None
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc

    def __repr__(self) -> str:
        budget = "" if self.max_evals is None else f"/{self.max_evals}"
        best = "none yet" if self._best is None else f"{self._best.y:.6g} at evaluation {self._best.evaluation}"
        state = f", {self.stop_reason}" if self.stop() else ""
        return (
            f"{type(self).__name__}(dim={self.dim}, popsize={self.popsize}, n_evals={self.n_evals}{budget}, "
            f"best={best}{self._repr_extra()}{state})"
        )

    def _repr_extra(self) -> str:
        """More state for ``repr`` (e.g. round, basis version, step size), as ", key=value" text."""
        return ""


def load(path: str | os.PathLike[str], *, owner: str | None = None, **runtime: Any) -> Optimizer:
    """Load any checkpoint written by :meth:`Optimizer.save`, whichever optimizer wrote it (``owner``: refuse a
    checkpoint saved with another owner, or none)."""
    return Optimizer.load(path, owner=owner, **runtime)
