"""The same result for less: a multi-fidelity optimizer at a fraction of the reference's cost (``bench cost-goal``).

Issue 30's goal reads "the same final true value as the full-fidelity default for at most half of its examples".
On ``bench fidelity`` records (traces on an examples axis) that is one comparison per cell (landscape × N ×
checkpoint k·N): the optimizer's true value read where it had spent ``fraction`` of the examples the reference
spent by k·N, against the reference's at k·N. A cell *matches* when the optimizer's median true value is at most
``tolerance`` below the reference's and not significantly lower (two-sided Mann–Whitney, Holm over the cells).
The statistics are :mod:`evogm_bench.compare`'s, on cells rebuilt so that each holds the two readings. With 15–30
seeds and Holm over tens of cells, "not significantly lower" is weak evidence of sameness: the tolerance on the
medians does most of the deciding, so each cell also gets :func:`noninferiority`'s one-sided test with the
tolerance as margin (docs/benchmarks.md says so beside the figures).

Only ``bench fidelity`` records are read (charged in examples, accuracies to maximise), and an optimizer's records
must share one fidelity setting: files of ablations that reuse a name with other rungs are refused, not mixed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from evogm_bench.compare import Row, Target, compare
from evogm_bench.report import Cell, CellResults, collect
from evogm_bench.runner import load_records
from evogm_bench.stats import holm
from scipy import stats


@dataclass(frozen=True)
class Goal:
    name: str  # the optimizer under test (reads at fraction · cost)
    reference: str  # read at the full cost of each checkpoint
    fraction: float = 0.5
    tolerance: float = 0.005  # in true value (accuracy for the merge suite)

    def __post_init__(self) -> None:
        if self.name == self.reference:
            raise ValueError(f"the optimizer and the reference are both {self.name!r}; name two")
        if not 0 < self.fraction < 1:
            raise ValueError(f"fraction must be between 0 and 1 (a share of the reference's cost), got {self.fraction}")

    def matches(self, row: Row) -> bool:
        """Values are accuracies to maximise (:func:`load_fidelity_records` refuses anything else)."""
        return row.ours >= row.theirs - self.tolerance and row.verdict != "worse"


def part_checkpoints(checkpoints: Sequence[int], fraction: float) -> list[int]:
    """The checkpoints k·fraction at which the optimizer is read (whole evaluations' worth per dimension)."""
    parts = [k * fraction for k in checkpoints]
    if any(abs(p - round(p)) > 1e-9 or p < 1 for p in parts):
        raise ValueError(f"fraction {fraction} of checkpoints {list(checkpoints)} is not a whole number of N each")
    return [round(p) for p in parts]


def load_fidelity_records(
    paths: Sequence[str], seeds: range | None = None, landscapes: Sequence[str] = ("",)
) -> list[dict]:
    """``bench fidelity`` records of ``paths``; a plain bench record, one to minimise, or an optimizer recorded
    under two fidelity settings (``minimum``/``eta``) in the same cell and seed is a ValueError naming it."""
    records = [r for path in paths for r in load_records(Path(path)) if r["landscape"].startswith(tuple(landscapes))]
    if seeds is not None:
        records = [r for r in records if r["seed"] in seeds]
    settings: dict[tuple, tuple] = {}
    for r in records:
        if r.get("cost") != "examples" or r["sense"] != "max":
            raise ValueError(f"{r['key']}: not a 'bench fidelity' record of accuracies (cost in examples, maximised)")
        run = (r["optimizer"], r["landscape"], r["dim"], r["seed"])
        mine = (r.get("minimum"), r.get("eta"))
        if settings.setdefault(run, mine) != mine:
            raise ValueError(
                f"{r['optimizer']} is recorded with minimum/eta {settings[run]} and {mine} for {r['landscape']} "
                f"N={r['dim']} seed {r['seed']}; give files of one setting per optimizer name"
            )
    return records


def paired_cells(
    part: Mapping[Cell, CellResults], full: Mapping[Cell, CellResults], goal: Goal, checkpoints: Sequence[int]
) -> dict[Cell, CellResults]:
    """Cells keyed by the reference's checkpoint, each holding the optimizer's values at ``fraction`` of its cost
    (from ``part``) and the reference's at its whole cost (from ``full``)."""
    out: dict[Cell, CellResults] = {}
    for (landscape, dim, evals), res in sorted(full.items()):
        if evals // dim not in checkpoints or goal.reference not in res.values:
            continue
        (k,) = part_checkpoints([evals // dim], goal.fraction)
        small = part.get((landscape, dim, k * dim))
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
    return compare_cells(goal_cells(paths, goal, checkpoints, seeds, landscapes), goal)


def compare_cells(cells: Mapping[Cell, CellResults], goal: Goal) -> list[Row]:
    (comparison,) = compare(cells, goal.name, [Target((goal.reference,))])
    return comparison.rows


def goal_cells(
    paths: Sequence[str], goal: Goal, checkpoints: Sequence[int] = (10, 20), seeds: range | None = None,
    landscapes: Sequence[str] = ("",),
) -> dict[Cell, CellResults]:  # fmt: skip
    records = load_fidelity_records(paths, seeds, landscapes)
    full = collect(records, tuple(checkpoints))
    part = collect(records, tuple(part_checkpoints(checkpoints, goal.fraction)))
    return paired_cells(part, full, goal, checkpoints)


def noninferiority(cells: Mapping[Cell, CellResults], goal: Goal) -> dict[Cell, float]:
    """Per cell, the Holm-adjusted p of a one-sided Mann–Whitney test of non-inferiority with the tolerance as
    margin: H0 "the optimizer's values are lower than the reference's by the tolerance or more", rejected when the
    optimizer's values plus the tolerance are stochastically larger than the reference's. Small p is evidence of
    sameness, which "not significantly lower" is not."""
    keys = sorted(cells)
    pvalues = []
    for cell in keys:
        ours = np.array(list(cells[cell].values[goal.name].values())) + goal.tolerance
        theirs = np.array(list(cells[cell].values[goal.reference].values()))
        pvalues.append(float(stats.mannwhitneyu(ours, theirs, alternative="greater").pvalue))
    return dict(zip(keys, (float(p) for p in holm(pvalues)))) if keys else {}


def curve(paths: Sequence[str], names: Sequence[str], checkpoints: Sequence[int], seeds: range | None = None,
          landscapes: Sequence[str] = ("",)) -> str:  # fmt: skip
    """Cost against value: per optimizer and N, the mean over landscapes of the median true value once k·N full
    evaluations' worth of examples are spent, for each k of ``checkpoints`` (the tokens-against-accuracy curve)."""
    cells = collect(load_fidelity_records(paths, seeds, landscapes), tuple(checkpoints))
    missing = [n for n in names if not any(n in res.values for res in cells.values())]
    if missing:
        raise ValueError(f"no records of {', '.join(map(repr, missing))} in these files")
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


def render(rows: Sequence[Row], goal: Goal, shown: Mapping[Cell, float] | None = None) -> str:
    """The rows and their counts; with ``shown`` (:func:`noninferiority`'s p per cell), a column and a count of the
    cells where non-inferiority is shown (Holm p < 0.05)."""
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
            + (f"  non-inferior p={shown[r.cell]:.3g}" if shown is not None else "")
        )
    groups = [("all", list(rows))]
    groups += [(f"N = {d}", [r for r in rows if r.cell[1] == d]) for d in sorted({r.cell[1] for r in rows})]
    ks = sorted({r.cell[2] // r.cell[1] for r in rows})
    groups += [(f"{k}·N", [r for r in rows if r.cell[2] == k * r.cell[1]]) for k in ks]
    for label, group in groups:
        if group:
            hits = sum(goal.matches(r) for r in group)
            worse = sum(r.verdict == "worse" for r in group)
            proven = "" if shown is None else f"; non-inferiority shown in {sum(shown[r.cell] < 0.05 for r in group)}"
            lines.append(
                f"  {label}: matches in {hits}/{len(group)} cells ({100 * hits / len(group):.0f} %); "
                f"significantly lower in {worse}{proven}"
            )
    return "\n".join(lines) + "\n"
