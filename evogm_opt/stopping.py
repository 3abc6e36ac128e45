"""When to end a run, and why: evaluation budget, wall-clock budget, stagnation.

Checked once per generation (after a ``tell``), because a generation is the unit a user pays for and the
unit at which "did it improve?" is meaningful. The reason is a sentence for logs and results files.

Stagnation: the run ends when the best value has not improved by more than ``min_improvement`` (absolute, in
the objective's own units) for ``patience`` consecutive generations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def budget_reason(n_evals: int, budget: int) -> str:
    """The one wording of "the evaluation budget is spent": ask/tell, ``minimize``, the merge run and the bench."""
    return f"evaluation budget: {n_evals} of {budget} evaluations used"


@dataclass(frozen=True)
class StoppingRules:
    max_evals: int | None = None
    max_seconds: float | None = None
    patience: int | None = None  # generations without an improvement larger than min_improvement
    min_improvement: float = 0.0

    def __post_init__(self) -> None:
        if self.max_evals is not None and self.max_evals < 1:
            raise ValueError(f"max_evals must be >= 1, got {self.max_evals}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 generation, got {self.patience}")
        if not (math.isfinite(self.min_improvement) and self.min_improvement >= 0):
            raise ValueError(f"min_improvement must be a finite number >= 0, got {self.min_improvement}")


class StoppingMonitor:
    """Feeds on (best value so far, evaluations, elapsed seconds) once per generation; says when to stop."""

    def __init__(self, rules: StoppingRules, maximize: bool = False) -> None:
        self.rules = rules
        self.sign = -1.0 if maximize else 1.0  # internally: lower is better
        self.reference = math.inf  # best value at the last improvement that counted
        self.stale = 0  # generations since then
        self.reason: str | None = None

    def update(self, best: float | None, n_evals: int, elapsed: float) -> str | None:
        """Record one finished generation; return the reason to stop, or None."""
        value = math.inf if best is None or not math.isfinite(best) else self.sign * float(best)
        if value < self.reference - self.rules.min_improvement or (math.isinf(self.reference) and math.isfinite(value)):
            self.reference, self.stale = value, 0
        else:
            self.stale += 1
        r = self.rules
        if r.max_evals is not None and n_evals >= r.max_evals:
            self.reason = budget_reason(n_evals, r.max_evals)
        elif r.max_seconds is not None and elapsed >= r.max_seconds:
            self.reason = f"wall-clock budget: {elapsed:.1f} s of {r.max_seconds:g} s used"
        elif r.patience is not None and self.stale >= r.patience:
            self.reason = (
                f"no improvement larger than {r.min_improvement:g} for {self.stale} generations (patience {r.patience})"
            )
        else:
            self.reason = None
        return self.reason
