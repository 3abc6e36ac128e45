"""Promotion rules of research for multi-fidelity search (issue 30): which candidates of a rung earn more examples.

Successive halving (the core's :class:`~evogm_opt.FidelityScheduler`) promotes a fixed share ⌊n/η⌋ of each rung,
whatever the values say. The rules here override its one seam, ``promote(values, rung, points)``; the bench runs
them as multi-fidelity peers (``benchmarks/multifidelity.py``) and docs/research.md has their ablations.

- :class:`RacingScheduler` (``race-evogm``, ``race-evogm-z1``): on a merge a value at fidelity n is an accuracy on
  the first n examples of a fixed set of N, so its noise is known — the standard error of a proportion over n
  draws without replacement, √(p(1−p)/n · (N−n)/(N−1)). A candidate whose p̂ + z·se stays below the incumbent (the
  best full-fidelity value) stops; every other goes on. Nested prefixes make a promotion to full fidelity cost no
  more than measuring there at once, so the rule spends at most what full fidelity spends (racing, as in Maron &
  Moore's Hoeffding races).
- :class:`ShrinkageScheduler` (``shrink-evogm``): the same share as successive halving, ranked by each prefix
  value shrunk toward a GP's prediction at its point, each weighted by its precision.
- :class:`FullStartScheduler` (``sh-evogm-full-start``): successive halving, except that the first generation —
  EvoGM's informed start (the experts, their mix) — is measured at full fidelity.
- :class:`CeilingScheduler` (``sh-evogm-ceil``): successive halving with the share rounded up, ⌈n/η⌉.

Values are maximised accuracies in [0, 1], as the merge landscapes and a merge run measure them; the core's
scheduler makes no such assumption.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evogm_opt import FidelityScheduler
from evogm_opt.fidelity import promoted


def accuracy_standard_error(accuracy: np.ndarray, n: int, full: int) -> np.ndarray:
    """Standard error of accuracies measured on n of a fixed set of ``full`` examples (finite population); the
    proportion is shrunk by one success and one failure (p̃ = (k+1)/(n+2)) so that 0 and 1 keep some noise."""
    shrunk = (np.clip(accuracy, 0.0, 1.0) * n + 1.0) / (n + 2.0)
    correction = (full - n) / (full - 1) if full > 1 else 0.0
    return np.sqrt(shrunk * (1.0 - shrunk) / n * correction)


class ResearchScheduler(FidelityScheduler):
    """What the rules share: no checkpoints. A checkpoint would hold a plain ``fidelity-scheduler`` state without the
    rule or its settings (``z``, ``min_points``), and ``FidelityScheduler.load`` would resume it as successive
    halving without a word, so saving is refused (the bench never checkpoints these)."""

    def save(self, path: Any, *, owner: str | None = None) -> None:
        raise NotImplementedError(f"{type(self).__name__} is a research rule: it writes no checkpoints")

    def all_promoted_cost(self, size: int) -> int:
        """What a generation costs when every candidate goes to full fidelity (the full fidelity itself when
        prefixes nest)."""
        return size * sum(self.cost(k) for k in range(len(self.rungs)))


class RacingScheduler(ResearchScheduler):
    """Successive halving's rungs with a racing promotion: every candidate whose value at the rung plus ``z``
    standard errors reaches the incumbent goes on (at least ⌊n/η⌋ of the best, and one, before an incumbent
    exists or when none reaches it). Maximised accuracies only."""

    def __init__(self, *args, z: float = 2.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not self.maximize:
            raise ValueError("racing reads values as accuracies to maximise")
        self.z = float(z)

    def generation_cost(self, size: int) -> int:
        """The most a generation can cost: every candidate raced to full fidelity (so a generation chosen to fit
        an example budget always fits; the scheduler sizes generations with this)."""
        return self.all_promoted_cost(size)

    def promote(self, values: np.ndarray, rung: int, points: np.ndarray) -> np.ndarray:
        order = np.argsort(values, kind="stable")
        finite = int(np.isfinite(values).sum())
        incumbent = self.best
        fallback = order[: min(promoted(len(values), self.eta), finite)]
        if incumbent is None:
            return fallback
        accuracy = -values  # the scheduler's values are minimised
        bound = accuracy + self.z * accuracy_standard_error(accuracy, self.rungs[rung], self.full)
        alive = np.flatnonzero(np.isfinite(values) & (bound >= incumbent.y))
        if alive.size == 0:
            return order[: min(1, finite)]
        return alive


class FullStartScheduler(ResearchScheduler):
    """Successive halving after a first generation measured in full: the informed start is a handful of chosen
    points (experts, their mix) whose values anchor the generator's first winners and the incumbent, so none is
    dropped on a noisy prefix."""

    def promote(self, values: np.ndarray, rung: int, points: np.ndarray) -> np.ndarray:
        if self.inner.n_evals == 0:  # the first generation: nothing told to the inner optimizer yet
            return np.flatnonzero(np.isfinite(values))
        return super().promote(values, rung, points)

    def generation_cost(self, size: int) -> int:
        """The first generation costs ``size`` full measurements; later ones, successive halving's."""
        if self.inner.n_evals == 0:
            return self.all_promoted_cost(size)
        return super().generation_cost(size)


class CeilingScheduler(ResearchScheduler):
    """Successive halving that rounds its share up: ⌈n/η⌉ go on, so a generation of 16 (N = 8) sends 6 and then 2
    to full fidelity instead of 5 and 1 — more full measurements a generation, as many generations (about a fifth
    more examples each)."""

    def promote(self, values: np.ndarray, rung: int, points: np.ndarray) -> np.ndarray:
        count = min(-(-len(values) // self.eta), int(np.isfinite(values).sum()))
        return np.argsort(values, kind="stable")[:count]

    def generation_cost(self, size: int) -> int:
        total, n = 0, size
        for k in range(len(self.rungs)):
            total += n * self.cost(k)
            n = -(-n // self.eta)
        return total


class ShrinkageScheduler(ResearchScheduler):
    """Successive halving's share, ranked by what the surrogate already knows: each candidate's value at a low
    rung is combined with a GP's prediction at its point, each weighted by its precision — the binomial noise of
    the prefix (:func:`accuracy_standard_error`) and the GP's posterior variance — and the best ⌊n/η⌋ of the
    combined values go on (the same count, hence the same cost, as successive halving). The GP (an ARD Matérn-5/2,
    ``ard_gp.py``) is fitted once a generation to the full-fidelity measurements, warm-started from the last fit;
    with fewer than ``min_points`` of them, plain successive halving."""

    def __init__(self, *args, min_points: int = 4, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not self.maximize:
            raise ValueError("shrinkage reads values as accuracies to maximise")
        self.min_points = int(min_points)
        self.fitted_for = -1  # the number of full-fidelity measurements the current GP was fitted to
        self.gp = None
        self.warm: np.ndarray | None = None

    def surrogate(self):
        """The GP of the full-fidelity measurements so far (refitted only when there are new ones), or None."""
        from evogm_opt.evogm.ard_gp import ARDGaussianProcess

        m = self.measurements
        full = (m.fidelity == self.full) & np.isfinite(m.y)
        if full.sum() < self.min_points:
            return None
        if full.sum() != self.fitted_for:
            x, y = m.x[full], -m.y[full]  # the GP minimises
            self.gp = ARDGaussianProcess(x, y, warm=self.warm)
            self.warm, self.fitted_for = self.gp.log_params, int(full.sum())
        return self.gp

    def promote(self, values: np.ndarray, rung: int, points: np.ndarray) -> np.ndarray:
        finite = np.isfinite(values)
        count = min(promoted(len(values), self.eta), int(finite.sum()))
        gp = self.surrogate()
        if gp is None or count == 0:
            return np.argsort(values, kind="stable")[:count]
        import torch

        with torch.no_grad():
            mean, sd = gp.posterior(torch.as_tensor((points + 1.0) / 2.0))
        prior_mean = -(mean.numpy() * gp.y_scale + gp.y_mean)  # back to accuracies
        prior_var = (sd.numpy() * gp.y_scale) ** 2 + 1e-12
        accuracy = np.where(finite, -values, 0.0)
        noise_var = accuracy_standard_error(accuracy, self.rungs[rung], self.full) ** 2 + 1e-12
        combined = (accuracy / noise_var + prior_mean / prior_var) / (1.0 / noise_var + 1.0 / prior_var)
        combined = np.where(finite, combined, -np.inf)
        return np.argsort(-combined, kind="stable")[:count]
