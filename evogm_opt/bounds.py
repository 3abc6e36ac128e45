"""The user's search box and its map to the normalised cube [-1, 1]^dim the algorithms work in.

Every optimizer here thinks in normalised coordinates u (for the default box (-1, 1) they *are* the user's
coordinates, i.e. the merge coefficients λ); the user only ever sees x = centre + u * half_width.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import numpy as np

if TYPE_CHECKING:
    from scipy.optimize import Bounds

#: Every form :meth:`Box.create` reads (see there); ``scipy.optimize.Bounds`` is matched by its ``lb``/``ub``.
BoundsLike = Union[
    tuple[float, float], Sequence[float], Sequence[Sequence[float]], Mapping[str, Any], np.ndarray, "Bounds"
]

#: Told points may sit this far outside the box (relative to its width) before they are refused.
#: Round-tripping a point through float formatting (JSON, a database, Optuna) moves it by ~1 ulp.
OUT_OF_BOUNDS_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Box:
    lower: np.ndarray
    upper: np.ndarray

    @classmethod
    def create(cls, bounds: BoundsLike, dim: int) -> Box:
        """Read the user's bounds in any of the usual forms:

        - ``(lo, hi)``: two numbers, the same interval for every coordinate;
        - ``(lower, upper)`` with ``lower`` and ``upper`` each a number or ``dim`` numbers — pycma's and scipy's
          form, shape ``(2, dim)``;
        - ``[[lo_0, hi_0], ..., [lo_{dim-1}, hi_{dim-1}]]``: one pair per coordinate, shape ``(dim, 2)``;
        - ``scipy.optimize.Bounds(lb, ub)`` or ``{"lower": ..., "upper": ...}`` (what :meth:`state` writes):
          explicit, so never ambiguous.

        At ``dim == 2`` a 2×2 array fits both pair forms. When only one of its readings is a valid box, that one
        is used; when both are valid and differ, it is refused with both readings shown (say which with the
        explicit forms) rather than silently guessed.
        """
        lower, upper = _read_bounds(bounds, dim)
        if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
            bad = np.flatnonzero(~(np.isfinite(lower) & np.isfinite(upper)))
            raise ValueError(
                f"bounds must be finite numbers; coordinate(s) {bad.tolist()} have "
                f"lower={lower[bad].tolist()}, upper={upper[bad].tolist()}"
            )
        bad = np.flatnonzero(~(lower < upper))
        if bad.size:
            i = int(bad[0])
            lo, hi = float(lower[i]), float(upper[i])
            raise ValueError(f"bounds need lower < upper; dimension {i} has lower={lo!r} >= upper={hi!r}")
        lower.setflags(write=False)
        upper.setflags(write=False)
        return cls(lower, upper)

    @property
    def dim(self) -> int:
        return int(self.lower.shape[0])

    @property
    def centre(self) -> np.ndarray:
        return (self.lower + self.upper) / 2.0

    @property
    def half_width(self) -> np.ndarray:
        return (self.upper - self.lower) / 2.0

    def to_user(self, u: np.ndarray) -> np.ndarray:
        """Normalised [-1, 1] coordinates -> the user's box (clipped, so rounding can never leave the box)."""
        x = self.centre + np.clip(u, -1.0, 1.0) * self.half_width
        return np.clip(x, self.lower, self.upper)

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        return (x - self.centre) / self.half_width

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.to_user(rng.uniform(-1.0, 1.0, size=(n, self.dim)))

    def check_inside(self, x: np.ndarray) -> np.ndarray:
        """Refuse rows outside the box (beyond a float-noise tolerance) and clip the noise away."""
        slack = OUT_OF_BOUNDS_TOLERANCE * (self.upper - self.lower)
        outside = (x < self.lower - slack) | (x > self.upper + slack)
        if np.any(outside):
            row, col = (int(v[0]) for v in np.nonzero(outside))
            raise ValueError(
                # plain floats: numpy 2's repr of its scalars reads np.float64(1000000.0)
                f"row {row} is outside the bounds: x[{col}]={float(x[row, col])!r} not in "
                f"[{float(self.lower[col])!r}, {float(self.upper[col])!r}]"
            )
        return np.clip(x, self.lower, self.upper)

    def state(self) -> dict[str, list[float]]:
        """The explicit ``{"lower": [...], "upper": [...]}`` form: plain data that :meth:`create` reads back the
        same way at every ``dim`` (a list of pairs would be ambiguous at ``dim == 2``)."""
        return {"lower": self.lower.tolist(), "upper": self.upper.tolist()}


def _read_bounds(bounds: Any, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) as float arrays of length ``dim``, from any form :meth:`Box.create` documents."""
    if isinstance(bounds, Box):
        return _pair(bounds.lower, bounds.upper, dim, "Box")
    if isinstance(bounds, Mapping):
        if set(bounds) != {"lower", "upper"}:
            raise ValueError(f"bounds as a mapping need exactly the keys 'lower' and 'upper'; got {sorted(bounds)}")
        return _pair(bounds["lower"], bounds["upper"], dim, "bounds")
    if hasattr(bounds, "lb") and hasattr(bounds, "ub"):  # scipy.optimize.Bounds (keep_feasible is moot: ask is)
        return _pair(bounds.lb, bounds.ub, dim, type(bounds).__name__)
    try:
        arr = np.asarray(bounds, dtype=float)
    except (TypeError, ValueError):
        # ragged, e.g. (0.0, [1, 2, 3]): pycma's (lower, upper) with one side a number
        if isinstance(bounds, Sequence) and not isinstance(bounds, str) and len(bounds) == 2:
            return _pair(bounds[0], bounds[1], dim, "bounds")
        raise ValueError(f"bounds must be numbers: {bounds!r}") from None
    if arr.shape == (2,):
        return np.full(dim, arr[0]), np.full(dim, arr[1])
    if arr.shape == (2, dim) and dim != 2:
        return arr[0].copy(), arr[1].copy()
    if arr.shape == (dim, 2) and dim != 2:
        return arr[:, 0].copy(), arr[:, 1].copy()
    if arr.shape == (2, 2) and dim == 2:
        return _square(arr)
    raise ValueError(
        f"bounds must be (lo, hi), (lower, upper) arrays of shape (2, {dim}), one (lo, hi) pair per coordinate "
        f"(shape ({dim}, 2)), scipy.optimize.Bounds or {{'lower': ..., 'upper': ...}}; got shape {arr.shape}"
    )


def _pair(lower: Any, upper: Any, dim: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        lo = np.broadcast_to(np.asarray(lower, dtype=float), (dim,)).copy()
        hi = np.broadcast_to(np.asarray(upper, dtype=float), (dim,)).copy()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: lower and upper must each be a number or {dim} numbers ({exc})") from None
    return lo, hi


def _square(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 2×2 array at dim 2: rows are either the two coordinates' (lo, hi) pairs or the (lower, upper) arrays."""
    per_coordinate = (arr[:, 0].copy(), arr[:, 1].copy())
    lower_upper = (arr[0].copy(), arr[1].copy())
    valid = [bool(np.all(lo < hi)) for lo, hi in (per_coordinate, lower_upper)]
    if valid == [False, True]:
        return lower_upper
    if valid == [True, True] and not np.array_equal(np.stack(per_coordinate), np.stack(lower_upper)):

        def show(lo: np.ndarray, hi: np.ndarray) -> str:
            return ", ".join(f"x{i} in [{lo[i]:g}, {hi[i]:g}]" for i in range(2))

        raise ValueError(
            f"bounds {arr.tolist()} are ambiguous at dim=2: as one (lo, hi) pair per coordinate they mean "
            f"{show(*per_coordinate)}; as (lower, upper) arrays they mean {show(*lower_upper)}; say which with "
            f"{{'lower': [...], 'upper': [...]}} or scipy.optimize.Bounds(lb=[...], ub=[...])"
        )
    return per_coordinate  # valid only this way, the same either way, or invalid (Box.create names the coordinate)


def clip_into_unit_box(u: np.ndarray) -> np.ndarray:
    """Project coordinates onto [-1, 1] (np.clip, written as min/max because that is several × faster on the
    small arrays of a generation)."""
    return np.minimum(np.maximum(u, -1.0), 1.0)


def reflect_into_unit_box(u: np.ndarray) -> np.ndarray:
    """Fold coordinates into [-1, 1] by mirror reflection at the faces (period 4), however far out they are.

    Why not clip: projecting a cloud of candidates onto the box piles them up on its faces and corners, points
    nobody meant to propose; reflection keeps the cloud's shape near the boundary (mirror boundary handling of
    evolution strategies).
    """
    v = np.mod(np.asarray(u, dtype=float) + 1.0, 4.0)
    return np.where(v > 2.0, 4.0 - v, v) - 1.0
