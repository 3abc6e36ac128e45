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


def plot_front(summary: dict[str, Any], entries: list[dict[str, Any]], path: Path, chosen: int | None = None) -> bool:
    """The front of the seen tasks' validation scores: a scatter for two tasks, parallel coordinates (coloured by
    the weighted score, one continuous colour scale) for more. ``chosen``: the evaluation number of the reported
    merge, drawn as a star / a thick black line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    tasks, front = summary["tasks"], summary["front"]
    if len(tasks) < 2 or not front:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.8))
    pick = next((f for f in front if f["evaluation"] == chosen), None)
    if len(tasks) == 2:
        _scatter_front(ax, tasks, front, entries, pick)
    else:
        _parallel_front(fig, ax, tasks, front, pick)
    ax.set_title(f"Pareto front of the seen tasks (validation): {len(front)} non-dominated merges", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _scatter_front(ax, tasks: list[str], front: list[dict], entries: list[dict], pick: dict | None) -> None:
    a, b = tasks
    every = np.array([[e["tasks"][a], e["tasks"][b]] for e in entries if e["score"] is not None])
    ax.scatter(every[:, 0], every[:, 1], s=10, alpha=0.3, label="evaluated")
    pts = np.array(sorted((f["tasks"][a], f["tasks"][b]) for f in front))
    ax.plot(pts[:, 0], pts[:, 1], "o-", color="C3", label="non-dominated")
    if pick is not None:
        ax.plot(pick["tasks"][a], pick["tasks"][b], "k*", ms=14, label=f"reported (evaluation {pick['evaluation']})")
    ax.set_xlabel(f"{a} (val)")
    ax.set_ylabel(f"{b} (val)")
    ax.legend(loc="lower left", fontsize=8)


def _parallel_front(fig, ax, tasks: list[str], front: list[dict], pick: dict | None) -> None:
    import matplotlib.pyplot as plt

    xs = np.arange(len(tasks))
    scores = np.array([f["score"] for f in front])
    norm = plt.Normalize(scores.min(), scores.max() if scores.max() > scores.min() else scores.min() + 1e-9)
    cmap = plt.get_cmap("viridis")
    for f in front:
        ax.plot(xs, [f["tasks"][t] for t in tasks], "-o", color=cmap(norm(f["score"])), alpha=0.7, lw=1, ms=3)
    if pick is not None:
        ax.plot(
            xs,
            [pick["tasks"][t] for t in tasks],
            "-o",
            color="black",
            lw=2.5,
            ms=5,
            label=f"reported (evaluation {pick['evaluation']})",
        )
        ax.legend(loc="best", fontsize=8)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="weighted score (val)")
    ax.set_xticks(xs, [f"{t}\n(val)" for t in tasks])
    ax.set_ylabel("accuracy")


def pareto_table(summary: dict[str, Any]) -> str:
    tasks = summary["tasks"]
    lines = ["| evaluation | " + " | ".join(tasks) + " | weighted |", "|---|" + "---|" * (len(tasks) + 1)]
    for f in summary["front"]:
        cells = " | ".join(f"{f['tasks'][t]:.3f}" for t in tasks)
        lines.append(f"| {f['evaluation']} | {cells} | {f['score']:.3f} |")
    return "\n".join(lines)
