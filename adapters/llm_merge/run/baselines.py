"""The merges every search is reported against, and the seen/unseen × val/test table.

A searched λ only means something next to what needs no search: the base itself, each expert alone, uniform
task arithmetic (λ = 1/N), TIES at its usual settings (density 0.2, λ = 1, mergekit's normalised TIES) and DARE
(density 0.5 — each entry dropped with p = 0.5 — λ = 1/N, mergekit's L1 rescale).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llm_merge.tasks.jsonl import Task, score


@dataclass(frozen=True)
class Baseline:
    label: str
    method: str
    weights: np.ndarray
    options: dict[str, Any] = field(default_factory=dict)


def standard_baselines(expert_names: Sequence[str]) -> list[Baseline]:
    n = len(expert_names)
    out = [Baseline("base", "task_arithmetic", np.zeros(n))]
    out += [Baseline(f"expert {name}", "task_arithmetic", np.eye(n)[i]) for i, name in enumerate(expert_names)]
    out += [
        Baseline("uniform TA (λ = 1/N)", "task_arithmetic", np.full(n, 1.0 / n)),
        Baseline("TIES (density 0.2, λ = 1)", "ties", np.ones(n), {"density": 0.2}),
        Baseline("DARE (density 0.5, λ = 1/N)", "dare_linear", np.full(n, 1.0 / n), {"density": 0.5}),
    ]
    return out


def score_tasks(model, tokenizer, tasks: Mapping[str, Task], batch_size: int = 64) -> dict[str, float]:
    """Accuracy on every task split, keyed ``"name/split"``."""
    return {key: score(model, tokenizer, task, batch_size) for key, task in tasks.items()}


def summary_table(rows: Mapping[str, Mapping[str, float]], seen: Sequence[str], unseen: Sequence[str]) -> str:
    """Markdown: mean accuracy over seen / unseen tasks on each split (blank where a split is absent)."""

    def mean(row: Mapping[str, float], names: Sequence[str], split: str) -> str:
        values = [row[f"{n}/{split}"] for n in names if f"{n}/{split}" in row]
        return f"{np.mean(values):.3f}" if values else "–"

    lines = ["| model | seen val | seen test | unseen val | unseen test |", "|---|---|---|---|---|"]
    for label, row in rows.items():
        cells = [mean(row, seen, "val"), mean(row, seen, "test"), mean(row, unseen, "val"), mean(row, unseen, "test")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_task_table(rows: Mapping[str, Mapping[str, float]]) -> str:
    keys = list(next(iter(rows.values())))
    lines = ["| model | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for label, row in rows.items():
        lines.append(f"| {label} | " + " | ".join(f"{row[k]:.2f}" for k in keys) + " |")
    return "\n".join(lines)
