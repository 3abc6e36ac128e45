"""Regenerate every demo figure in docs/llm-merge.md from one command: the demo at seeds 0, 1, 2.

Run: ``python scripts/demo_figures.py [--seeds 0 1 2] [--out merge-demo-figures]``. Each seed is a whole
``evogm-opt merge --demo --seed S`` (everything retrained); the page's block between the markers
``<!-- demo-figures:start -->`` and ``<!-- demo-figures:end -->`` is replaced with seed 0's table and the
seen-task test accuracy of every seed (uniform TA, best single expert, each search), the mean ± sd over seeds,
how many seeds EvoGM beat every single expert and uniform TA in, the date, the machine, its load and the wall times.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "llm-merge.md"
START, END = "<!-- demo-figures:start -->", "<!-- demo-figures:end -->"


def block(results: dict[int, object], searches: tuple[str, ...]) -> str:
    from llm_merge.demo import UNIFORM, merge_verdict, seen_test

    first = min(results)
    columns = [UNIFORM, "best single expert", *(f"{s} λ*" for s in searches)]
    per_seed, wins = {}, 0
    for seed, result in results.items():
        rows = result.results["rows"]
        verdict = merge_verdict(rows)
        wins += verdict["beats_both"]
        per_seed[seed] = [verdict["uniform"], verdict["best_expert_score"]]
        per_seed[seed] += [seen_test(rows[f"{s} λ*"]) for s in searches]
        per_seed[seed].append("yes" if verdict["beats_both"] else "no")
    values = np.array([v[:-1] for v in per_seed.values()], dtype=float)
    lines = [
        f"Measured {datetime.date.today()} on {os.cpu_count()} CPU cores ({platform.machine()}, load average "
        f"{os.getloadavg()[0]:.1f} at the end) with `python scripts/demo_figures.py --seeds "
        f"{' '.join(map(str, results))}`; seed {first}'s full output (`evogm-opt merge --demo --seed {first}`, "
        f"{results[first].seconds:.0f} s):",
        "",
        "```",
        results[first].table,
        "```",
        "",
        "Seen-task test accuracy over seeds (each seed retrains the base and the experts; λ chosen on validation):",
        "",
        "| seed | " + " | ".join(columns) + " | EvoGM beats both | wall time |",
        "|---|" + "---|" * (len(columns) + 2),
    ]
    for seed, vals in per_seed.items():
        cells = " | ".join(f"{v:.3f}" for v in vals[:-1])
        lines.append(f"| {seed} | {cells} | {vals[-1]} | {results[seed].seconds:.0f} s |")
    mean, sd = values.mean(axis=0), values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])
    lines.append("| mean ± sd | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(mean, sd)) + " | | |")
    lines += ["", f"EvoGM beats every single expert and uniform TA in {wins}/{len(results)} seeds."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="merge-demo-figures")
    args = parser.parse_args()
    from llm_merge.demo import SEARCHES, run_demo

    results = {}
    for seed in args.seeds:
        results[seed] = run_demo(Path(args.out) / f"seed-{seed}", seed=seed, quiet=True)
        verdict = results[seed].results["verdict"]
        print(f"seed {seed}: {results[seed].seconds:.0f} s, EvoGM beats both: {verdict['beats_both']}", flush=True)
    text = PAGE.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{PAGE} has no {START} … {END} block to replace")
    new = block(results, SEARCHES)
    PAGE.write_text(
        re.sub(f"{re.escape(START)}.*?{re.escape(END)}", lambda _: f"{START}\n{new}\n{END}", text, flags=re.S)
    )
    print(f"rewrote the demo figures in {PAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
