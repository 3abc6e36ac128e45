"""The user's search box and its map to the normalised cube [-1, 1]^dim the algorithms work in.

Every optimizer here thinks in normalised coordinates u (for the default box (-1, 1) they *are* the user's
coordinates, i.e. the merge coefficients λ); the user only ever sees x = centre + u * half_width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np

BoundsLike = Union[tuple[float, float], Sequence[float], Sequence[Sequence[float]], np.ndarray]

#: Told points may sit this far outside the box (relative to its width) before they are refused.
#: Round-tripping a point through float formatting (JSON, a database, Optuna) moves it by ~1 ulp.
OUT_OF_BOUNDS_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Box:
    lower: np.ndarray
    upper: np.ndarray

    @classmethod
    def create(cls, bounds: BoundsLike, dim: int) -> Box:
        """Accept ``(lo, hi)`` for every dimension, or a ``(dim, 2)`` array of per-dimension pairs."""
        arr = np.asarray(bounds, dtype=float)
        if arr.shape == (2,):
            lower = np.full(dim, arr[0])
            upper = np.full(dim, arr[1])
        elif arr.shape == (dim, 2):
            lower, upper = arr[:, 0].copy(), arr[:, 1].copy()
        else:
            raise ValueError(
                f"bounds must be a pair (lower, upper) or an array of shape ({dim}, 2); got shape {arr.shape}"
            )
        if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
            raise ValueError("bounds must be finite numbers")
        bad = np.flatnonzero(lower >= upper)
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"bounds need lower < upper; dimension {i} has lower={lower[i]} >= upper={upper[i]}")
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
                f"row {row} is outside the bounds: x[{col}]={x[row, col]!r} not in "
                f"[{self.lower[col]}, {self.upper[col]}]"
            )
        return np.clip(x, self.lower, self.upper)

    def state(self) -> list[list[float]]:
        return np.stack([self.lower, self.upper], axis=1).tolist()


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
