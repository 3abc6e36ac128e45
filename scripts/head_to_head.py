"""Head to head on bench records: in how many cells is one optimizer's median better than each peer's?

Cells: landscape × N × checkpoint (10·N, 20·N). Significance: two-sided Mann–Whitney per cell, Holm over the
cells of one pairing. The research issue's stretch goal (NGOpt, lq-CMA-ES) is read with this; its bar with
``issue4_target.py``.
"""

from __future__ import annotations

import argparse

import numpy as np
from evogm_bench import stats
from evogm_bench.report import load_cells, seed_range


def head_to_head(path: str, prefix: str, name: str, peers: list[str], seeds: range | None = None) -> None:
    cells = load_cells(path, prefix, seeds)
    for peer in peers:
        wins = {10: [0, 0], 20: [0, 0]}
        pvals, a12s = [], []
        for (_landscape, dim, evals), res in sorted(cells.items()):
            if peer not in res.values or name not in res.values:
                continue
            ours, theirs = res.losses(name), res.losses(peer)
            wins[evals // dim][0] += float(np.median(ours)) < float(np.median(theirs))  # losses: lower is better
            wins[evals // dim][1] += 1
            pvals.append(stats.mann_whitney(ours, theirs))
            a12s.append(stats.a12(ours, theirs))
        adjusted = stats.holm(pvals) if pvals else []
        better = sum(p < 0.05 and a > 0.5 for p, a in zip(adjusted, a12s))
        worse = sum(p < 0.05 and a < 0.5 for p, a in zip(adjusted, a12s))
        total = wins[10][0] + wins[20][0]
        print(
            f"{name} vs {peer}: median better in {total}/{len(pvals)} cells (10·N {wins[10][0]}/{wins[10][1]}, "
            f"20·N {wins[20][0]}/{wins[20][1]}); significantly better in {better}, worse in {worse} (Holm)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", help="JSONL written by 'evogm-opt bench'")
    parser.add_argument("prefix", help="landscapes to read, e.g. merge- or bbob-")
    parser.add_argument("optimizer")
    parser.add_argument("peers", nargs="+")
    parser.add_argument("--seeds", type=seed_range, help="A:B keeps seeds A … B−1")
    args = parser.parse_args()
    head_to_head(args.records, args.prefix, args.optimizer, args.peers, args.seeds)
