"""The statistics the report uses: fixed-budget losses, effect sizes, multiple-test correction, ECDF areas.

Conventions: a *loss* is ≥ 0 and 0 at the optimum (a_hi − accuracy for merge-like landscapes, f − f_opt for
BBOB), so every comparison below is "smaller is better" whatever the landscape's sense.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats


def loss(value: float, optimum: float, sense: str) -> float:
    return max(0.0, optimum - value) if sense == "max" else max(0.0, value - optimum)


def value_at(record: dict[str, Any], evals: int, key: str = "true_of_best") -> float | None:
    """The recorded ``key`` at the last trace entry with at most ``evals`` evaluations (None if there is none).

    A run charged in examples (``"cost": "examples"``, benchmarks/cost.py) is read at the same cost: ``evals``
    full-fidelity evaluations' worth of examples, so runs that spent their examples differently compare."""
    axis, limit = "evals", evals
    if record.get("cost") == "examples":
        axis, limit = "examples", evals * record["full_fidelity"]
    best = None
    for entry in record["trace"]:
        if entry[axis] > limit:
            break
        best = entry[key]
    return best


def a12(x: Sequence[float], y: Sequence[float]) -> float:
    """Vargha–Delaney A12 for losses: P(a run of x has a smaller loss than a run of y), ties counting half."""
    x, y = np.asarray(x, dtype=float)[:, None], np.asarray(y, dtype=float)[None, :]
    return float(np.mean((x < y) + 0.5 * (x == y)))


def mann_whitney(x: Sequence[float], y: Sequence[float]) -> float:
    """Two-sided Mann–Whitney U p-value (1.0 when both samples are constant and equal)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if np.ptp(np.concatenate([x, y])) == 0:
        return 1.0
    return float(stats.mannwhitneyu(x, y, alternative="two-sided").pvalue)


def smallest_mann_whitney_p(n_x: int, n_y: int) -> float:
    """The smallest p :func:`mann_whitney` can give for samples of these sizes (every x below every y): below
    about 8 runs a side no difference, however large, is significant once corrected over many cells."""
    return mann_whitney(np.arange(n_x, dtype=float), np.arange(n_x, n_x + n_y, dtype=float))


def wilcoxon_paired(x: Sequence[float], y: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value for runs paired by seed (same instance); 1.0 if all pairs tie."""
    d = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
    if np.all(d == 0):
        return 1.0
    return float(stats.wilcoxon(d, zero_method="zsplit").pvalue)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p)
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * p[i])
        adjusted[i] = min(1.0, running)
    return adjusted


def normalised_score(losses: Sequence[float], random_losses: Sequence[float]) -> float:
    """Bayesmark-style: 100 at the optimum, 0 at random search's mean loss for the same cell and budget."""
    reference = float(np.mean(random_losses))
    if reference <= 0:
        return float("nan")
    return float(100.0 * (1.0 - np.mean(losses) / reference))


BBOB_TARGETS = 10.0 ** np.linspace(2, -8, 51)
"""COCO's usual target precisions f − f_opt ∈ {10^2, …, 10^-8}, 51 log-uniform steps."""


def ecdf_area(records: Sequence[dict[str, Any]], budget: int, targets: np.ndarray = BBOB_TARGETS) -> float:
    """Normalised area under the runtime ECDF: the fraction of (run, target) pairs reached by the best evaluated
    value (COCO's anytime measure; meant for noiseless landscapes), averaged over log-uniform evaluation counts
    from 1 to ``budget`` (1 = every target hit at the first evaluation). Evaluations count one by one in the
    order a peer listed them, as in COCO, so the measure does not depend on how a peer batches its asks."""
    grid = np.unique(np.round(np.geomspace(1, budget, 200)).astype(int))
    hit = np.zeros(len(grid))
    for r in records:
        # per-evaluation improvements where recorded; older records only have the batch-granular trace, which
        # charges a peer its whole first batch before it counts anything
        steps = r.get("improvements") or [(e["evals"], e["best_seen"]) for e in r["trace"]]
        evals = np.array([n for n, _ in steps])
        prec = np.array([loss(best, r["optimum_value"], r["sense"]) for _, best in steps])
        for j, g in enumerate(grid):
            k = np.searchsorted(evals, g, side="right") - 1
            if k >= 0:
                hit[j] += np.mean(prec[k] <= targets)
    return float(np.mean(hit / max(1, len(records))))
