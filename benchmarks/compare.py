"""One optimizer against its peers, cell by cell, on bench records (``evogm-opt bench compare``).

A research question about a variant is nearly always the same: in how many cells (landscape × N × checkpoint) is
its median better than a peer's, or than the best of a group of peers, and where is the difference significant?
This module answers it once, on :mod:`evogm_bench.report`'s cells and :mod:`evogm_bench.stats`' tests, instead of
one script per question. Conventions (the bench's): "better" compares median *losses* (so it reads the same on
merge-like and BBOB landscapes); A12 is the probability that the optimizer's loss is the smaller; the two-sided
Mann–Whitney p is Holm-corrected over the cells of one target (or over every comparison printed, ``holm="all"``);
significantly better / worse is Holm p < 0.05 with A12 above / below 0.5.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from evogm_bench import stats
from evogm_bench.report import CellResults

ALPHA = 0.05


@dataclass(frozen=True)
class Target:
    """What the optimizer is compared with in each cell: one peer, or the best of several (the lowest median
    loss among those present in the cell; the first listed on a tie)."""

    peers: tuple[str, ...]

    @property
    def label(self) -> str:
        if len(self.peers) == 1:
            return self.peers[0]
        return "the best of " + ", ".join(self.peers) + " per cell"

    def pick(self, res: CellResults) -> str | None:
        present = [p for p in self.peers if p in res.values]
        return min(present, key=lambda p: float(np.median(res.losses(p)))) if present else None


@dataclass
class Row:
    """One cell of one target: the medians of the true values, the run counts and the test."""

    cell: Any  # a Cell of the bench, or another sortable key
    peer: str
    ours: float
    theirs: float
    n_ours: int
    n_theirs: int
    better: bool  # the optimizer's median loss is smaller
    a12: float
    p: float
    p_wilcoxon: float  # paired over the seeds both ran (a seed is the same instance for both), unadjusted
    p_holm: float = 1.0

    @property
    def verdict(self) -> str:
        if self.p_holm >= ALPHA:
            return ""
        return "better" if self.a12 > 0.5 else "worse" if self.a12 < 0.5 else ""


@dataclass
class Comparison:
    target: Target
    rows: list[Row] = field(default_factory=list)


def _median_value(res: CellResults, name: str) -> float:
    return float(np.median(list(res.values[name].values())))


def compare(
    cells: Mapping[Any, CellResults], name: str, targets: Sequence[Target], holm: str = "target"
) -> list[Comparison]:
    """``name`` against each target in every cell where both ran; Holm over each target's cells, or over all.
    Cells are keyed by anything sortable: the bench's (landscape, N, evaluations), the tuning bench's (space,
    trials)."""
    if holm not in ("target", "all"):
        raise ValueError(f"holm must be 'target' or 'all', got {holm!r}")
    out = []
    for target in targets:
        comparison = Comparison(target)
        for cell in sorted(cells):
            res = cells[cell]
            peer = target.pick(res) if name in res.values else None
            if peer is None:
                continue
            ours, theirs = res.losses(name), res.losses(peer)
            shared = sorted(set(res.values[name]) & set(res.values[peer]))
            paired = stats.wilcoxon_paired(res.losses(name, shared), res.losses(peer, shared)) if shared else 1.0
            comparison.rows.append(
                Row(
                    cell,
                    peer,
                    _median_value(res, name),
                    _median_value(res, peer),
                    len(ours),
                    len(theirs),
                    float(np.median(ours)) < float(np.median(theirs)),
                    stats.a12(ours, theirs),
                    stats.mann_whitney(ours, theirs),
                    paired,
                )
            )
        out.append(comparison)
    families = [c.rows for c in out] if holm == "target" else [[r for c in out for r in c.rows]]
    for rows in families:
        for row, p in zip(rows, stats.holm([r.p for r in rows]) if rows else []):
            row.p_holm = float(p)
    return out


def _count(rows: Sequence[Row]) -> str:
    better = sum(r.better for r in rows)
    up = sum(r.verdict == "better" for r in rows)
    down = sum(r.verdict == "worse" for r in rows)
    delta = np.mean([r.ours - r.theirs for r in rows])
    return (
        f"median better in {better}/{len(rows)} cells ({100 * better / len(rows):.0f} %); significantly better "
        f"{up}, worse {down}; mean Δ median {delta:+.4f}"
    )


def _groups(rows: Sequence[Row]) -> list[tuple[str, list[Row]]]:
    """The summary's lines: all cells, then per checkpoint (k·N), then per N."""
    by: list[tuple[str, Callable[[Row], bool]]] = [("all", lambda r: True)]
    per_dim = sorted({r.cell[2] // r.cell[1] for r in rows})
    by += [(f"{k}·N", lambda r, k=k: r.cell[2] == k * r.cell[1]) for k in per_dim]
    by += [(f"N = {d}", lambda r, d=d: r.cell[1] == d) for d in sorted({r.cell[1] for r in rows})]
    return [(label, [r for r in rows if keep(r)]) for label, keep in by]


def _power_note(rows: Sequence[Row], family_size: int) -> list[str]:
    """A line when the fewest runs of a cell cannot give a Holm p below ALPHA, however far apart the two are: "none
    significant" then says nothing about the difference."""
    n_ours, n_theirs = min(r.n_ours for r in rows), min(r.n_theirs for r in rows)
    smallest = stats.smallest_mann_whitney_p(n_ours, n_theirs)
    if smallest * family_size < ALPHA:
        return []
    return [
        f"  note: with {n_ours} and {n_theirs} runs the smallest Mann–Whitney p is {smallest:.3g}, so Holm over "
        f"{family_size} comparisons cannot reach {ALPHA}: no cell can be significant, whatever the difference"
    ]


def render(name: str, comparisons: Sequence[Comparison], holm: str = "target", per_cell: bool = True) -> str:
    """The comparisons as text: per target, one line per cell (unless ``per_cell`` is False) and a summary; with
    more than one target, the cells where the optimizer's median beats every target."""
    lines = []
    for comp in comparisons:
        family = f"its {len(comp.rows)} cells" if holm == "target" else "every comparison printed"
        lines.append(f"{name} against {comp.target.label} (Holm over {family}):")
        if not comp.rows:
            lines += ["  no cell has both", ""]
            continue
        if per_cell:
            for r in comp.rows:
                landscape, dim, evals = r.cell
                lines.append(
                    f"  {landscape:16s} N={dim:<3d} {evals // dim:>3d}·N  {name} {r.ours:.3f} (n={r.n_ours})  "
                    f"{r.peer} {r.theirs:.3f} (n={r.n_theirs})  A12={r.a12:.2f}  p={r.p:.3g}  "
                    f"Holm p={r.p_holm:.3g} {r.verdict}".rstrip()
                )
        lines += [f"  {label}: {_count(rows)}" for label, rows in _groups(comp.rows) if rows]
        family_size = len(comp.rows) if holm == "target" else sum(len(c.rows) for c in comparisons)
        lines += _power_note(comp.rows, family_size)
        lines.append("")
    if len(comparisons) > 1:
        per_target = [{r.cell: r.better for r in c.rows} for c in comparisons]
        shared = set.intersection(*(set(t) for t in per_target))
        wins = sum(all(t[cell] for t in per_target) for cell in shared)
        labels = "; ".join(c.target.label for c in comparisons)
        share = f" ({100 * wins / len(shared):.0f} %)" if shared else ""
        lines.append(f"{name}: median better than every target ({labels}) in {wins}/{len(shared)} cells{share}")
    return "\n".join(lines).rstrip("\n") + "\n"
