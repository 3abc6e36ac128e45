"""Optimizer overhead per generation (ask + tell) at high dimension: EvoGM default vs CMA-ES vs sep-CMA-ES.

Run: ``evogm-opt bench overhead [--dims 128 512] [--generations 4]`` (figures in docs/performance.md). The fitness
is a trivial sphere, so the time is the optimizer's own; two warm-up generations are left out. Each optimizer runs
at its default population (EvoGM 2·dim, CMA-ES 4 + ⌊3 ln dim⌋). The default EvoGM hands off to sep-CMA-ES from 100
coordinates on (``handoff_dim``), so its rows after the warm-up are sep-CMA-ES generations; ``evogm (no handoff)``
is EvoGM's own generation at that size.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from evogm_opt import PRESETS, registry

#: label -> (name in evogm_opt.registry, settings)
OPTIMIZERS = {
    "evogm (default)": ("evogm", {}),
    "evogm (no handoff)": ("evogm", {"config": dataclasses.replace(PRESETS["default"], handoff_dim=None)}),
    "cmaes": ("cmaes", {}),
    "sep-cmaes": ("sep-cmaes", {}),
}


def per_generation(label: str, dim: int, generations: int) -> tuple[int, float]:
    name, settings = OPTIMIZERS[label]
    opt = registry.create(name, dim, seed=0, **settings)

    def run(n: int) -> None:
        for _ in range(n):
            x = opt.ask()
            opt.tell(x, np.sum((x - 0.3) ** 2, axis=1).tolist())

    run(2)
    start = time.perf_counter()
    run(generations)
    return opt.popsize, (time.perf_counter() - start) / generations


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evogm-opt bench overhead", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dims", nargs="+", type=int, default=[128, 512])
    parser.add_argument("--generations", type=int, default=4, help="generations timed after two warm-up ones")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Time each optimizer at each dimension and print the markdown table."""
    print(f"torch threads: {torch.get_num_threads()}")
    print("| dim | optimizer | popsize | ms / generation | ms / evaluation |\n|---|---|---|---|---|")
    for dim in args.dims:
        for label in OPTIMIZERS:
            popsize, seconds = per_generation(label, dim, args.generations)
            print(f"| {dim} | {label} | {popsize} | {seconds * 1e3:.0f} | {seconds / popsize * 1e3:.2f} |", flush=True)
    return 0
