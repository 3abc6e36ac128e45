"""Mixed search spaces ↔ the box [-1, 1]^d the core's optimizers search: the one encoding that the Optuna sampler,
the Ray Tune searcher and the nevergrad registration share (kept free of their imports).

    from evogm_opt.integrations.space import Categorical, Integer, Real, SearchSpace

    space = SearchSpace({"lr": Real(1e-4, 1e-1, log=True), "depth": Integer(1, 8), "act": Categorical(["relu", None])})
    rng = np.random.default_rng(0)
    values, row = space.decode(u, rng)   # u: a point of [-1, 1]^space.dim asked from the optimizer
    ...                                  # evaluate `values`, then tell the optimizer `row` (what was evaluated)
    space.encode(values)                 # a row for values the optimizer never asked (warm start, other samplers)

The rules, parameter by parameter:

* ``Real``: one coordinate, linear in the value (in ``log`` of it for ``log=True``); ``-1`` is ``low`` and ``+1`` is
  ``high``. With a ``step`` the values ``low + k·step`` split the coordinate into bins of equal width, so the end
  values are as likely as inner ones (rounding the value instead would halve the end bins).
* ``Integer``: equal-width bins of one coordinate, one bin per value (``low + k·step``), in log space for ``log``.
  A value encodes to the centre of its bin.
* ``Categorical``: a relaxed one-hot, decoded by argmax: k ≥ 3 choices take k coordinates, one score each; two
  choices take one coordinate (its sign); a single choice takes none. A value encodes to score +1/2 for it and
  -1/2 for the others. Ties (e.g. the all-zero rows of an initial design) are broken at random. With probability
  ``margin`` per categorical and per decoded row the choice is instead drawn uniformly, so every choice keeps at
  least ``margin / k`` probability and none is lost for good once the optimizer's proposals have converged (the
  role the margin plays for integers in CMA-ES with margin, Hamano et al. 2022). The row handed back by
  :meth:`SearchSpace.decode` is *repaired* to what was evaluated: the drawn choice's score is swapped with the
  winner's (the sign flipped for two choices), so the optimizer learns from the choice the objective saw.
* Conditional parameters: every parameter the space knows keeps its coordinates in every row. A parameter that a
  trial does not use (inactive) leaves its coordinates as the optimizer asked them; the objective does not depend
  on them, so they carry no signal and do no harm. Rows built for trials the optimizer never asked put an absent
  parameter at the centre of its coordinates (0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_MARGIN = 0.05
"""Probability that a categorical is drawn uniformly instead of by argmax (per categorical, per decoded row)."""

_TIE_GAP = 1e-3  # how far a repaired winner's score is lifted above a tie, so the row decodes to it without an rng


@dataclass(frozen=True)
class Real:
    """A float parameter in ``[low, high]``; ``log=True`` searches ``log(value)``; ``step`` restricts it to
    ``low + k·step`` (not with ``log``, as in Optuna)."""

    low: float
    high: float
    log: bool = False
    step: float | None = None
    width: int = field(default=1, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_range(self, float(self.low), float(self.high), self.log, self.step)

    def to_unit(self, value: Any) -> np.ndarray:
        if self.step is not None:
            return np.array([_bin_centre(_grid_index(float(value), self.low, self.step, _n_grid(self)), _n_grid(self))])
        lo, hi = _ends(self.low, self.high, self.log)
        v = math.log(float(value)) if self.log else float(value)
        return np.array([_clip_unit(2.0 * (v - lo) / (hi - lo) - 1.0)])

    def from_unit(self, u: np.ndarray, rng: np.random.Generator | None = None) -> tuple[float, np.ndarray]:
        del rng
        x = float(np.clip(u[0], -1.0, 1.0))
        if self.step is not None:
            value = float(self.low) + _bin_index(x, _n_grid(self)) * float(self.step)
            return min(value, float(self.high)), np.array([x])
        lo, hi = _ends(self.low, self.high, self.log)
        v = lo + (x + 1.0) * 0.5 * (hi - lo)
        value = math.exp(v) if self.log else v
        return float(min(max(value, float(self.low)), float(self.high))), np.array([x])

    @property
    def size(self) -> int | None:
        """How many values it can take: the grid's for a ``step``, None (unbounded) for a continuous float."""
        return None if self.step is None else _n_grid(self)

    def level(self, value: Any) -> int | float:
        """What identifies ``value`` among the others: its grid index with a ``step``, else the value itself."""
        if self.step is None:
            return float(value)
        return _strict_grid_index(float(value), float(self.low), float(self.step), _n_grid(self))

    def value_of(self, level: int) -> float:
        """The value of grid index ``level`` (``step`` only)."""
        return min(float(self.low) + level * float(self.step), float(self.high))


@dataclass(frozen=True)
class Integer:
    """An int parameter in ``[low, high]`` on the grid ``low + k·step``; ``log=True`` (``step`` 1 only) makes
    the bins equal in ``log(value)``."""

    low: int
    high: int
    log: bool = False
    step: int = 1
    width: int = field(default=1, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_range(self, float(self.low), float(self.high), self.log, self.step)
        if self.log and self.step != 1:
            raise ValueError(f"Integer(log=True) needs step=1, got step={self.step}")

    def to_unit(self, value: Any) -> np.ndarray:
        n = _n_grid(self)
        if not self.log:
            return np.array([_bin_centre(_grid_index(float(value), self.low, self.step, n), n)])
        k = int(min(max(round(float(value)), self.low), self.high))
        lo, hi = _ends(self.low - 0.5, self.high + 0.5, True)
        centre = 0.5 * (math.log(k - 0.5) + math.log(k + 0.5))
        return np.array([_clip_unit(2.0 * (centre - lo) / (hi - lo) - 1.0)])

    def from_unit(self, u: np.ndarray, rng: np.random.Generator | None = None) -> tuple[int, np.ndarray]:
        del rng
        x = float(np.clip(u[0], -1.0, 1.0))
        if not self.log:
            return int(self.low) + _bin_index(x, _n_grid(self)) * int(self.step), np.array([x])
        lo, hi = _ends(self.low - 0.5, self.high + 0.5, True)
        value = int(round(math.exp(lo + (x + 1.0) * 0.5 * (hi - lo))))
        return int(min(max(value, self.low), self.high)), np.array([x])

    @property
    def size(self) -> int:
        return _n_grid(self)

    def level(self, value: Any) -> int:
        """The grid index of ``value`` (a ValueError off the grid)."""
        return _strict_grid_index(float(value), float(self.low), float(self.step), _n_grid(self))

    def value_of(self, level: int) -> int:
        return int(self.low) + level * int(self.step)


@dataclass(frozen=True)
class Categorical:
    """One of ``choices`` (any values: strings, numbers, ``None``, booleans), searched as a relaxed one-hot."""

    choices: tuple[Any, ...]
    margin: float = DEFAULT_MARGIN

    def __init__(self, choices: Iterable[Any], margin: float = DEFAULT_MARGIN) -> None:
        choices = tuple(choices)
        if not choices:
            raise ValueError("Categorical needs at least one choice")
        if not 0.0 <= margin <= 1.0:
            raise ValueError(f"margin must be in [0, 1], got {margin}")
        object.__setattr__(self, "choices", choices)
        object.__setattr__(self, "margin", float(margin))

    @property
    def width(self) -> int:
        k = len(self.choices)
        return 0 if k == 1 else 1 if k == 2 else k

    def index(self, value: Any) -> int:
        """Position of ``value`` among the choices: same type and equal first (so ``True`` is not ``1``), then
        equal, then both NaN."""
        for i, c in enumerate(self.choices):
            if c is value or (type(c) is type(value) and _equal(c, value)):
                return i
        for i, c in enumerate(self.choices):
            if _equal(c, value):
                return i
        raise ValueError(f"{value!r} is not one of the choices {list(self.choices)}")

    @property
    def size(self) -> int:
        return len(self.choices)

    def level(self, value: Any) -> int:
        return self.index(value)

    def value_of(self, level: int) -> Any:
        return self.choices[level]

    def to_unit(self, value: Any) -> np.ndarray:
        i = self.index(value)
        if self.width == 0:
            return np.empty(0)
        if self.width == 1:
            return np.array([0.5 if i == 1 else -0.5])
        u = np.full(self.width, -0.5)
        u[i] = 0.5
        return u

    def from_unit(self, u: np.ndarray, rng: np.random.Generator | None = None) -> tuple[Any, np.ndarray]:
        u = np.clip(np.asarray(u, dtype=float), -1.0, 1.0)
        k = len(self.choices)
        if k == 1:
            return self.choices[0], u
        scores = np.array([-u[0], u[0]]) if k == 2 else u
        top = np.flatnonzero(scores == scores.max())
        i = int(top[0]) if rng is None or len(top) == 1 else int(rng.choice(top))
        if rng is not None and self.margin > 0 and rng.random() < self.margin:
            i = int(rng.integers(k))
        return self.choices[i], self._force(u, i)

    def _force(self, u: np.ndarray, i: int) -> np.ndarray:
        """``u`` changed as little as possible so that argmax (without an rng) picks choice ``i``."""
        u = u.copy()
        if len(self.choices) == 2:
            want = 1.0 if i == 1 else -1.0
            if u[0] * want < 0:
                u[0] = -u[0]
            elif u[0] == 0.0:
                u[0] = want * _TIE_GAP
            return u
        top = int(np.argmax(u))
        if top != i:
            u[top], u[i] = u[i], u[top]
        others = np.delete(u, i)
        if others.max() >= u[i]:  # a tie with the winner: lift it (or, at the face, lower the others)
            if u[i] + _TIE_GAP <= 1.0:
                u[i] += _TIE_GAP
            else:
                tied = np.flatnonzero(u >= u[i])
                u[tied[tied != i]] -= _TIE_GAP
        return u


Param = Real | Integer | Categorical


class SearchSpace:
    """Named parameters ↔ rows of [-1, 1]^dim, parameters in the order given (see the module's rules)."""

    def __init__(self, params: Mapping[str, Param]) -> None:
        self.params: dict[str, Param] = dict(params)
        self.slices: dict[str, slice] = {}
        start = 0
        for name, p in self.params.items():
            if not isinstance(p, (Real, Integer, Categorical)):
                raise TypeError(f"parameter {name!r}: expected Real, Integer or Categorical, got {type(p).__name__}")
            self.slices[name] = slice(start, start + p.width)
            start += p.width
        self.dim = start

    def __repr__(self) -> str:
        return f"SearchSpace({self.params!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and list(self.params.items()) == list(other.params.items())

    def coordinate_names(self) -> list[str]:
        """A label per coordinate, e.g. ``["lr", "act=relu", "act=tanh", "act=None"]``."""
        out: list[str] = []
        for name, p in self.params.items():
            if isinstance(p, Categorical) and p.width > 1:
                out.extend(f"{name}={c!r}" for c in p.choices)
            else:
                out.extend([name] * p.width)
        return out

    def encode(self, values: Mapping[str, Any], pieces: Mapping[str, Sequence[float]] | None = None) -> np.ndarray:
        """The row for ``values``: a parameter's own coordinates from ``pieces`` where given with the right width
        (what the optimizer asked for it), else its value's encoding, else 0 (absent: inactive, see the rules)."""
        row = np.zeros(self.dim)
        for name, p in self.params.items():
            piece = None if pieces is None else pieces.get(name)
            if piece is not None and len(piece) == p.width:
                row[self.slices[name]] = np.clip(np.asarray(piece, dtype=float), -1.0, 1.0)
            elif name in values:
                row[self.slices[name]] = p.to_unit(values[name])
        return row

    def decode(self, row: np.ndarray, rng: np.random.Generator | None = None) -> tuple[dict[str, Any], np.ndarray]:
        """Values of every parameter for ``row``, and the row repaired to encode exactly those values.

        With ``rng``, categorical ties are broken at random and the margin applies; without, decoding is
        deterministic (ties to the first choice) and ``decode(repaired)`` gives the same values back.
        """
        row = np.asarray(row, dtype=float)
        if row.shape != (self.dim,):
            raise ValueError(f"expected a row of {self.dim} coordinates, got shape {row.shape}")
        values: dict[str, Any] = {}
        repaired = np.clip(row, -1.0, 1.0)
        for name, p in self.params.items():
            s = self.slices[name]
            values[name], repaired[s] = p.from_unit(repaired[s], rng)
        return values, repaired

    @property
    def size(self) -> int | None:
        """How many configurations the space holds (the product of the parameters' sizes; conditional parameters
        counted as if always used), None when a continuous float makes it unbounded."""
        sizes = [p.size for p in self.params.values()]
        return None if None in sizes else math.prod(sizes)

    def grid(self, limit: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Every configuration of a finite space with at most ``limit`` of them, as levels (one column per
        parameter) and as the rows that encode them; None for a larger or unbounded space."""
        size = self.size
        if size is None or size > limit:
            return None
        sizes = [p.size for p in self.params.values()]
        levels = np.indices(sizes).reshape(len(sizes), -1).T if sizes else np.zeros((1, 0), dtype=int)
        tables = [np.array([p.to_unit(p.value_of(i)) for i in range(p.size)]) for p in self.params.values()]
        rows = [table.reshape(len(table), -1)[levels[:, j]] for j, table in enumerate(tables)]
        units = np.concatenate(rows, axis=1) if rows else np.zeros((1, 0))
        return levels, units

    def split(self, row: np.ndarray) -> dict[str, list[float]]:
        """Each parameter's coordinates of ``row`` (what adapters store beside a trial to re-tell it exactly)."""
        return {name: [float(v) for v in row[s]] for name, s in self.slices.items()}


# ---------------------------------------------------------------------- helpers
def _check_range(p: Real | Integer, low: float, high: float, log: bool, step: float | None) -> None:
    name = type(p).__name__
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{name} needs finite low and high, got {low}, {high}")
    if low > high:
        raise ValueError(f"{name} needs low <= high, got {low} > {high}")
    if log and low <= 0:
        raise ValueError(f"{name}(log=True) needs low > 0, got {low}")
    if step is not None:
        if not step > 0:
            raise ValueError(f"{name} needs step > 0, got {step}")
        if log and isinstance(p, Real):
            raise ValueError("Real cannot have both log=True and a step (Optuna refuses it too)")


def _ends(low: float, high: float, log: bool) -> tuple[float, float]:
    lo, hi = (math.log(low), math.log(high)) if log else (float(low), float(high))
    if hi == lo:  # a single value: any unit coordinate decodes to it
        hi = lo + 1.0
    return lo, hi


def _n_grid(p: Real | Integer) -> int:
    """Number of grid values ``low + k·step`` in ``[low, high]`` (a high off the grid is never reached)."""
    return int(math.floor((float(p.high) - float(p.low)) / float(p.step) + 1e-9)) + 1


def _grid_index(value: float, low: float, step: float, n: int) -> int:
    return int(min(max(round((value - float(low)) / float(step)), 0), n - 1))


def _strict_grid_index(value: float, low: float, step: float, n: int) -> int:
    """The grid index of ``value``; a ValueError for a value off the grid (e.g. a range that changed)."""
    k = round((value - low) / step)
    if not 0 <= k < n or abs(low + k * step - value) > 1e-9 * max(1.0, abs(value)):
        raise ValueError(f"{value!r} is not on the grid {low} + k·{step}, k < {n}")
    return int(k)


def _bin_index(x: float, n: int) -> int:
    return int(min(math.floor((x + 1.0) * 0.5 * n), n - 1))


def _bin_centre(i: int, n: int) -> float:
    return 2.0 * (i + 0.5) / n - 1.0


def _clip_unit(x: float) -> float:
    return float(min(max(x, -1.0), 1.0))


def _equal(a: Any, b: Any) -> bool:
    try:
        if a == b:
            return True
    except Exception:  # e.g. numpy arrays as choices
        return False
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
