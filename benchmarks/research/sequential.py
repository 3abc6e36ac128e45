"""Research round three (docs/research.md): the sequential shape's measured variants, as a subclass of the core's
:class:`~evogm_opt.evogm.sequential.SequentialOptimizer` (which ``"evogm"`` picks at small N since ablation 33).

The core carries the adopted settings only (ablation 29's warm-started fit and 4 climbs of 40 steps, the informed
start, G_lw's proposals in the pool, EI's reference at the best observed value). The measured alternatives stay
here as settings of :class:`SequentialConfig`, this module's extension of the core's:

- ``fit_from_mode``: every GP fit also starts from the prior's mode (ablation 20's ``evogm-seq``: two fits per ask);
- ``n_starts`` 8 and ``climb_iterations`` 60: ablation 20's climb;
- ``generator_starts`` False: no generator proposals in the pool (``evogm-seq-nogen``);
- ``incumbent`` ``"mean"``: EI's reference at the best posterior mean (screened and dropped in ablation 20);
- ``informed_start`` False and ``initial_points``: a Sobol design of a fixed size (the tuning samplers);
- ``random_interleave``: a Sobol point instead of LogEI's maximum at that rate after the design (ablation 34).

With the adopted values (``variants.FAST``) :class:`SequentialEvoGM` runs exactly as the core's optimizer (a test
compares them ask by ask), so ``evogm-seq-fast``'s records are the core's sequential shape.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from evogm_opt.evogm import sequential as core
from evogm_opt.evogm.ard_gp import ARDGaussianProcess, maximise_log_ei


@dataclass(frozen=True)
class SequentialConfig(core.SequentialConfig):
    """The core's settings with ablation 20's defaults and the research switches (see the module docstring)."""

    n_starts: int = 8
    climb_iterations: int = 60
    # the design's size regardless of the budget (a tuning study has none); None: init_fraction of the budget
    initial_points: int | None = None
    # the design begins with each expert alone and the uniform mix (a merge); False: Sobol only (a tuning space)
    informed_start: bool = True
    # G_lw's proposals (and variants around them) are offered to the acquisition as start points
    generator_starts: bool = True
    # every GP fit also starts from the prior's mode (True), or only the first does (False: ablation 29)
    fit_from_mode: bool = True
    # EI's reference: the best observed value ("observed") or the best posterior mean at an observed point ("mean")
    incumbent: str = "observed"
    # after the design, each ask is a Sobol point with this probability instead of LogEI's maximum (SMAC3's
    # black-box facade interleaves random configurations at about 8 %; ablation 34)
    random_interleave: float = 0.0


class SequentialEvoGM(core.SequentialOptimizer):
    """The core's sequential shape with the research switches of :class:`SequentialConfig`."""

    name = "evogm-sequential-research"
    config_class = SequentialConfig
    config: SequentialConfig

    def start_design(self) -> np.ndarray:
        cfg = self.config
        size = self.design_size() if cfg.initial_points is None else cfg.initial_points
        return self.compose_design(size, informed=cfg.informed_start)

    def kept_fantasies(self) -> np.ndarray:
        # every research variant (the tuning samplers of ablations 20, 29–31 and 36 among them) dropped every fantasy
        # at a tell: a sampler's no-repeat rule evaluates another row than the one asked, which then stays pending
        # for good; kept so their records rerun
        return self.fantasies[:0]

    def next_point(self, pending: np.ndarray) -> np.ndarray:
        chance = self.config.random_interleave
        past_design = max(self.design_given, len(self.told_y)) >= len(self.design)
        if chance > 0 and past_design and self.rng.random() < chance:
            return self.sobol(1)[0]
        return super().next_point(pending)

    def fit_gp(self, y: np.ndarray) -> ARDGaussianProcess:
        return ARDGaussianProcess(self.told_u, y, warm=self.gp_warm, mode_start=self.config.fit_from_mode)

    def maximise(self, gp: ARDGaussianProcess, pool: np.ndarray) -> np.ndarray:
        cfg = self.config
        point, _ = maximise_log_ei(
            gp, pool, n_starts=cfg.n_starts, maxiter=cfg.climb_iterations, incumbent_rule=cfg.incumbent
        )
        return point

    def pool(self, y: np.ndarray) -> np.ndarray:
        if self.config.generator_starts:
            return super().pool(y)
        return np.clip(np.concatenate(self.search_pool(y)), -1.0, 1.0)

    def describe(self) -> str:
        return f", strategy=sequential LogEI (design {len(self.design)} points), config={self.config}"


def variant(**settings: Any) -> SequentialConfig:
    """A research :class:`SequentialConfig` with ``settings`` changed."""
    return dataclasses.replace(SequentialConfig(), **settings)
