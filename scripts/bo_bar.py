"""Issue 19's bar on bench records: the default's median true value against the *best BO peer per cell*.

Usage: python scripts/bo_bar.py RECORDS.jsonl [OPTIMIZER] [--seeds A:B]

Cells: every merge-like landscape × N × checkpoint (10·N, 20·N) in the file. The best BO peer of a cell is the BO
peer (``optuna-gp``, ``optuna-gp-experts``, ``botorch-qlognei``, ``smac-bb``, whichever the file has for that
cell) with the highest median; a peer run on fewer seeds is taken as it is (its median is then noisier — say
so when reporting).
Significance: two-sided Mann–Whitney of the optimizer against that peer, Holm-corrected over all cells printed.
Prints one line per cell and a summary per N and overall: cells where the optimizer's median is higher, and
cells significantly better / worse.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
from evogm_bench import stats
from evogm_bench.report import load_cells, seed_range

BO_PEERS = ("optuna-gp", "optuna-gp-experts", "botorch-qlognei", "smac-bb")


def main(path: str, name: str = "evogm", seeds: range | None = None) -> None:
    cells = load_cells(path, "merge-", seeds)
    rows, pvals, a12s = [], [], []
    for cell in sorted(cells):
        res = cells[cell]
        peers = [p for p in BO_PEERS if p in res.values]
        if name not in res.values or not peers:
            continue
        med = {o: float(np.median(list(res.values[o].values()))) for o in [name, *peers]}
        best = max(peers, key=lambda p: med[p])
        ours, theirs = res.losses(name), res.losses(best)
        rows.append((cell, best, med[name], med[best], len(ours), len(theirs)))
        pvals.append(stats.mann_whitney(ours, theirs))
        a12s.append(stats.a12(ours, theirs))
    if not rows:
        raise SystemExit(f"no merge-like cell in {path} has both {name!r} and a BO peer {BO_PEERS}")
    adjusted = stats.holm(pvals)
    summary: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # higher, cells, sig. better, sig. worse
    for (cell, best, ours, theirs, n_ours, n_theirs), p, a in zip(rows, adjusted, a12s):
        landscape, dim, evals = cell
        verdict = "better" if p < 0.05 and a > 0.5 else "worse" if p < 0.05 and a < 0.5 else ""
        print(
            f"{landscape:16s} N={dim:<3d} {evals // dim}·N  {name} {ours:.3f} (n={n_ours})  "
            f"{best} {theirs:.3f} (n={n_theirs})  Holm p={p:.3g} {verdict}"
        )
        for key in (f"N = {dim}", "all"):
            summary[key][0] += ours > theirs
            summary[key][1] += 1
            summary[key][2] += verdict == "better"
            summary[key][3] += verdict == "worse"
    for key in sorted(summary, key=lambda k: (k == "all", len(k), k)):
        higher, total, better, worse = summary[key]
        print(
            f"{key}: median higher in {higher}/{total} cells ({100 * higher / total:.0f} %); "
            f"significantly better {better}, worse {worse}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("optimizer", nargs="?", default="evogm")
    parser.add_argument("--seeds", type=seed_range, default=None, help="A:B keeps seeds A … B−1")
    args = parser.parse_args()
    main(args.path, args.optimizer, args.seeds)
