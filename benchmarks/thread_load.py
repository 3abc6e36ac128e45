"""EvoGM's time per generation on an idle and on a loaded machine, by the torch threads its own networks use.

Run: ``evogm-opt bench thread-load [--dim 10] [--generations 8] [--threads 1 2] [--load 0 2]``
(figures in docs/performance.md). ``--load k`` starts k busy-loop processes beside the measurement (what another
job on a shared machine does). ``threads=2`` is what version 0.1 did on a 2-core machine: it ran the networks on
torch's default thread count; since 0.2 ``GenerativeOptimizer(torch_threads=1)`` is the default.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import numpy as np

from evogm_opt import GenerativeOptimizer


def _busy(stop: mp.Event) -> None:  # type: ignore[valid-type]
    x = 0
    while not stop.is_set():
        x = (x * 1103515245 + 12345) % 2**31


def per_generation(dim: int, generations: int, threads: int) -> tuple[float, float]:
    """Median wall and CPU seconds per generation (ask + tell) after two warm-up generations."""
    opt = GenerativeOptimizer(dim, seed=0, torch_threads=threads)
    walls, cpus = [], []
    for g in range(generations + 2):
        wall, cpu = time.perf_counter(), time.process_time()
        x = opt.ask()
        opt.tell(x, np.sum((x - 0.3) ** 2, axis=1).tolist())
        if g >= 2:
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    return float(np.median(walls)), float(np.median(cpus))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evogm-opt bench thread-load", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--generations", type=int, default=8, help="generations timed after two warm-up ones")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads of EvoGM's networks")
    parser.add_argument("--load", type=int, nargs="+", default=[0, 2], help="busy-loop processes beside the run")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Time a generation at each load and thread count and print the markdown table."""
    print(f"| load (busy processes) | torch threads | wall ms / generation | CPU ms / generation |  (dim {args.dim})")
    print("|---|---|---|---|")
    for load in args.load:
        stop = mp.Event()
        workers = [mp.Process(target=_busy, args=(stop,), daemon=True) for _ in range(load)]
        for w in workers:
            w.start()
        try:
            for threads in args.threads:
                wall, cpu = per_generation(args.dim, args.generations, threads)
                print(f"| {load} | {threads} | {1000 * wall:.0f} | {1000 * cpu:.0f} |", flush=True)
        finally:
            stop.set()
            for w in workers:
                w.join()
    return 0
