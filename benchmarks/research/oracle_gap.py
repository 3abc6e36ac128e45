"""How much a better recommendation could still win: the recommendation's true value against the best true value
among every point the run evaluated (an oracle that knows p(u)), on the merge-like suite (docs/research.md,
ablation 14).

Run: ``evogm-opt bench research oracle-gap OUT.jsonl [--optimizer evogm] [--seeds 0:15] [--dims 4 8 16]``

Each run is the bench's own (same landscape instance, evaluation noise stream and peer), so its recommendation is
the one in the bench records. Writes one line per run and checkpoint (10·N, 20·N) and prints the mean gap by
noise type (F: fixed validation set, R: binomial resampling), N and checkpoint.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from evogm_bench.landscapes import make_landscape, merge_suite
from evogm_bench.peers import get_peer
from evogm_bench.report import seed_range
from evogm_bench.runner import Evaluator, drive

from evogm_opt.atomic import atomic_write
from evogm_opt.cli_faults import EXIT_USAGE, fail

CHECKPOINTS = (10, 20)


class KeepingEvaluator(Evaluator):
    """The bench's evaluator, keeping every evaluated point and the recommendation at each checkpoint."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.points: list[np.ndarray] = []
        self.recommended: dict[int, np.ndarray] = {}

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        self.points.append(np.atleast_2d(np.asarray(x, dtype=float)).copy())
        return super().evaluate(x)

    def record(self, recommendation: np.ndarray | None) -> None:
        super().record(recommendation)
        chosen = self.best_x if recommendation is None else recommendation
        for k in CHECKPOINTS:  # the bench's rule: the state at the last count ≤ each checkpoint
            if self.n_evals <= k * self.landscape.dim:
                self.recommended[k * self.landscape.dim] = np.asarray(chosen, dtype=float).copy()


def gap_records(optimizer: str, seeds: Sequence[int], dims: Sequence[int]) -> Iterator[dict]:
    """One record per run (merge-like landscape × N × seed) and checkpoint: the recommendation's true value and
    the oracle's (the best true value among the points evaluated by then)."""
    for dim in dims:
        for name in merge_suite():
            for seed in seeds:
                landscape = make_landscape(name, dim, seed=seed)
                budget = max(CHECKPOINTS) * dim
                ev = KeepingEvaluator(landscape, budget, np.random.default_rng([seed, 99]))  # the bench's stream
                drive(get_peer(optimizer).build(dim, seed, budget), ev)
                true = landscape.true_value(np.concatenate(ev.points))
                for k in CHECKPOINTS:
                    n = k * dim
                    # the oracle sees the points of the batches finished by n, as the recommendation did
                    seen = max(m for m in np.cumsum([len(p) for p in ev.points]) if m <= n)
                    yield {
                        "optimizer": optimizer,
                        "landscape": name,
                        "dim": dim,
                        "checkpoint": k,
                        "seed": seed,
                        "recommended": float(landscape.true_value(ev.recommended[n].reshape(1, -1))[0]),
                        "oracle": float(true[:seen].max()),
                    }


def summary(records: Sequence[dict]) -> list[str]:
    """The mean and median gap and the share of runs with a gap over 0.01, by noise type, N and checkpoint."""
    gaps: dict[tuple[str, int, int], list[float]] = defaultdict(list)
    for r in records:
        gaps[(r["landscape"][-4], r["dim"], r["checkpoint"])].append(r["oracle"] - r["recommended"])
    lines = []
    for (noise, dim, k), values in sorted(gaps.items()):
        v = np.asarray(values)
        lines.append(
            f"{noise} N={dim:<3d} {k}·N: mean gap {v.mean():.4f}, median {np.median(v):.4f}, "
            f"runs with a gap > 0.01: {100 * np.mean(v > 0.01):.0f} %"
        )
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("records", metavar="OUT.jsonl", help="one line per run and checkpoint (written atomically)")
    parser.add_argument("--optimizer", default="evogm", help="a bench peer")
    parser.add_argument("--seeds", type=seed_range, default=range(15), help="A:B runs seeds A … B−1")
    parser.add_argument("--dims", type=int, nargs="+", default=[4, 8, 16])


def run(args: argparse.Namespace) -> int:
    try:
        get_peer(args.optimizer)
    except ValueError as exc:  # the registry's message lists the names it knows
        return fail("evogm-opt bench research oracle-gap", str(exc), EXIT_USAGE)
    torch.set_num_threads(1)
    records = list(gap_records(args.optimizer, args.seeds, args.dims))
    atomic_write(args.records, "".join(json.dumps(r) + "\n" for r in records))
    print("\n".join(summary(records)))
    return 0
