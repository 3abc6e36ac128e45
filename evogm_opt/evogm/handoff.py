"""The high-dimensional handoff: after its initial population, EvoGM continues as sep-CMA-ES.

Why: at 128–512 coordinates (layer-wise merge coefficients) and 10 evaluations per coordinate, EvoGM's population
of 2·dim leaves five generations; its GP screening and generator do not move it past the first one, while
sep-CMA-ES (Ros & Hansen 2008: a diagonal covariance, O(dim) per sample, a population of 4 + ⌊3 ln dim⌋) keeps
climbing (docs/research.md, round two, and docs/benchmarks.md). EvoGM's initial population — the one-hot experts
and their uniform mix, informed starts for a merge — is what gave it the better start there, so the handoff keeps
that generation and starts sep-CMA-ES at its best point.

The inner strategy is this package's :class:`~evogm_opt.optimizers.CMAES` with ``CMA_diagonal``, IPOP restarts
and the stopping tolerances relaxed for quantised accuracies (whole generations tie); it is told the same internal
(minimised) values the outer optimizer sees and checkpoints with it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evogm_opt.optimizers.cmaes import CMAES

#: cma options of the inner strategy: diagonal covariance; f-tolerances off, since quantised accuracies make whole
#: generations tie and cma would otherwise stop on "flat fitness" long before the budget
INNER_OPTIONS: dict[str, Any] = {
    "CMA_diagonal": True,
    "tolflatfitness": 1000,
    "tolfun": 0.0,
    "tolfunhist": 0.0,
    "tolx": 1e-9,
}
INNER_RESTARTS = 9


def start_inner(dim: int, bounds: Any, x0: np.ndarray, sigma0: float, seed: int) -> CMAES:
    """sep-CMA-ES started at ``x0`` (user coordinates) with step ``sigma0`` (a fraction of the box half-width)."""
    return CMAES(
        dim,
        bounds,
        seed=seed,
        x0=x0,
        sigma0=sigma0,
        restarts=INNER_RESTARTS,
        cma_options=dict(INNER_OPTIONS),
    )


def tell_inner(inner: CMAES, x: np.ndarray, y_internal: np.ndarray) -> None:
    """Pass told rows on (internal values are minimised, failures +inf; the inner optimizer takes NaN)."""
    inner.tell(x, np.where(np.isfinite(y_internal), y_internal, np.nan))
