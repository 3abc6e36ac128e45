"""Several scores per evaluation (one per task) reduced to the one value an optimizer ranks.

One function, so that the value an optimizer ranks and the score an adapter logs are the same float.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def weighted_mean(values: Any, weights: Any = None) -> np.ndarray:
    """Σ_k w_k y_k / Σ_k w_k for each row of ``values`` (shape ``(n, K)``, or ``(K,)`` for one row).

    A row with any non-finite value is a failed evaluation and gives NaN. ``weights`` default to equal; they must
    be K non-negative finite numbers, not all zero.
    """
    array = np.asarray(values, dtype=float)
    one_row = array.ndim == 1
    rows = array.reshape(1, -1) if one_row else array
    if rows.ndim != 2:
        raise ValueError(f"values must have shape (n, K) or (K,), got {array.shape}")
    k = rows.shape[1]
    w = np.ones(k) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (k,) or not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"objective_weights must be {k} non-negative numbers, not all zero; got {w.tolist()}")
    finite = np.all(np.isfinite(rows), axis=1)
    means = np.where(finite, np.sum(w * np.nan_to_num(rows), axis=1) / np.sum(w), np.nan)
    return means[0] if one_row else means
