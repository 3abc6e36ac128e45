"""The coefficient-space basis behind EvoGM's *basis shift* (paper §3.3, "basis propagation" in the reference).

Task arithmetic is linear, so "make the top-N merges the new experts" needs no new weights: keep a matrix B
(K × dim) whose rows are the current experts written in the original normalised coordinates, and map a point c
of the current coordinates to u = c @ B. Shifting the basis is B ← C_top @ B.
"""

from __future__ import annotations

import numpy as np


class Basis:
    def __init__(self, matrix: np.ndarray) -> None:
        matrix = np.asarray(matrix, dtype=float)
        if matrix.ndim != 2 or not np.all(np.isfinite(matrix)):
            raise ValueError(f"basis must be a finite 2-D matrix, got shape {matrix.shape}")
        self.matrix = matrix
        self._pinv: np.ndarray | None = None

    @classmethod
    def identity(cls, dim: int) -> Basis:
        return cls(np.eye(dim))

    @property
    def size(self) -> int:
        return int(self.matrix.shape[0])

    def to_original(self, c: np.ndarray) -> np.ndarray:
        """Current coordinates → original normalised coordinates (not clipped: may leave [-1, 1])."""
        return np.asarray(c, dtype=float) @ self.matrix

    def to_current(self, u: np.ndarray) -> np.ndarray:
        """Least-squares coordinates of original-space points in this basis (exact when u is in the span)."""
        if self._pinv is None:
            self._pinv = np.linalg.pinv(self.matrix)
        return np.asarray(u, dtype=float) @ self._pinv

    def shifted(self, top_rows_current: np.ndarray) -> Basis:
        """The basis whose experts are the given points (current coordinates): B' = C_top @ B."""
        return Basis(np.asarray(top_rows_current, dtype=float) @ self.matrix)

    def rank(self) -> int:
        return int(np.linalg.matrix_rank(self.matrix))
