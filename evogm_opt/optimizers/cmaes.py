"""CMA-ES through the maintained ``cma`` package (Hansen et al.), behind our ask/tell protocol.

``cma`` runs in the normalised box [-1, 1]^dim (so per-coordinate bounds of different widths need no extra
scaling), with its own boundary handling (``BoundTransform``) keeping every ask inside the box. Its random
numbers come from a private numpy Generator passed as the ``randn`` option, so the global numpy RNG is never
touched. ``cma``'s object holds far more state than is sensible to serialise field by field, so a checkpoint
stores the log of ask sizes and told batches and :meth:`from_state_dict` replays it: the same calls on the same
seed reproduce cma's state exactly (replay costs ~cma's own overhead per evaluation).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from evogm_opt import _state
from evogm_opt.base import Optimizer
from evogm_opt.bounds import BoundsLike

with warnings.catch_warnings():  # cma warns at import when matplotlib is missing; plotting is not our business
    warnings.simplefilter("ignore")
    import cma

_FAILED_MARGIN = 1.0


class _OneCoordinateScaling(cma.transformations.DiagonalDecoding):
    """pycma's per-coordinate step scaling, usable at one coordinate.

    Why: pycma caps each coordinate's standard deviation at ``maxstd`` (a third of the bound range by default) by
    rescaling that coordinate with ``set_i``, which refuses ("not yet initialized (dimension needed)") whenever its
    scaling vector has a single entry — always the case at dim 1, so a 1-D search whose step outgrows the box
    crashed within a few generations. This ``set_i`` does what pycma's does at every other dimension.
    """

    def set_i(self, index: int, value: float) -> None:
        self.scaling = np.array(self.scaling, dtype=float).reshape(1)
        self.is_identity = False
        self.scaling[index] = value


class CMAES(Optimizer):
    """CMA-ES (``cma.CMAEvolutionStrategy``), optionally with IPOP restarts.

    Args:
        x0: start point in user coordinates (default: the box centre).
        sigma0: initial step size as a fraction of the half-width of the box (default 0.5, i.e. a quarter of the
            box width, ``cma``'s usual advice for a known range).
        restarts: number of IPOP restarts (population ×``incpopsize`` each) when ``cma`` reports convergence.
        cma_options: further ``cma`` options (plain data), e.g. ``{"tolflatfitness": 100}``.
    """

    name = "cmaes"

    def __init__(
        self,
        dim: int,
        bounds: BoundsLike = (-1.0, 1.0),
        *,
        popsize: int | None = None,
        seed: int | None = None,
        maximize: bool = False,
        max_evals: int | None = None,
        x0: list[float] | np.ndarray | None = None,
        sigma0: float = 0.5,
        restarts: int = 0,
        incpopsize: float = 2.0,
        cma_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(dim, bounds, popsize=popsize, seed=seed, maximize=maximize, max_evals=max_evals)
        if self.popsize < 3:
            raise ValueError("cma needs popsize >= 3")
        if not sigma0 > 0:
            raise ValueError(f"sigma0 must be > 0, got {sigma0}")
        self.x0 = None if x0 is None else self.box.check_inside(np.asarray(x0, dtype=float).reshape(1, dim))[0]
        self.sigma0 = float(sigma0)
        self.max_restarts = int(restarts)
        self.incpopsize = float(incpopsize)
        self.cma_options = dict(cma_options or {})
        self._cma_rng = np.random.default_rng([self.seed, 0xC3A])
        self.restarts_done = 0
        self._op_log: list[int] = []  # +n: ask(n); -k: tell the next k logged rows
        self._told_x: list[np.ndarray] = []
        self._told_y: list[float] = []
        self._buffer_x: list[np.ndarray] = []
        self._buffer_y: list[float] = []
        # cma allows one tell per iteration and none before the first ask; see _tell_strategy (True: the next tell
        # opens an iteration itself, so rows told before any ask — external ones — are accepted)
        self._told_since_ask = True
        # TPA (pycma's step-size rule from 300 coordinates on) puts two samples mirrored along the last mean shift
        # first in an iteration's asks and reads their ranks at the tell: a second mirror drawn for a one-row ask and
        # not yet handed out, and the identity (bytes of their normalised told rows) of both, for the tell's order
        self._held: list[np.ndarray] = []
        self._mirror_keys: list[bytes] = []
        self.es = self._new_strategy(self.popsize)

    @staticmethod
    def default_popsize(dim: int) -> int:
        return 4 + int(3 * np.log(dim))  # cma's default λ

    def _new_strategy(self, popsize: int) -> cma.CMAEvolutionStrategy:
        options = {
            "bounds": [-1.0, 1.0],
            "popsize": popsize,
            "seed": np.nan,  # nan: cma does not seed (or touch) numpy's global RNG
            "randn": lambda *shape: self._cma_rng.standard_normal(shape),
            "verbose": -9,
            "verb_log": 0,
            "verb_disp": 0,
            **self.cma_options,
        }
        x0 = np.zeros(self.dim) if self.x0 is None else self.box.to_unit(self.x0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            es = cma.CMAEvolutionStrategy(x0, self.sigma0, options)
        if self.dim == 1 and type(es.sigma_vec) is cma.transformations.DiagonalDecoding:
            es.sigma_vec.__class__ = _OneCoordinateScaling
        return es

    # ------------------------------------------------------------------ protocol hooks
    def _propose(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        self._op_log.append(n)
        u = np.asarray(self._ask_strategy(n), dtype=float).reshape(n, self.dim)
        self._told_since_ask = False
        return self.box.to_user(u), np.empty((n, 0))

    def _ask_strategy(self, n: int) -> list[np.ndarray]:
        """``n`` samples from cma, also when cma's TPA step-size rule is on (``mean_shift_samples``).

        Under TPA, pycma's first ask of an iteration returns the two mirrored mean-shift samples first, and any
        later ask of more than one row in the same iteration raises "Mean shift samples are expected but missing"
        — which our partial tells (the tell waits for a full generation) run into. So: the first ask draws at
        least the two mirrors (one is held back for the next ask if one row was asked), later asks draw one row at
        a time, as pycma advises. Without TPA (under 300 coordinates) this is ``es.ask(n)``, unchanged.
        """
        es = self.es
        if not es.mean_shift_samples:
            return list(es.ask(n))
        rows = self._held[:n]
        del self._held[:n]
        n -= len(rows)
        if n == 0:
            return rows
        if es.pop_injection_directions:  # the iteration's first draw: the mirrors come first
            drawn = list(es.ask(max(n, 2)))
            unit = self.box.to_unit(np.clip(self.box.to_user(np.asarray(drawn[:2])), self.box.lower, self.box.upper))
            self._mirror_keys = [row.tobytes() for row in unit]  # as _observe will see them told
            self._held = drawn[n:]
            return rows + drawn[:n]
        if es.countiter > 1 and n > 1:
            return rows + [es.ask(1)[0] for _ in range(n)]
        return rows + list(es.ask(n))

    def _mirrors_first(self, batch_x: list[np.ndarray], batch_y: list[float]) -> tuple[list, list]:
        """The batch with TPA's two mirrored samples first, where the tell must find them (told in another order,
        pycma would read the step-size signal from two other rows); unchanged unless both are in it."""
        keys = [row.tobytes() for row in batch_x]
        if not self._mirror_keys or not all(key in keys for key in self._mirror_keys):
            return batch_x, batch_y
        first = [keys.index(key) for key in self._mirror_keys]
        if first[0] == first[1]:
            return batch_x, batch_y
        order = first + [i for i in range(len(keys)) if i not in first]
        return [batch_x[i] for i in order], [batch_y[i] for i in order]

    def _observe(self, x: np.ndarray, y: np.ndarray, payload: np.ndarray, asked: np.ndarray) -> None:
        self._buffer_x.extend(self.box.to_unit(x))
        self._buffer_y.extend(y.tolist())
        while len(self._buffer_y) >= self.es.popsize:
            k = self.es.popsize
            batch_x, batch_y = self._mirrors_first(self._buffer_x[:k], self._buffer_y[:k])
            del self._buffer_x[:k], self._buffer_y[:k]
            self._op_log.append(-k)
            self._told_x.extend(batch_x)
            self._told_y.extend(batch_y)
            self._tell_strategy(batch_x, batch_y)

    def _tell_strategy(self, batch_x: list[np.ndarray], batch_y: list[float]) -> None:
        values = np.asarray(batch_y, dtype=float)
        finite = np.isfinite(values)
        # cma replaces NaN by the median; our contract is "failed = worst", so rank failures below every success.
        worst = values[finite].max() + _FAILED_MARGIN + abs(values[finite].max()) if finite.any() else 1e300
        values = np.where(finite, values, worst)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self._told_since_ask:
                # A second full batch in one tell (e.g. many external rows): cma refuses two tells per iteration,
                # so open the next iteration with an ask whose samples are discarded. It is a call in the replayed
                # sequence like any other, so checkpoints still resume exactly.
                self.es.ask()
            self.es.tell([np.asarray(v) for v in batch_x], values.tolist())
        self._told_since_ask = True
        self._held, self._mirror_keys = [], []  # the iteration they belong to is over
        if self.es.stop() and self.restarts_done < self.max_restarts:
            self.restarts_done += 1
            self.es = self._new_strategy(int(round(self.es.popsize * self.incpopsize)))
            self._told_since_ask = True  # a new strategy: as at construction

    def _algorithm_stop(self) -> str | None:
        if self.restarts_done >= self.max_restarts:
            reasons = {k: v for k, v in self.es.stop().items() if k != "callback"}
            if reasons:
                return f"cma stopped: {reasons}"
        return None

    # ------------------------------------------------------------------ state
    def _config(self) -> dict[str, Any]:
        return {
            **super()._config(),
            "x0": None if self.x0 is None else self.x0.tolist(),
            "sigma0": self.sigma0,
            "restarts": self.max_restarts,
            "incpopsize": self.incpopsize,
            "cma_options": self.cma_options,
        }

    def _algorithm_state(self) -> dict[str, Any]:
        return {
            "op_log": np.asarray(self._op_log, dtype=np.int64),
            "told_x": np.asarray(self._told_x, dtype=float).reshape(-1, self.dim),
            "told_y": np.asarray(self._told_y, dtype=float),
            "buffer_x": np.asarray(self._buffer_x, dtype=float).reshape(-1, self.dim),
            "buffer_y": np.asarray(self._buffer_y, dtype=float),
        }

    def _check_algorithm_state(self, state: dict[str, Any]) -> None:
        """The log must account for exactly the asks and tells the core counted (a forged log could otherwise
        replay millions of asks), and every told row be finite (failures are +inf, never NaN)."""
        require = _state.require
        log = _state.array(state["op_log"], "op_log", (None,), dtype=np.int64)
        asked, told = int(log[log > 0].sum()), int(-log[log < 0].sum())
        require(not (log == 0).any(), "op_log", "has zero entries (asks are > 0, tells < 0)")
        require(asked == self.n_asked, "op_log", f"asks {asked} rows but core.n_asked is {self.n_asked}")
        told_x = _state.array(state["told_x"], "told_x", (told, self.dim))
        told_y = _state.array(state["told_y"], "told_y", (told,), finite=False)
        buffer_x = _state.array(state["buffer_x"], "buffer_x", (None, self.dim))
        buffer_y = _state.array(state["buffer_y"], "buffer_y", (len(buffer_x),), finite=False)
        for name, values in (("told_y", told_y), ("buffer_y", buffer_y)):
            require(not np.isnan(values).any() and not np.isneginf(values).any(), name, "holds NaN or -inf")
        for name, rows in (("told_x", told_x), ("buffer_x", buffer_x)):
            require(np.all(np.abs(rows) <= 1.0 + 1e-9), name, "has rows outside the normalised box [-1, 1]")
        total = told + len(buffer_x)
        require(total == self.n_evals, "told_y", f"and buffer_y hold {total} rows but core.n_evals is {self.n_evals}")

    def _load_algorithm_state(self, state: dict[str, Any]) -> None:
        told_x = np.asarray(state["told_x"], dtype=float).reshape(-1, self.dim)
        told_y = np.asarray(state["told_y"], dtype=float).ravel()
        cursor = 0
        for op in np.asarray(state["op_log"], dtype=np.int64).ravel():
            if op > 0:
                self._propose(int(op))
            else:
                k = int(-op)
                popsize = self.es.popsize
                _state.require(k == popsize, "op_log", f"tells {k} rows where cma's generation had {popsize}")
                self._op_log.append(-k)
                batch_x, batch_y = list(told_x[cursor : cursor + k]), told_y[cursor : cursor + k].tolist()
                self._told_x.extend(batch_x)
                self._told_y.extend(batch_y)
                self._tell_strategy(batch_x, batch_y)
                cursor += k
        self._buffer_x = list(np.asarray(state["buffer_x"], dtype=float).reshape(-1, self.dim))
        self._buffer_y = np.asarray(state["buffer_y"], dtype=float).ravel().tolist()
