"""The trade-off between seen tasks after a search: the Pareto front as JSON and a plot.

The front comes from the optimizer's non-dominated archive (``evogm_opt.pareto``, on moocore), which holds
every evaluated point no other evaluated point beats on all seen tasks at once. Two tasks are drawn as a
scatter (all evaluations faint, the front joined); three or more as parallel coordinates of the front.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from evogm_opt import Optimizer


def front_entries(opt: Optimizer, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The log entries of the archived non-dominated points, in evaluation order."""
    if opt.archive is None:
        return []
    return [entries[int(n) - 1] for n in opt.archive.evaluations]


def pareto_summary(opt: Optimizer, entries: list[dict[str, Any]], tasks: list[str]) -> dict[str, Any]:
    front = front_entries(opt, entries)
    return {
        "tasks": tasks,
        "objective_weights": None if opt.objective_weights is None else list(map(float, opt.objective_weights)),
        "hypervolume_vs_zero": opt.archive.hypervolume([0.0] * len(tasks)) if opt.archive is not None else None,
        "front": [
            {"evaluation": e["evaluation"], "lambda": e["lambda"], "tasks": e["tasks"], "score": e["score"]}
            for e in front
        ],
    }


def plot_front(summary: dict[str, Any], entries: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    tasks, front = summary["tasks"], summary["front"]
    if len(tasks) < 2 or not front:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    if len(tasks) == 2:
        a, b = tasks
        every = np.array([[e["tasks"][a], e["tasks"][b]] for e in entries if e["score"] is not None])
        ax.scatter(every[:, 0], every[:, 1], s=10, alpha=0.3, label="evaluated")
        pts = np.array(sorted((f["tasks"][a], f["tasks"][b]) for f in front))
        ax.plot(pts[:, 0], pts[:, 1], "o-", color="C3", label="non-dominated")
        ax.set_xlabel(f"{a} (val)")
        ax.set_ylabel(f"{b} (val)")
        ax.legend(loc="lower left")
    else:
        xs = np.arange(len(tasks))
        for f in front:
            ax.plot(xs, [f["tasks"][t] for t in tasks], "-o", alpha=0.6)
        ax.set_xticks(xs, [f"{t}\n(val)" for t in tasks])
        ax.set_ylabel("accuracy")
    ax.set_title(f"Pareto front of seen tasks: {len(front)} points", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def pareto_table(summary: dict[str, Any]) -> str:
    tasks = summary["tasks"]
    lines = ["| evaluation | " + " | ".join(tasks) + " | weighted |", "|---|" + "---|" * (len(tasks) + 1)]
    for f in summary["front"]:
        cells = " | ".join(f"{f['tasks'][t]:.3f}" for t in tasks)
        lines.append(f"| {f['evaluation']} | {cells} | {f['score']:.3f} |")
    return "\n".join(lines)
