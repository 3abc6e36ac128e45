"""Run a peer on COCO's ``bbob`` suite through ``cocoex`` so the data post-process with ``cocopp --expensive``.

The suite is ``bbob`` with ``year: 2023`` instances; our box [-1, 1]^N maps to the BBOB domain by x = 5u. The
cocoex observer writes COCO's standard data files, which are comparable with the published COCO archive:

    evogm-opt bench coco --optimizer evogm --dims 5 10 20 --budget 20 --out coco-results
    python -m cocopp --expensive coco-results/evogm     # pip install cocopp
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from evogm_bench.landscapes import BBOB_SCALE
from evogm_bench.peers import BudgetExhausted, get_peer
from evogm_bench.runner import drive


class CocoEvaluator:
    """Budget-counting wrapper around one observed cocoex problem (scores are −f: peers maximise)."""

    def __init__(self, problem, budget: int) -> None:
        self.problem, self.budget, self.n_evals = problem, budget, 0

    def evaluate(self, u: np.ndarray) -> np.ndarray:
        u = np.atleast_2d(np.asarray(u, dtype=float))
        if self.n_evals + len(u) > self.budget:
            raise BudgetExhausted(f"{self.n_evals} + {len(u)} > budget {self.budget}")
        self.n_evals += len(u)
        return np.array([-self.problem(BBOB_SCALE * row) for row in u])

    def record(self, recommendation: np.ndarray | None) -> None:
        """COCO scores every evaluation itself (anytime); ``recommend`` is fed for the expensive setting."""
        if recommendation is not None:
            self.problem.recommend(BBOB_SCALE * np.asarray(recommendation, dtype=float))


def run_coco(
    optimizer: str,
    dims: tuple[int, ...] = (5, 10, 20),
    budget_per_dim: int = 20,
    functions: str = "1-24",
    instances: str | None = None,
    out: Path = Path("coco-results"),
    progress: bool = True,
) -> Path:
    """Run ``optimizer`` on every selected problem; returns the folder cocopp reads."""
    import cocoex
    from tqdm import tqdm

    peer_spec = get_peer(optimizer)
    if not peer_spec.available:
        raise RuntimeError(f"{optimizer}: {peer_spec.missing_note}")
    selection = f"dimensions: {','.join(map(str, dims))} function_indices: {functions}"
    if instances:
        selection += f" instance_indices: {instances}"
    suite = cocoex.Suite("bbob", "year: 2023", selection)
    out = Path(out).resolve()
    observer = cocoex.Observer("bbob", f"result_folder: {optimizer} algorithm_name: {optimizer} outer_folder: {out}")
    start = time.perf_counter()
    for index, problem in enumerate(tqdm(suite, disable=not progress, desc=f"coco {optimizer}")):
        problem.observe_with(observer)
        budget = budget_per_dim * problem.dimension
        peer = peer_spec.build(problem.dimension, index, budget)
        drive(peer, CocoEvaluator(problem, budget))
        problem.free()
    folder = Path(observer.result_folder)  # cocoex adds a -0001 suffix rather than overwrite an earlier run
    del observer  # its destructor flushes the index files (Observer.free() is broken in cocoex 2.8)
    if progress:
        print(f"coco: {len(suite)} problems in {time.perf_counter() - start:.0f} s -> {folder}")
    return folder
