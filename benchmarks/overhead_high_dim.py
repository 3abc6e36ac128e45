"""Optimizer overhead per generation (ask + tell) at high dimension: EvoGM default vs CMA-ES vs sep-CMA-ES.

Run: ``python -m evogm_bench.overhead_high_dim [--dims 128 512] [--generations 4]`` (figures in
docs/performance.md). The fitness is a trivial sphere, so the time is the optimizer's own; two warm-up
generations are left out. Each optimizer runs at its default population (EvoGM 2·dim, CMA-ES 4 + ⌊3 ln dim⌋).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from evogm_opt import registry

OPTIMIZERS = ("evogm", "cmaes", "sep-cmaes")  # names of evogm_opt.registry


def per_generation(name: str, dim: int, generations: int) -> tuple[int, float]:
    opt = registry.create(name, dim, seed=0)

    def run(n: int) -> None:
        for _ in range(n):
            x = opt.ask()
            opt.tell(x, np.sum((x - 0.3) ** 2, axis=1).tolist())

    run(2)
    start = time.perf_counter()
    run(generations)
    return opt.popsize, (time.perf_counter() - start) / generations


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", nargs="+", type=int, default=[128, 512])
    parser.add_argument("--generations", type=int, default=4)
    args = parser.parse_args(argv)
    print(f"torch threads: {torch.get_num_threads()}")
    print("| dim | optimizer | popsize | ms / generation | ms / evaluation |\n|---|---|---|---|---|")
    for dim in args.dims:
        for name in OPTIMIZERS:
            popsize, seconds = per_generation(name, dim, args.generations)
            print(f"| {dim} | {name} | {popsize} | {seconds * 1e3:.0f} | {seconds / popsize * 1e3:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
