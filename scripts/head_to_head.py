"""Head to head on bench records: in how many cells is one optimizer's median better than each peer's?

Usage: python scripts/head_to_head.py RECORDS.jsonl PREFIX OPTIMIZER PEER [PEER ...] [--seeds A:B]
PREFIX selects landscapes (``merge-``, ``bbob-``). Cells: landscape × N × checkpoint (10·N, 20·N). Significance:
two-sided Mann–Whitney per cell, Holm over the cells of one pairing. The research issue's stretch goal (NGOpt,
lq-CMA-ES) is read with this; its bar with ``issue4_target.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from evogm_bench import stats
from evogm_bench.report import collect
from evogm_bench.runner import load_records


def head_to_head(path: str, prefix: str, name: str, peers: list[str], seeds: range | None = None) -> None:
    records = [r for r in load_records(Path(path)) if r["landscape"].startswith(prefix)]
    if seeds is not None:
        records = [r for r in records if r["seed"] in seeds]
    cells = collect(records, checkpoints=(10, 20))
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
    args = sys.argv[1:]
    seed_range = None
    if "--seeds" in args:
        i = args.index("--seeds")
        first, last = (int(v) for v in args[i + 1].split(":"))
        seed_range = range(first, last)
        del args[i : i + 2]
    if len(args) < 4:
        sys.exit(__doc__)
    head_to_head(args[0], args[1], args[2], args[3:], seed_range)
