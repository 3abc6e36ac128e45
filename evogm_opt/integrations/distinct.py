"""No configuration asked twice until the space is exhausted: which configurations a search has used (evaluated,
or handed out and not finished), and the unused configuration nearest to a proposal that repeats one of them.

Why here and not in the optimizer: the core searches a continuous box, where two asked points are never the same;
the encoding (:mod:`evogm_opt.integrations.space`) maps a whole bin of the box onto one int, one stepped float or
one choice, so on a small discrete space many different points are one configuration. Only the integrations see
configurations, so they keep the rule, through this module (shared, free of optuna and ray imports).

* A configuration is the values of the parameters a trial used. A proposal repeats a used configuration when it
  agrees with it on *every parameter that configuration has*: with conditional parameters, a value the trial
  never read does not make another configuration. Values are compared by level (``Param.level``): an int or a
  stepped float by its grid index, a categorical by its choice, a continuous float by its value.
* The replacement for a repeat is the unused configuration nearest to the proposal's row in the box (Euclidean):
  the optimizer's intent kept as far as the space allows. On a finite space of at most :data:`GRID_LIMIT`
  configurations that is exact: every configuration is listed once, so "none left" means the space is exhausted.
  On a larger or unbounded one (a continuous float) the search looks at random points around the row at growing
  distances, then anywhere in the box, and takes the nearest unused one it meets; a space with a continuous float
  that every trial uses is never exhausted.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from evogm_opt.integrations.space import SearchSpace

GRID_LIMIT = 50_000
"""Largest finite space listed whole (its rows are ``GRID_LIMIT × dim`` floats; a replacement costs one pass)."""

_RADII = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)  # of the box's half-width: where the unbounded search looks, in order
_PER_RADIUS = 16  # random points per distance
_ANYWHERE = 64  # then random points anywhere in the box


def level_key(space: SearchSpace, name: str, value: Any) -> Hashable:
    """What identifies ``value`` of parameter ``name``: its level, or (for a parameter the space does not know,
    or a value off its grid) the value itself, tagged so that it never equals a level."""
    p = space.params.get(name)
    if p is not None:
        try:
            return p.level(value)
        except (TypeError, ValueError):
            pass
    return ("value", repr(value) if isinstance(value, (list, dict, set)) else value)


class Used:
    """A set of configurations, each a mapping of the parameters used to their values (kept as levels).

    A configuration with a parameter that the proposals do not have is held by none of them (and by no row of the
    grid): callers keep such parameters out (the Optuna sampler keeps a trial's parameters of its joint space).
    """

    def __init__(self, space: SearchSpace, configurations: Iterable[Mapping[str, Any]] = ()) -> None:
        self.space = space
        self._table: dict[tuple[str, ...], set[tuple]] = {}  # names used -> their levels, one tuple per config
        for values in configurations:
            self.add(values)

    def add(self, values: Mapping[str, Any]) -> None:
        names = tuple(sorted(values))
        self._table.setdefault(names, set()).add(tuple(level_key(self.space, n, values[n]) for n in names))

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._table.values())

    def holds(self, values: Mapping[str, Any]) -> bool:
        """Whether ``values`` (every parameter of the space, say) repeats one of the configurations."""
        for names, keys in self._table.items():
            if all(n in values for n in names):
                if tuple(level_key(self.space, n, values[n]) for n in names) in keys:
                    return True
        return False

    def mask(self, levels: np.ndarray) -> np.ndarray:
        """Which rows of ``levels`` (``SearchSpace.grid``'s: a column per parameter) repeat a configuration."""
        out = np.zeros(len(levels), dtype=bool)
        column = {name: j for j, name in enumerate(self.space.params)}
        for names, keys in self._table.items():
            if not all(n in column for n in names):
                continue  # a parameter outside the space: no row of the grid can repeat it
            ints = [k for k in keys if all(isinstance(v, (int, np.integer)) for v in k)]
            if not ints:
                continue
            sizes = np.array([self.space.params[n].size for n in names], dtype=np.int64)
            strides = np.cumprod(np.concatenate([[1], sizes[:-1]]))
            codes = levels[:, [column[n] for n in names]].astype(np.int64) @ strides
            out |= np.isin(codes, np.array(ints, dtype=np.int64).reshape(len(ints), len(names)) @ strides)
        return out


class Distinct:
    """The rule for one search space: does a proposal repeat a used configuration, and which unused one is nearest.

    ``used`` is a sequence of :class:`Used` (e.g. the finished trials' and the running ones'): a configuration is
    used if any of them holds it. ``configuration`` maps decoded values to what identifies a configuration, where
    that is not the values themselves (nevergrad casts some floats of the box to ints after decoding); the space
    is then searched as unbounded.
    """

    def __init__(
        self, space: SearchSpace, configuration: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    ) -> None:
        self.space = space
        self.configuration = configuration or (lambda values: values)
        # (levels, rows) of a small finite space, else None
        self.grid = space.grid(GRID_LIMIT) if configuration is None else None
        self.points_tried = 0  # decoded candidates and listed rows looked at: the work replacements cost

    @property
    def finite(self) -> bool:
        """Whether every configuration is listed (so :meth:`nearest_unused` returning None means exhausted)."""
        return self.grid is not None

    def repeats(self, values: Mapping[str, Any], used: Sequence[Used]) -> bool:
        configuration = self.configuration(values)
        return any(u.holds(configuration) for u in used)

    def nearest_unused(
        self, row: np.ndarray, used: Sequence[Used], rng: np.random.Generator
    ) -> tuple[dict[str, Any], np.ndarray] | None:
        """The unused configuration nearest to ``row`` and the row that encodes it; None when none is left (a
        finite space) or none was found (an unbounded one). Ties between equally near ones are broken by ``rng``."""
        row = np.asarray(row, dtype=float)
        if self.grid is not None:
            levels, rows = self.grid
            taken = np.zeros(len(levels), dtype=bool)
            for u in used:
                taken |= u.mask(levels)
            free = np.flatnonzero(~taken)
            self.points_tried += len(levels)
            if len(free) == 0:
                return None
            distance = np.sum((rows[free] - row) ** 2, axis=1)
            nearest = free[np.flatnonzero(distance <= distance.min() + 1e-12)]
            chosen = rows[int(rng.choice(nearest))]
            values, _ = self.space.decode(chosen)
            return values, chosen.copy()
        for radius in (*_RADII, None):
            if radius is None:  # anywhere in the box
                points = rng.uniform(-1.0, 1.0, (_ANYWHERE, self.space.dim))
            else:
                points = np.clip(row + radius * rng.standard_normal((_PER_RADIUS, self.space.dim)), -1.0, 1.0)
            for point in points[np.argsort(np.sum((points - row) ** 2, axis=1), kind="stable")]:
                self.points_tried += 1
                values, repaired = self.space.decode(point)
                if not self.repeats(values, used):
                    return values, repaired
        return None
