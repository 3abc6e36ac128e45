"""Turn bench JSONL records into a markdown report with statistics and PNG plots (``evogm-opt bench report``).

Fixed-budget results at k·N evaluations (k = 10, 20, 50 by default) are read from each run's trace: the state
at the last recorded count ≤ k·N, taken from the runs with the smallest budget ≥ k·N (a run given budget B is
not scored at a checkpoint above B). Each optimizer is compared with a reference (CMA-ES by default) per cell
by a two-sided Mann–Whitney U test (Holm-corrected over every comparison in the report), a paired Wilcoxon
test over shared seeds (instances), and Vargha–Delaney A12 (> 0.5: the optimizer's loss is smaller more often).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from evogm_bench import stats
from evogm_bench.runner import load_records

Cell = tuple[str, int, int]  # landscape, dim, checkpoint (evaluations)


@dataclass
class CellResults:
    sense: str
    values: dict[str, dict[int, float]] = field(default_factory=dict)  # optimizer -> seed -> true value
    losses_: dict[str, dict[int, float]] = field(default_factory=dict)  # optimizer -> seed -> loss (own optimum)

    def add(self, optimizer: str, seed: int, value: float, optimum: float) -> None:
        self.values.setdefault(optimizer, {})[seed] = value
        self.losses_.setdefault(optimizer, {})[seed] = stats.loss(value, optimum, self.sense)

    def losses(self, optimizer: str, seeds: Sequence[int] | None = None) -> np.ndarray:
        runs = self.losses_.get(optimizer, {})
        keys = sorted(runs) if seeds is None else seeds
        return np.array([runs[s] for s in keys])


def collect(records: Sequence[dict[str, Any]], checkpoints: Sequence[int] = (10, 20, 50)) -> dict[Cell, CellResults]:
    """Fixed-budget true values of the recommendation, per cell and optimizer (one value per seed)."""
    budgets: dict[tuple[str, str, int], set[int]] = defaultdict(set)
    for r in records:
        budgets[(r["optimizer"], r["landscape"], r["dim"])].add(r["budget"])
    cells: dict[Cell, CellResults] = {}
    for r in records:
        if not r.get("trace"):
            continue
        for k in checkpoints:
            c = k * r["dim"]
            eligible = [b for b in budgets[(r["optimizer"], r["landscape"], r["dim"])] if b >= c]
            if not eligible or r["budget"] != min(eligible):
                continue
            value = stats.value_at(r, c)
            if value is None:
                continue
            cell = cells.setdefault((r["landscape"], r["dim"], c), CellResults(r["sense"]))
            cell.add(r["optimizer"], r["seed"], value, r["optimum_value"])
    return cells


def load_cells(
    paths: Sequence[str | Path],
    prefixes: Sequence[str] = ("",),
    seeds: range | None = None,
    checkpoints: Sequence[int] = (10, 20),
) -> dict[Cell, CellResults]:
    """The cells of the records in ``paths`` whose landscape starts with one of ``prefixes``, optionally on a range
    of seeds only (so optimizers run on different seed counts are compared on the same instances)."""
    records = [r for path in paths for r in load_records(Path(path)) if r["landscape"].startswith(tuple(prefixes))]
    if seeds is not None:
        records = [r for r in records if r["seed"] in seeds]
    return collect(records, checkpoints=checkpoints)


def seed_range(text: str) -> range:
    """``"A:B"`` → seeds A … B−1 (an argparse type for the commands that read records)."""
    first, last = (int(v) for v in text.split(":"))
    return range(first, last)


@dataclass
class Comparison:
    a12: float
    p_mw: float
    p_wilcoxon: float
    p_holm: float = 1.0

    @property
    def verdict(self) -> str:
        if self.p_holm >= 0.05:
            return ""
        return "▲" if self.a12 > 0.5 else "▼"


def compare(
    cells: dict[Cell, CellResults], optimizers: Sequence[str], reference: str
) -> dict[tuple[Cell, str], Comparison]:
    """Every optimizer against the reference in every cell where both ran; Holm over all of them."""
    out: dict[tuple[Cell, str], Comparison] = {}
    for cell, res in cells.items():
        if reference not in res.values:
            continue
        for name in optimizers:
            if name == reference or name not in res.values:
                continue
            x, y = res.losses(name), res.losses(reference)
            shared = sorted(set(res.values[name]) & set(res.values[reference]))
            p_w = stats.wilcoxon_paired(res.losses(name, shared), res.losses(reference, shared)) if shared else 1.0
            out[(cell, name)] = Comparison(stats.a12(x, y), stats.mann_whitney(x, y), p_w)
    keys = list(out)
    for key, p in zip(keys, stats.holm([out[k].p_mw for k in keys])):
        out[key].p_holm = float(p)
    return out


def _fmt_values(res: CellResults, name: str) -> str:
    if name not in res.values:
        return "—"
    if res.sense == "min":  # BBOB: log10 of the precision f − f_opt (floored at 1e-8)
        v = np.log10(np.maximum(res.losses(name), 1e-8))
    else:
        v = np.array(list(res.values[name].values()))
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return f"{med:.3f} [{q1:.3f}, {q3:.3f}]" if res.sense == "max" else f"{med:.2f} [{q1:.2f}, {q3:.2f}]"


def _best_median(res: CellResults, optimizers: Sequence[str]) -> set[str]:
    meds = {o: float(np.median(res.losses(o))) for o in optimizers if o in res.values}
    if not meds:
        return set()
    lo = min(meds.values())
    return {o for o, m in meds.items() if m <= lo + 1e-12}


def column_order(names: Iterable[str]) -> list[str]:
    """One column order for every table and plot: the bench's peer table order, then other names (variants) sorted."""
    from evogm_bench.peers import PEERS

    known = list(PEERS)  # the exact names, in registration order
    names = set(names)
    return [n for n in known if n in names] + sorted(names - set(known))


def markdown_report(
    records: Sequence[dict[str, Any]],
    optimizers: Sequence[str] | None = None,
    reference: str = "cmaes",
    checkpoints: Sequence[int] = (10, 20, 50),
    random_name: str = "random",
) -> str:
    optimizers = list(optimizers or column_order({r["optimizer"] for r in records}))
    cells = collect(records, checkpoints)
    present = {r["optimizer"] for r in records}
    if reference in present:
        comparisons = compare(cells, optimizers, reference)
        against = (
            f"▲/▼: significantly better/worse than `{reference}` (two-sided Mann–Whitney, Holm over "
            f"{len(comparisons)} comparisons, α = 0.05)."
        )
    else:
        comparisons = {}
        against = (
            f"No comparisons: the reference `{reference}` has no records here (choose one of "
            f"{', '.join(column_order(present))} with --reference)."
        )
    lines = [
        "Values: the true value of each optimizer's recommendation, median [IQR] over seeds — accuracy for merge-like "
        "landscapes (higher is better), log10(f − f_opt) for BBOB (lower is better). **Bold**: best median. " + against,
        "",
        "| landscape | N | evals | " + " | ".join(optimizers) + " |",
        "|---|---|---|" + "---|" * len(optimizers),
    ]
    for cell in sorted(cells, key=lambda c: (c[0], c[1], c[2])):
        res = cells[cell]
        best = _best_median(res, optimizers)
        row = [cell[0], str(cell[1]), str(cell[2])]
        for name in optimizers:
            text = _fmt_values(res, name)
            if name in best:
                text = f"**{text}**"
            comp = comparisons.get((cell, name))
            row.append(text + (f" {comp.verdict}" if comp and comp.verdict else ""))
        lines.append("| " + " | ".join(row) + " |")
    seeds = sorted({len(v) for res in cells.values() for v in res.values.values()})
    lines += ["", f"Seeds per cell: {', '.join(map(str, seeds)) or '—'}.", ""]
    lines += _summary(cells, comparisons, optimizers, reference, checkpoints, random_name)
    if comparisons:
        lines += _effect_sizes(cells, comparisons, optimizers, reference)
    lines += _ecdf_table(records, optimizers)
    return "\n".join(lines) + "\n"


def _summary(cells, comparisons, optimizers, reference, checkpoints, random_name) -> list[str]:
    lines = [
        "### Summary per budget",
        "",
        f"Best median: cells where the optimizer has the best (or tied best) median. vs `{reference}`: cells "
        f"significantly better / worse (Holm). Score: mean Bayesmark-style normalised score (100 = optimum, "
        f"0 = mean of `{random_name}` in the same cell; higher is better).",
        "",
        "| evals | optimizer | best median | vs "
        + reference
        + " ▲ / ▼ | median better than "
        + reference
        + " | score |",
        "|---|---|---|---|---|---|",
    ]
    for k in checkpoints:
        group = {c: r for c, r in cells.items() if c[2] == k * c[1]}
        if not group:
            continue
        for name in optimizers:
            ran = [c for c in group if name in group[c].values]
            if not ran:
                continue
            wins = sum(name in _best_median(group[c], optimizers) for c in ran)
            up = sum(comparisons.get((c, name), Comparison(0.5, 1, 1)).verdict == "▲" for c in ran)
            down = sum(comparisons.get((c, name), Comparison(0.5, 1, 1)).verdict == "▼" for c in ran)
            with_ref = [c for c in ran if reference in group[c].values]
            better = sum(np.median(group[c].losses(name)) < np.median(group[c].losses(reference)) for c in with_ref)
            scores = [
                stats.normalised_score(group[c].losses(name), group[c].losses(random_name))
                for c in ran
                if random_name in group[c].values
            ]
            score = f"{np.nanmean(scores):.1f}" if scores else "—"
            vs = f"{up} / {down}" if name != reference and comparisons else "—"
            ratio = f"{better}/{len(with_ref)}" if name != reference and with_ref else "—"
            lines.append(f"| {k}·N | {name} | {wins}/{len(ran)} | {vs} | {ratio} | {score} |")
    return [*lines, ""]


def _effect_sizes(cells, comparisons, optimizers, reference) -> list[str]:
    others = [o for o in optimizers if o != reference]
    if not comparisons:
        return []
    lines = [
        f"### Effect sizes against `{reference}`",
        "",
        "A12 (probability that the optimizer's loss is smaller than the reference's; 0.5 = no difference), with "
        "the Holm-adjusted Mann–Whitney p and the paired Wilcoxon p (same seeds = same instances, unadjusted).",
        "",
        "| landscape | N | evals | " + " | ".join(others) + " |",
        "|---|---|---|" + "---|" * len(others),
    ]
    for cell in sorted(cells):
        row = [cell[0], str(cell[1]), str(cell[2])]
        for name in others:
            comp = comparisons.get((cell, name))
            row.append("—" if comp is None else f"{comp.a12:.2f} (p={comp.p_holm:.2g}, w={comp.p_wilcoxon:.2g})")
        lines.append("| " + " | ".join(row) + " |")
    return [*lines, ""]


def _ecdf_table(records, optimizers) -> list[str]:
    bbob = [r for r in records if r["sense"] == "min" and r.get("trace")]
    if not bbob:
        return []
    groups: dict[tuple[str, int, int], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in bbob:
        suite = r["landscape"].split("-")[0]
        groups[(suite, r["dim"], r["budget"])][r["optimizer"]].append(r)
    lines = [
        "### BBOB: area under the runtime ECDF",
        "",
        "Fraction of (run, target) pairs reached by the best evaluated value, targets 10^2 … 10^-8 (51), averaged "
        "over log-spaced evaluation counts up to the budget, all functions of the suite pooled (higher is better).",
        "",
        "| suite | N | budget | functions | " + " | ".join(optimizers) + " |",
        "|---|---|---|---|" + "---|" * len(optimizers),
    ]
    for (suite, dim, budget), by_opt in sorted(groups.items()):
        n_functions = len({r["landscape"] for rs in by_opt.values() for r in rs})
        row = [suite, str(dim), str(budget), str(n_functions)]
        for name in optimizers:
            rs = by_opt.get(name)
            row.append(f"{stats.ecdf_area(rs, budget):.3f}" if rs else "—")
        lines.append("| " + " | ".join(row) + " |")
    return [*lines, ""]


def plots(records: Sequence[dict[str, Any]], out_dir: Path, optimizers: Sequence[str] | None = None) -> list[Path]:
    """Convergence (median + IQR of the recommendation's true value vs evaluations, log-x) and fixed-budget violin
    plots (at the largest budget), one PNG of each per landscape with one panel per dimension."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    optimizers = list(optimizers or column_order({r["optimizer"] for r in records}))
    out_dir.mkdir(parents=True, exist_ok=True)
    by_landscape: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r.get("trace"):
            by_landscape[r["landscape"]].append(r)
    written = []
    palette = plt.get_cmap("tab10" if len(optimizers) <= 10 else "tab20")
    colours = {name: palette(i % palette.N) for i, name in enumerate(optimizers)}
    for landscape, rs in sorted(by_landscape.items()):
        dims = sorted({r["dim"] for r in rs})
        sense = rs[0]["sense"]
        ylabel = "true accuracy of recommendation" if sense == "max" else "log10(f − f_opt) of recommendation"
        fig, axes = plt.subplots(1, len(dims), figsize=(6.4 * len(dims), 4.8), squeeze=False)
        vfig, vaxes = plt.subplots(1, len(dims), figsize=(6.4 * len(dims), 4.8), squeeze=False)
        for ax, vax, dim in zip(axes[0], vaxes[0], dims):
            budget = max(r["budget"] for r in rs if r["dim"] == dim)
            grid = np.unique(np.round(np.geomspace(1, budget, 60)).astype(int))
            violin_data, violin_names = [], []
            for name in optimizers:
                runs = [r for r in rs if r["dim"] == dim and r["optimizer"] == name and r["budget"] == budget]
                if not runs:
                    continue
                curves = np.array([[_plot_value(r, g) for g in grid] for r in runs], dtype=float)
                with warnings.catch_warnings():  # before a peer's first recorded state every run is NaN
                    warnings.simplefilter("ignore", RuntimeWarning)
                    q1, med, q3 = np.nanpercentile(curves, [25, 50, 75], axis=0)
                ax.plot(grid, med, label=f"{name} (median ± IQR, {len(runs)} seeds)", color=colours[name])
                ax.fill_between(grid, q1, q3, alpha=0.2, color=colours[name])
                violin_data.append([v for v in curves[:, -1] if np.isfinite(v)])
                violin_names.append(name)
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(ScalarFormatter())  # 10, 20, 50, … instead of overlapping 3×10¹ labels
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"{landscape}, N={dim}: median and IQR over seeds")
            ax.set_xlabel("evaluations")
            ax.set_ylabel(ylabel)
            if violin_data:
                vax.violinplot(violin_data, showmedians=True)
                vax.set_xticks(range(1, len(violin_names) + 1), violin_names, rotation=45, ha="right")
            vax.set_title(f"{landscape}, N={dim}, after {budget} evaluations (one violin per optimizer)")
            vax.set_ylabel(ylabel)
        axes[0][-1].legend(fontsize=7, loc="best")
        for figure, kind in ((fig, "convergence"), (vfig, "violins")):
            figure.tight_layout()
            path = out_dir / f"{kind}-{landscape}.png"
            figure.savefig(path, dpi=110)
            plt.close(figure)
            written.append(path)
    return written


def _plot_value(record: dict[str, Any], evals: int) -> float:
    value = stats.value_at(record, evals)
    if value is None:
        return np.nan
    if record["sense"] == "min":
        return float(np.log10(max(value - record["optimum_value"], 1e-8)))
    return float(value)
