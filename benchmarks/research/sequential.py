"""Research round three (docs/research.md): a sequential EvoGM for small problems — one point per ask, chosen by a
properly maximised acquisition, with the learned generator as a source of the acquisition's start points.

Why: at N = 4 and 40–80 evaluations the default asks eight points per generation, and round two's reading was
that the population shape, not a setting, is what a sequential Bayesian optimiser beats it with. Here the shape
changes and the generator stays: the history's winners and losers still train G_lw (as in the default), and
G_lw(best P of H) plus variants around them are scored by LogEI beside a space-filling pool and perturbations
of the best points; the best few are climbed by L-BFGS-B (``ard_gp.maximise_log_ei``).

The start (rule, not landscape): the informed start of the default (each expert alone, the uniform mix), then a
scrambled Sobol design until ``init_fraction`` of the budget is spent (SMAC3's black-box facade starts with a
Sobol quarter; ``init_fraction=0`` keeps only the informed start plus one point).

A batch (``ask(n)`` with n > 1, or asks while others are pending) is built by kriging believer: each chosen
point is added to the GP with its posterior mean as a fantasy value before the next is chosen. The fantasies are
the rows asked since the last tell, not every pending row: a caller that evaluates another row than the one it
was asked (the integrations' no-repeat rule replaces repeats by the nearest unused configuration) leaves the asked
row pending in the core forever, and such rows must neither be fantasised nor advance the design.

Research code: no exact resume (``state_dict`` refuses, rather than write a checkpoint that would not resume).

Variants (``SEQUENTIAL`` in ``variants.py``): with and without the generator's starts (both measured in
docs/research.md, ablation 20), and with the informed start only (registered, not measured yet). Not a core
setting until its ablation is adopted.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from evogm_bench.research.ard_gp import ARDGaussianProcess, maximise_log_ei
from scipy.stats import qmc

from evogm_opt.base import Optimizer
from evogm_opt.evogm import DEFAULT
from evogm_opt.evogm.generator import GeneratorConfig, GeneratorPair
from evogm_opt.threads import torch_threads


@dataclass(frozen=True)
class SequentialConfig:
    """Settings of the sequential variant (docs/research.md, ablation 20, says which were measured)."""

    # share of the budget spent on the informed start + Sobol design before the first model-based ask
    init_fraction: float = 0.25
    # the design's size regardless of the budget (a tuning study has none); None: init_fraction of the budget
    initial_points: int | None = None
    # the design begins with each expert alone and the uniform mix (a merge); False: Sobol only (a tuning space)
    informed_start: bool = True
    # G_lw's proposals (and variants around them) are offered to the acquisition as start points
    generator_starts: bool = True
    generator: GeneratorConfig = DEFAULT.generator
    winner_fraction: float = DEFAULT.winner_fraction
    # the generator is retrained after this many tells per coordinate (the default retrains every 2·dim)
    train_every_per_dim: float = 2.0
    # noisy variants of each generator proposal, at σ = step/√dim (the default's initial step)
    variants_per_proposal: int = 8
    step: float = DEFAULT.proposal_noise
    # the pool scored before climbing: Sobol points, and Gaussian steps around the best observed points
    sobol_pool: int = 512
    local_pool: int = 64
    n_starts: int = 8
    # L-BFGS-B iterations of the acquisition's climb
    climb_iterations: int = 60
    # every GP fit also starts from the prior's mode (True), or only the first does and later fits start from the
    # previous fit's values alone (False: half the fitting time, ablation 29)
    fit_from_mode: bool = True
    # EI's reference: the best observed value ("observed") or the best posterior mean at an observed point ("mean")
    incumbent: str = "observed"


class SequentialEvoGM(Optimizer):
    """One point per ask (``popsize`` 1), chosen by LogEI under an ARD GP; see the module docstring."""

    name = "evogm-sequential"

    def __init__(
        self,
        dim: int,
        bounds: Any = (-1.0, 1.0),
        *,
        popsize: int | None = None,
        seed: int | None = None,
        maximize: bool = False,
        max_evals: int | None = None,
        config: SequentialConfig | None = None,
    ) -> None:
        super().__init__(dim, bounds, popsize=popsize, seed=seed, maximize=maximize, max_evals=max_evals)
        self.config = config or SequentialConfig()
        cfg = self.config
        budget = max_evals if max_evals is not None else 20 * dim
        n_init = max(dim + 2, int(round(cfg.init_fraction * budget)))
        if cfg.initial_points is not None:
            n_init = cfg.initial_points
        informed = np.concatenate([np.eye(dim), np.full((1, dim), 1.0 / dim)])
        if not cfg.informed_start:
            informed = informed[:0]
        sobol = self.sobol(max(0, n_init - len(informed)))
        self.design = np.concatenate([informed, sobol])[:n_init]
        self.told_u = np.empty((0, dim))  # told points, unit box coordinates [-1, 1]
        self.told_y = np.empty(0)  # minimised values, failures +inf
        self.generators: GeneratorPair | None = None
        self.told_since_training = 0
        self.gp_warm: np.ndarray | None = None
        self.fantasies: list[np.ndarray] = []  # rows asked since the last tell (unit box)
        self.design_given = 0

    @staticmethod
    def default_popsize(dim: int) -> int:
        return 1

    def sobol(self, n: int) -> np.ndarray:
        if n == 0:
            return np.empty((0, self.dim))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a Sobol sample whose size is not a power of two: still space-filling
            sampler = qmc.Sobol(self.dim, scramble=True, seed=self.rng)
            return 2.0 * sampler.random(n) - 1.0

    # ------------------------------------------------------------------ asks
    def _propose(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        rows = []
        with torch_threads(1):
            for _ in range(n):
                row = self.next_point(np.array(self.fantasies).reshape(-1, self.dim))
                rows.append(row)
                self.fantasies.append(row)
        return self.box.to_user(np.array(rows)), np.empty((n, 0))

    def next_point(self, pending: np.ndarray) -> np.ndarray:
        # design rows handed out, or told rows if more (rows told without an ask, e.g. a sampler's startup trials)
        position = max(self.design_given, len(self.told_y))
        if position < len(self.design):
            self.design_given = position + 1
            return self.design[position]
        finite = np.isfinite(self.told_y)
        if finite.sum() < 2:
            return self.sobol(1)[0]
        y = np.where(finite, self.told_y, np.max(self.told_y[finite]))  # failures ranked with the worst
        gp = self.fit_gp(y)
        self.gp_warm = gp.log_params
        if len(pending):
            gp = gp.conditioned(pending, gp.mean(pending))  # kriging believer
        point = self.maximise(gp, self.pool(y))
        seen = np.concatenate([self.told_u, pending])
        if np.min(np.max(np.abs(seen - point), axis=1)) < 1e-9:  # LogEI at an observed point: explore instead
            point = self.sobol(1)[0]
        return point

    def fit_gp(self, y: np.ndarray) -> ARDGaussianProcess:
        """The surrogate of the told rows (a seam: the mixed-space variant ties a categorical's length scales)."""
        return ARDGaussianProcess(self.told_u, y, warm=self.gp_warm, mode_start=self.config.fit_from_mode)

    def maximise(self, gp: ARDGaussianProcess, pool: np.ndarray) -> np.ndarray:
        """The next point: LogEI's maximum from the pool's best starts (a seam: the mixed-space variant climbs with
        the categoricals fixed and then moves them as categories)."""
        point, _ = maximise_log_ei(
            gp,
            pool,
            n_starts=self.config.n_starts,
            maxiter=self.config.climb_iterations,
            incumbent_rule=self.config.incumbent,
        )
        return point

    def pool(self, y: np.ndarray) -> np.ndarray:
        cfg = self.config
        best = self.told_u[np.argsort(y, kind="stable")[:5]]
        local = []
        for scale in (0.05, 0.2):
            centres = best[self.rng.integers(len(best), size=cfg.local_pool // 2)]
            local.append(centres + scale * self.rng.standard_normal(centres.shape))
        pool = [self.sobol(cfg.sobol_pool), *local]
        if cfg.generator_starts:
            pool.append(self.generator_proposals(y))
        return np.clip(np.concatenate(pool), -1.0, 1.0)

    def generator_proposals(self, y: np.ndarray) -> np.ndarray:
        """G_lw(best P of H) and ``variants_per_proposal`` Gaussian variants of each (the default's proposals before
        its screening), G_lw retrained every ``train_every_per_dim``·dim tells."""
        cfg = self.config
        order = np.argsort(y, kind="stable")
        if self.generators is None or self.told_since_training >= cfg.train_every_per_dim * self.dim:
            if self.generators is None:
                self.generators = GeneratorPair(self.dim, cfg.generator, self.rng)
            n_winners = max(1, int(cfg.winner_fraction * len(order)))
            self.generators.train(self.told_u[order[:n_winners]], self.told_u[order[n_winners:]], self.rng)
            self.told_since_training = 0
        population = self.told_u[order[: 2 * self.dim]]
        made = self.generators.propose(population)
        sigma = cfg.step / math.sqrt(self.dim)
        noise = sigma * self.rng.standard_normal((len(made), cfg.variants_per_proposal, self.dim))
        return np.concatenate([made, (made[:, None, :] + noise).reshape(-1, self.dim)])

    # ------------------------------------------------------------------ results
    def surrogate_rows(self, unit: np.ndarray) -> np.ndarray:
        """Told rows (unit box) as the surrogate and the generator see them: as told here (a seam: the mixed-space
        variant makes each categorical the one-hot of its choice and unused parameters 0)."""
        return unit

    def _observe(self, x: np.ndarray, y: np.ndarray, payload: np.ndarray, asked: np.ndarray) -> None:
        self.told_u = np.concatenate([self.told_u, self.surrogate_rows(self.box.to_unit(x))])
        self.told_y = np.concatenate([self.told_y, y])
        self.told_since_training += len(y)
        self.fantasies = []

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError(f"{self.name} is a research variant without exact resume; it writes no checkpoint")

    def describe(self) -> str:
        """What the repr adds after the core's fields (a seam: the mixed-space variant adds its space)."""
        return f", strategy=sequential LogEI (design {len(self.design)} points), config={self.config}"

    def _repr_extra(self) -> str:
        return self.describe()


def variant(**settings: Any) -> SequentialConfig:
    """A :class:`SequentialConfig` with ``settings`` changed."""
    return dataclasses.replace(SequentialConfig(), **settings)
