"""How often the default's step σ sits at its ceiling on the merge-like suite (docs/research.md, research round
two, continued).

Run: ``evogm-opt bench research step-at-ceiling [--seeds K] [--dims 4 8 16]``

Runs the default preset on every merge-like landscape at each N for 20·N evaluations (seeds 0..K-1, the bench's
instances and noise streams) and counts the generations after the first generator iteration whose σ is within
5 % of ``max_proposal_noise``·(step unit). A high share means the 1/5th success rule never shrinks the step.
"""

from __future__ import annotations

import argparse

import numpy as np
from evogm_bench.landscapes import make_landscape, merge_suite

from evogm_opt import GenerativeOptimizer
from evogm_opt.evogm.proposals import step_unit


def share_at_ceiling(dim: int, seeds: int) -> tuple[int, int]:
    """(generations with σ within 5 % of its ceiling, generations counted) over the suite at ``dim``."""
    at = total = 0
    for name in merge_suite():
        for seed in range(seeds):
            landscape, rng = make_landscape(name, dim, seed=seed), np.random.default_rng(seed)
            opt = GenerativeOptimizer(dim, seed=seed, max_evals=20 * dim, maximize=True)
            # the optimizer's own ceiling (its 1/5th-rule update), from public parts: no private attribute read
            ceiling = opt.config.max_proposal_noise * step_unit(dim, opt.config.noise_per_sqrt_dim)
            while not opt.stop():
                x = opt.ask()
                opt.tell(x, landscape.observe(x, rng))
                if opt.iteration > 1 or opt.round > 0:
                    total += 1
                    at += opt.noise >= 0.95 * ceiling
    return at, total


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 … K−1")
    parser.add_argument("--dims", type=int, nargs="+", default=[4, 8, 16])


def run(args: argparse.Namespace) -> int:
    for dim in args.dims:
        at, total = share_at_ceiling(dim, args.seeds)
        print(f"N={dim}: σ within 5 % of its ceiling after {at}/{total} generations ({100 * at / total:.0f} %)")
    return 0
