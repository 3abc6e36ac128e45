"""Regenerate every demo figure in docs/llm-merge.md from one command: the demo at seeds 0, 1, 2.

Run: ``python scripts/demo_figures.py [--seeds 0 1 2] [--out merge-demo-figures]``. Each seed is a whole
``evogm-opt merge --demo --seed S`` (everything retrained); the page's block between the markers
``<!-- demo-figures:start -->`` and ``<!-- demo-figures:end -->`` is replaced with seed 0's table and the
seen-task test accuracy of every seed, with the mean ± sd over seeds, the date, the machine and the wall time.
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


def seen_test(row: dict[str, float], seen: list[str]) -> float:
    return float(np.mean([row[f"{name}/test"] for name in seen]))


def block(results: dict[int, object], seen: list[str], searches: tuple[str, ...]) -> str:
    first = min(results)
    columns = ["uniform TA (λ = 1/N)", "best single expert", *(f"{s} λ*" for s in searches)]
    per_seed = {}
    for seed, result in results.items():
        rows = result.results["rows"]
        experts = [seen_test(v, seen) for k, v in rows.items() if k.startswith("expert ")]
        per_seed[seed] = [seen_test(rows["uniform TA (λ = 1/N)"], seen), max(experts)]
        per_seed[seed] += [seen_test(rows[f"{s} λ*"], seen) for s in searches]
    values = np.array(list(per_seed.values()))
    lines = [
        f"Measured {datetime.date.today()} on {os.cpu_count()} CPU cores ({platform.machine()}) with "
        f"`python scripts/demo_figures.py --seeds {' '.join(map(str, results))}`; seed {first}'s full output "
        f"(`evogm-opt merge --demo --seed {first}`, {results[first].seconds:.0f} s):",
        "",
        "```",
        results[first].table,
        "```",
        "",
        "Seen-task test accuracy over seeds (each seed retrains the base and the experts):",
        "",
        "| seed | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    lines += [f"| {seed} | " + " | ".join(f"{v:.3f}" for v in vals) + " |" for seed, vals in per_seed.items()]
    mean, sd = values.mean(axis=0), values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])
    lines.append("| mean ± sd | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(mean, sd)) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="merge-demo-figures")
    args = parser.parse_args()
    from llm_merge.demo import SEARCHES, SEEN, run_demo

    results = {}
    for seed in args.seeds:
        results[seed] = run_demo(Path(args.out) / f"seed-{seed}", seed=seed, quiet=True)
        print(f"seed {seed}: {results[seed].seconds:.0f} s", flush=True)
    text = PAGE.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{PAGE} has no {START} … {END} block to replace")
    new = block(results, list(SEEN), SEARCHES)
    PAGE.write_text(
        re.sub(f"{re.escape(START)}.*?{re.escape(END)}", lambda _: f"{START}\n{new}\n{END}", text, flags=re.S)
    )
    print(f"rewrote the demo figures in {PAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
