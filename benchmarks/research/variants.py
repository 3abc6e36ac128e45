"""EvoGM variants measured against the presets (docs/research.md), run by the bench under their peer names.

Each is a configuration the presets do not use, or a subclass that overrides
:meth:`~evogm_opt.GenerativeOptimizer.generate`, the core's one seam for where proposals come from — never a
patch of private methods. The rejected mechanisms that needed more than that are not rebuilt here: their code
lives at commit ``a95bed8`` of the repository (``git checkout a95bed8``; docs/research.md says which).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from evogm_bench.research.sequential import SequentialConfig, SequentialEvoGM

from evogm_opt import GenerativeOptimizer
from evogm_opt.evogm import DEFAULT, PAPER, EvoGMConfig


class NoGenerator(GenerativeOptimizer):
    """The no-generator measurement (docs/research.md, round two): proposals are the best P of H themselves instead
    of G_lw(population), with the same noise, screening, repeats and basis shifts — what the learned proposal adds
    is measured against it. Nothing is trained (``generators`` stays None, ``last_loss`` NaN).

    Its checkpoints name ``evogm-no-generator``: load them with ``NoGenerator.load(path)``.
    """

    name = "evogm-no-generator"

    def generate(self, population: np.ndarray) -> np.ndarray:
        return np.array(population)


# Paper ablation "w/o cycle": no backward generator, G_lw trained by the pull term alone.
PAPER_SINGLE_GENERATOR = dataclasses.replace(PAPER, generator=dataclasses.replace(PAPER.generator, dual=False))
# Paper ablation "w/o rounds": the same T·R iterations in one round, so no basis shift.
PAPER_NO_ROUNDS = dataclasses.replace(PAPER, iterations_per_round=PAPER.iterations_per_round * 2, n_rounds=1)


@dataclass(frozen=True)
class Variant:
    """A research variant: the class that runs it, its configuration and one line for the bench's ``--help``."""

    cls: type[GenerativeOptimizer]
    config: EvoGMConfig
    summary: str


VARIANTS: dict[str, Variant] = {
    "evogm-no-generator": Variant(NoGenerator, DEFAULT, "the default with proposals = the population (no G_lw)"),
    "evogm-paper-single-generator": Variant(
        GenerativeOptimizer, PAPER_SINGLE_GENERATOR, "paper ablation: no cycle (G_lw alone)"
    ),
    "evogm-paper-no-rounds": Variant(GenerativeOptimizer, PAPER_NO_ROUNDS, "paper ablation: one round"),
}


def build(name: str, dim: int, *, keep_going: bool = False, **kwargs: Any) -> GenerativeOptimizer:
    """The variant ``name`` (a key of :data:`VARIANTS`) at ``dim`` coordinates; ``kwargs`` as for
    :class:`~evogm_opt.GenerativeOptimizer` (``seed``, ``maximize``, ``max_evals``, …). ``keep_going``: rounds
    until the budget is spent (``n_rounds=None``), as the bench runs the paper's configurations past R = 2."""
    if name not in VARIANTS:
        raise ValueError(f"unknown research variant {name!r}; choose one of {', '.join(VARIANTS)}")
    variant = VARIANTS[name]
    config = dataclasses.replace(variant.config, n_rounds=None) if keep_going else variant.config
    return variant.cls(dim, config=config, **kwargs)


def for_bench(name: str, dim: int, seed: int, budget: int) -> GenerativeOptimizer:
    """The variant as the bench runs it: maximising, ``max_evals`` the budget, rounds until the budget is spent."""
    return build(name, dim, keep_going=True, seed=seed, maximize=True, max_evals=budget)


# Ablation 29: the GP fit warm-started from the previous fit alone, and 4 climbs of 40 steps instead of 8 of 60
FAST: dict[str, Any] = {"fit_from_mode": False, "n_starts": 4, "climb_iterations": 40}

# SMAC3's black-box facade asks a random configuration with this probability (its ProbabilityRandomDesign)
SMAC_RANDOM_RATE = 0.08447232371720552

# Research round three (docs/research.md): the sequential shape, with and without the generator's start points,
# and with a smaller start design.
SEQUENTIAL: dict[str, tuple[SequentialConfig, str]] = {
    "evogm-seq": (SequentialConfig(), "one point per ask by LogEI; G_lw's proposals among its starts; Sobol quarter"),
    "evogm-seq-nogen": (
        dataclasses.replace(SequentialConfig(), generator_starts=False),
        "evogm-seq without the generator's start points",
    ),
    "evogm-seq-fast": (
        dataclasses.replace(SequentialConfig(), **FAST),
        "evogm-seq with warm-started GP fits and 4 climbs of 40 steps (its time per ask below GPSampler's)",
    ),
    "evogm-seq-random": (
        dataclasses.replace(SequentialConfig(), **FAST, random_interleave=SMAC_RANDOM_RATE),
        "the core's sequential shape with a Sobol point instead of LogEI's at SMAC3's rate (8.4 %) after the design",
    ),
    "evogm-seq-small-start": (
        dataclasses.replace(SequentialConfig(), init_fraction=0.0),
        "evogm-seq with the informed start only (experts, mix, one more)",
    ),
}


def sequential_for_bench(name: str, dim: int, seed: int, budget: int) -> SequentialEvoGM:
    """A sequential variant as the bench runs it: maximising, ``max_evals`` the budget."""
    config, _ = SEQUENTIAL[name]
    return SequentialEvoGM(dim, seed=seed, maximize=True, max_evals=budget, config=config)
