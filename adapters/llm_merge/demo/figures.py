"""The demo figures of docs/llm-merge.md, rendered from ``run_demo`` results (``scripts/demo_figures.py`` runs the
seeds and writes the block into the page; the rendering lives here so a test can check it without the script)."""

from __future__ import annotations

import datetime
import os
import platform
from typing import Any

import numpy as np

from llm_merge.demo.cpu_demo import FIDELITY_ROW, UNIFORM, merge_verdict, seen_test


def _cpu() -> str:
    """The architecture and, where Linux says it, the CPU model: the demo's numbers are float32 training, which
    another CPU's kernels round differently (tests/test_frictions.py compares the block's numbers only where the
    demo pre-trains the same base)."""
    try:
        with open("/proc/cpuinfo") as fh:
            models = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
    except OSError:
        models = []
    return f"{platform.machine()}, {models[0]}" if models else platform.machine()


def _span(shares: np.ndarray) -> str:
    low, high = f"{shares.min():.0%}", f"{shares.max():.0%}"
    return low if low == high else f"{low}–{high}"


def block(results: dict[int, Any], searches: tuple[str, ...]) -> str:
    """The page's demo-figures block from one ``run_demo`` result per seed: seed 0's table, every seed's seen-task
    test accuracy, the mean ± sd, how often EvoGM beat every expert and uniform TA, where and when it was run."""
    first = min(results)
    columns = [UNIFORM, "best single expert", *(f"{s} λ*" for s in searches), FIDELITY_ROW]
    per_seed, wins, shares = {}, 0, {}
    for seed, result in results.items():
        rows = result.results["rows"]
        verdict = merge_verdict(rows)
        wins += verdict["beats_both"]
        per_seed[seed] = [verdict["uniform"], verdict["best_expert_score"]]
        per_seed[seed] += [seen_test(rows[f"{s} λ*"]) for s in searches] + [seen_test(rows[FIDELITY_ROW])]
        per_seed[seed].append("yes" if verdict["beats_both"] else "no")
        cost = result.results["fidelity"]
        shares[seed] = cost["tokens_spent"] / cost["full_fidelity_tokens"]
    values = np.array([v[:-1] for v in per_seed.values()], dtype=float)
    lines = [
        f"Measured {datetime.date.today()} on {os.cpu_count()} CPU cores ({_cpu()}, load average "
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
        "| seed | " + " | ".join(columns) + " | fidelity's tokens | EvoGM beats both | wall time |",
        "|---|" + "---|" * (len(columns) + 3),
    ]
    for seed, vals in per_seed.items():
        cells = " | ".join(f"{v:.3f}" for v in vals[:-1])
        lines.append(f"| {seed} | {cells} | {shares[seed]:.0%} | {vals[-1]} | {results[seed].seconds:.0f} s |")
    mean, sd = values.mean(axis=0), values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])
    share = np.array(list(shares.values()))
    lines.append(
        "| mean ± sd | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(mean, sd)) + f" | {share.mean():.0%} | | |"
    )
    lines += [
        "",
        f"EvoGM beats every single expert and uniform TA in {wins}/{len(results)} seeds. With multi-fidelity "
        f"scoring ({FIDELITY_ROW}) its seen-task test accuracy is {mean[-1]:.3f} ± {sd[-1]:.3f} against "
        f"{mean[columns.index('evogm λ*')]:.3f} ± {sd[columns.index('evogm λ*')]:.3f} at full fidelity, for "
        f"{_span(share)} of its validation tokens ('fidelity's tokens').",
    ]
    return "\n".join(lines)
