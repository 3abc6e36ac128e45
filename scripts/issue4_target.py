"""Check the research issue's bar on bench records: the default's median true value vs CMA-ES and the best PSO.

Usage: python scripts/issue4_target.py bench-results/merge.jsonl [OPTIMIZER] [--seeds A:B] [--against BASE]
Cells: every merge-like landscape × N × checkpoint (10·N, 20·N) in the file. "Best PSO" is, per cell, the PSO
(pso-merging, model-swarms, ng-confpso) with the highest median. Significance: two-sided Mann–Whitney of the
optimizer against CMA-ES, Holm-corrected over these cells only (the family the bar is about). ``--seeds A:B``
keeps seeds A … B−1 only, so a variant run on fewer seeds is compared with the peers on the same instances.
``--against BASE`` adds Δmed: the mean over cells of (optimizer's median − BASE's median), a finer ranking of two
variants than the cell count (docs/research.md).
"""

from __future__ import annotations

import argparse

import numpy as np
from evogm_bench import stats
from evogm_bench.report import load_cells, seed_range

PSOS = ("pso-merging", "model-swarms", "ng-confpso")


def main(path: str, name: str = "evogm", seeds: range | None = None, against: str | None = None) -> None:
    cells = load_cells(path, "merge-", seeds)
    rows, pvals, deltas = [], [], []
    for cell in sorted(cells):
        res = cells[cell]
        if name not in res.values or "cmaes" not in res.values:
            continue
        med = {o: float(np.median(list(res.values[o].values()))) for o in res.values}
        best_pso = max((o for o in PSOS if o in med), key=lambda o: med[o])
        p = stats.mann_whitney(res.losses(name), res.losses("cmaes"))
        rows.append(
            (cell, med[name], med["cmaes"], best_pso, med[best_pso], stats.a12(res.losses(name), res.losses("cmaes")))
        )
        pvals.append(p)
        if against is not None and against in med:
            deltas.append(med[name] - med[against])
    adjusted = stats.holm(pvals)
    wins_both = wins_cma = worse = 0
    for (cell, m, mc, bp, mp, a), p in zip(rows, adjusted):
        beat_cma, beat_pso = m > mc, m > mp
        wins_cma += beat_cma
        wins_both += beat_cma and beat_pso
        sig_worse = p < 0.05 and a < 0.5
        worse += sig_worse
        flag = (
            "both" if beat_cma and beat_pso else ("cma only" if beat_cma else ("pso only" if beat_pso else "neither"))
        )
        print(
            f"{cell[0]:16s} N={cell[1]:<3d} evals={cell[2]:<4d} {name}={m:.3f} cmaes={mc:.3f} {bp}={mp:.3f} "
            f"A12={a:.2f} p_holm={p:.2g} {flag}{' SIGNIFICANTLY WORSE' if sig_worse else ''}"
        )
    n = len(rows)
    print(
        f"\n{name}: median above CMA-ES in {wins_cma}/{n} cells; above CMA-ES and the best PSO in {wins_both}/{n} "
        f"({100 * wins_both / max(1, n):.0f} %; bar: 75 %); significantly worse than CMA-ES in {worse} cells."
    )
    if deltas:
        print(f"Δmed vs {against}: {np.mean(deltas):+.4f} over {len(deltas)} cells")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", help="JSONL written by 'evogm-opt bench'")
    parser.add_argument("optimizer", nargs="?", default="evogm")
    parser.add_argument("--seeds", type=seed_range, help="A:B keeps seeds A … B−1")
    parser.add_argument("--against", help="a base variant: print Δmed against it")
    args = parser.parse_args()
    main(args.records, args.optimizer, seeds=args.seeds, against=args.against)
