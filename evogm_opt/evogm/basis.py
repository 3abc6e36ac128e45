"""The coefficient-space basis behind EvoGM's *basis shift* (paper §3.3, "basis propagation" in the reference).

Task arithmetic is linear, so "make the top-N merges the new experts" needs no new weights: keep a matrix B
(K × dim) whose rows are the current experts written in the original normalised coordinates, and map a point c
of the current coordinates to u = c @ B. Shifting the basis is B ← C_top @ B. After a shift u can leave the box;
:func:`fold_into_box` is the one place where the ``boundary`` rule brings it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from evogm_opt.bounds import clip_into_unit_box, reflect_into_unit_box

#: How effective coefficients outside [-1, 1] are brought back (``EvoGMConfig.boundary``):
#: ``"clip"`` projects them (the paper presets), ``"reflect"`` mirrors them at the faces (our default, research
#: ablation 8).
Boundary = Literal["clip", "reflect"]


def fold_into_box(u: np.ndarray, boundary: Boundary) -> np.ndarray:
    """Original normalised coordinates → [-1, 1]^dim by the ``boundary`` rule."""
    if boundary == "clip":
        return clip_into_unit_box(u)
    return reflect_into_unit_box(u)


class Basis:
    """B, and the top rows of each shift that built it (B = rows_k @ … @ rows_1 in exact arithmetic).

    ``version`` counts the shifts; version 0 is the identity the search starts from.
    """

    def __init__(self, matrix: np.ndarray, shift_rows: tuple[np.ndarray, ...] | list[np.ndarray] = ()) -> None:
        matrix = np.asarray(matrix, dtype=float)
        if matrix.ndim != 2 or not np.all(np.isfinite(matrix)):
            raise ValueError(f"basis must be a finite 2-D matrix, got shape {matrix.shape}")
        self.matrix = matrix
        self.shift_rows = tuple(np.asarray(rows, dtype=float) for rows in shift_rows)
        self._pinv: np.ndarray | None = None

    @classmethod
    def identity(cls, dim: int) -> Basis:
        return cls(np.eye(dim))

    @property
    def size(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def version(self) -> int:
        """How many shifts built this basis (0: the identity)."""
        return len(self.shift_rows)

    def to_original(self, c: np.ndarray) -> np.ndarray:
        """Current coordinates → original normalised coordinates (not folded: may leave [-1, 1])."""
        return np.asarray(c, dtype=float) @ self.matrix

    def to_current(self, u: np.ndarray) -> np.ndarray:
        """Least-squares coordinates of original-space points in this basis (exact when u is in the span)."""
        if self._pinv is None:
            self._pinv = np.linalg.pinv(self.matrix)
        return np.asarray(u, dtype=float) @ self._pinv

    def shifted(self, top_rows_current: np.ndarray) -> Basis:
        """Paper §3.3: the basis whose experts are the given points (current coordinates), B' = C_top @ B."""
        top = np.array(top_rows_current, dtype=float)
        return Basis(top @ self.matrix, (*self.shift_rows, top))

    def rank(self) -> int:
        return int(np.linalg.matrix_rank(self.matrix))

    def __repr__(self) -> str:
        k, n = self.matrix.shape
        return f"Basis({k}×{n}, version {self.version}, condition number {np.linalg.cond(self.matrix):.3g})"


@dataclass(frozen=True, eq=False)
class BasisShift:
    """What ``on_basis_shift`` receives after a shift.

    ``matrix`` is the new basis (dim × dim, rows over the original normalised coordinates); ``rows`` are the top
    points chosen at this shift, in the coordinates they were chosen in (``shift_rows[-1]``): adapters of
    nonlinear merges (TIES of TIES merges is not a linear map of the originals) rebuild the new experts from
    them. ``np.asarray(shift)`` is the matrix, so a hook written for the bare matrix keeps working.
    """

    version: int
    matrix: np.ndarray
    rows: np.ndarray

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if dtype is None or np.dtype(dtype) == self.matrix.dtype:
            return self.matrix.copy() if copy else self.matrix
        if copy is False:
            raise ValueError(f"BasisShift holds a {self.matrix.dtype} matrix; {np.dtype(dtype)} needs a copy")
        return self.matrix.astype(dtype)


def spread_rows(u: np.ndarray, ranked: np.ndarray, min_residual: float, limit: int) -> np.ndarray:
    """The first ``limit`` of the ``ranked`` rows of ``u``, in rank order, each with at least ``min_residual`` of
    its length outside the span of those chosen before it (Gram–Schmidt on the original coordinates).

    Why (ours, research ablation 10; the reference takes the plain top-N): the round's top points cluster as the
    search converges, so top-dim of them make a near-singular basis (condition numbers of 1e3–1e6 after three
    shifts), and the least-squares current coordinates of the rest of the history explode — the generator then
    trains on values in the thousands.
    """
    chosen: list[int] = []
    span = np.empty((0, u.shape[1]))  # orthonormal rows spanning the chosen points
    for row in ranked:
        point = u[row]
        residual = point - (span @ point) @ span
        rest = float(np.linalg.norm(residual))
        if rest > 0.0 and rest >= min_residual * float(np.linalg.norm(point)):
            chosen.append(int(row))
            span = np.vstack([span, residual / rest])
            if len(chosen) == limit:
                break
    return np.asarray(chosen, dtype=np.int64)
