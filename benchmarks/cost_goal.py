"""The same result for less: a multi-fidelity optimizer at a fraction of the reference's cost (``bench cost-goal``).

Issue 30's goal reads "the same final true value as the full-fidelity default for at most half of its examples".
On ``bench fidelity`` records (traces on an examples axis) that is one comparison per cell (landscape × N ×
checkpoint k·N): the optimizer's true value read where it had spent ``fraction`` of the examples the reference
spent by k·N, against the reference's at k·N. A cell *matches* when the optimizer's median true value is at most
``tolerance`` below the reference's and not significantly lower (two-sided Mann–Whitney, Holm over the cells).
The statistics are :mod:`evogm_bench.compare`'s, on cells rebuilt so that each holds the two readings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from evogm_bench.compare import Row, Target, compare
from evogm_bench.report import Cell, CellResults, load_cells


@dataclass(frozen=True)
class Goal:
    name: str  # the optimizer under test (reads at fraction · cost)
    reference: str  # read at the full cost of each checkpoint
    fraction: float = 0.5
    tolerance: float = 0.005  # in true value (accuracy for the merge suite)

    def matches(self, row: Row) -> bool:
        return row.ours >= row.theirs - self.tolerance and row.verdict != "worse"


def part_checkpoints(checkpoints: Sequence[int], fraction: float) -> list[int]:
    """The checkpoints k·fraction at which the optimizer is read (whole evaluations' worth per dimension)."""
    parts = [k * fraction for k in checkpoints]
    if any(p != int(p) or p < 1 for p in parts):
        raise ValueError(f"fraction {fraction} of checkpoints {list(checkpoints)} is not a whole number of N each")
    return [int(p) for p in parts]


def paired_cells(
    part: Mapping[Cell, CellResults], full: Mapping[Cell, CellResults], goal: Goal, checkpoints: Sequence[int]
) -> dict[Cell, CellResults]:
    """Cells keyed by the reference's checkpoint, each holding the optimizer's values at ``fraction`` of its cost
    (from ``part``) and the reference's at its whole cost (from ``full``)."""
    out: dict[Cell, CellResults] = {}
    for (landscape, dim, evals), res in sorted(full.items()):
        if evals // dim not in checkpoints or goal.reference not in res.values:
            continue
        small = part.get((landscape, dim, int(evals * goal.fraction)))
        if small is None or goal.name not in small.values:
            continue
        cell = CellResults(res.sense)
        for name, source in ((goal.reference, res), (goal.name, small)):
            cell.values[name], cell.losses_[name] = source.values[name], source.losses_[name]
        out[(landscape, dim, evals)] = cell
    return out


def evaluate(
    paths: Sequence[str], goal: Goal, checkpoints: Sequence[int] = (10, 20), seeds: range | None = None,
    landscapes: Sequence[str] = ("",),
) -> list[Row]:  # fmt: skip
    """One row per cell: the optimizer at ``fraction`` of the cost against the reference at all of it."""
    full = load_cells(paths, landscapes, seeds, tuple(checkpoints))
    part = load_cells(paths, landscapes, seeds, tuple(part_checkpoints(checkpoints, goal.fraction)))
    (comparison,) = compare(paired_cells(part, full, goal, checkpoints), goal.name, [Target((goal.reference,))])
    return comparison.rows


def curve(paths: Sequence[str], names: Sequence[str], checkpoints: Sequence[int], seeds: range | None = None,
          landscapes: Sequence[str] = ("",)) -> str:  # fmt: skip
    """Cost against value: per optimizer and N, the mean over landscapes of the median true value once k·N full
    evaluations' worth of examples are spent, for each k of ``checkpoints`` (the tokens-against-accuracy curve)."""
    cells = load_cells(paths, landscapes, seeds, tuple(checkpoints))
    dims = sorted({dim for _, dim, _ in cells})
    head = "| optimizer | N | " + " | ".join(f"{k}·N" for k in checkpoints) + " |"
    lines = [head, "|---|---|" + "---|" * len(checkpoints)]
    for name in names:
        for dim in dims:
            means = []
            for k in checkpoints:
                medians = [
                    float(np.median(list(res.values[name].values())))
                    for (_, d, evals), res in cells.items()
                    if d == dim and evals == k * dim and name in res.values
                ]
                means.append(f"{np.mean(medians):.3f} ({len(medians)})" if medians else "–")
            lines.append(f"| {name} | {dim} | " + " | ".join(means) + " |")
    return "\n".join(lines) + "\n"


def render(rows: Sequence[Row], goal: Goal) -> str:
    pct = f"{100 * goal.fraction:g} %"
    lines = [
        f"{goal.name} at {pct} of the cost against {goal.reference} at all of it (a cell matches: median at most "
        f"{goal.tolerance:g} lower and not significantly lower, Mann–Whitney with Holm over {len(rows)} cells):"
    ]
    for r in rows:
        landscape, dim, evals = r.cell
        lines.append(
            f"  {landscape:16s} N={dim:<3d} {evals // dim:>3d}·N  {goal.name} {r.ours:.3f} (n={r.n_ours})  "
            f"{goal.reference} {r.theirs:.3f} (n={r.n_theirs})  Δ={r.ours - r.theirs:+.4f}  A12={r.a12:.2f}  "
            f"Holm p={r.p_holm:.3g}  {'match' if goal.matches(r) else 'MISS'} {r.verdict}".rstrip()
        )
    groups = [("all", list(rows))]
    groups += [(f"N = {d}", [r for r in rows if r.cell[1] == d]) for d in sorted({r.cell[1] for r in rows})]
    ks = sorted({r.cell[2] // r.cell[1] for r in rows})
    groups += [(f"{k}·N", [r for r in rows if r.cell[2] == k * r.cell[1]]) for k in ks]
    for label, group in groups:
        if group:
            hits = sum(goal.matches(r) for r in group)
            worse = sum(r.verdict == "worse" for r in group)
            lines.append(
                f"  {label}: matches in {hits}/{len(group)} cells ({100 * hits / len(group):.0f} %); "
                f"significantly lower in {worse}"
            )
    return "\n".join(lines) + "\n"
