"""Regenerate every demo figure in docs/llm-merge.md from one command: the demo at seeds 0, 1, 2.

Run: ``python scripts/demo_figures.py [--seeds 0 1 2] [--out merge-demo-figures]``. Each seed is a whole
``evogm-opt merge --demo --seed S`` (everything retrained); the page's block between the markers
``<!-- demo-figures:start -->`` and ``<!-- demo-figures:end -->`` is replaced with seed 0's table and the
seen-task test accuracy of every seed (uniform TA, best single expert, each search), the mean ± sd over seeds,
how many seeds EvoGM beat every single expert and uniform TA in, the date, the machine, its load and the wall times.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "llm-merge.md"
START, END = "<!-- demo-figures:start -->", "<!-- demo-figures:end -->"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="merge-demo-figures")
    args = parser.parse_args()
    from llm_merge.demo.cpu_demo import SEARCHES, run_demo
    from llm_merge.demo.figures import block

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
