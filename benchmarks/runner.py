"""Run optimizers × landscapes × dims × budgets × seeds, one JSONL record per run, resumable, in parallel."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from evogm_bench.landscapes import make_landscape
from evogm_bench.peers import PEERS


@dataclass(frozen=True)
class RunSpec:
    optimizer: str
    landscape: str
    dim: int
    budget: int
    seed: int

    @property
    def key(self) -> str:
        return f"{self.optimizer}|{self.landscape}|{self.dim}|{self.budget}|{self.seed}"


def run_one(spec: RunSpec) -> dict[str, Any]:
    """One optimisation run; records best-seen and the true/test value of the recommendation per generation."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one run per process; the processes already use the cores
    try:
        return _run(spec)
    finally:
        torch.set_num_threads(threads)


def _run(spec: RunSpec) -> dict[str, Any]:
    landscape = make_landscape(spec.landscape, spec.dim, instance=spec.seed)
    opt = PEERS[spec.optimizer](spec.dim, spec.seed, spec.budget)
    noise_rng = np.random.default_rng([spec.seed, 99])
    trace: list[dict[str, float]] = []
    overhead = 0.0
    start = time.perf_counter()
    while opt.n_evals < spec.budget:
        t0 = time.perf_counter()
        x = opt.ask(min(opt.popsize, spec.budget - opt.n_evals))
        overhead += time.perf_counter() - t0
        y = landscape.observe(x, noise_rng)
        t0 = time.perf_counter()
        opt.tell(x, y)
        overhead += time.perf_counter() - t0
        best = opt.best
        if best is not None:
            trace.append(
                {
                    "evals": opt.n_evals,
                    "best_seen": best.y,
                    "true_of_best": float(landscape.true_value(best.x)[0]),
                    "test_of_best": float(landscape.test_value(best.x)[0]),
                }
            )
    wall = time.perf_counter() - start
    final = trace[-1] if trace else {}
    return {
        "key": spec.key,
        **asdict(spec),
        "final": final,
        "trace": trace,
        "wall_s": wall,
        "overhead_s": overhead,
        "stop_reason": opt.stop_reason,
        "optimum_true_value": float(landscape.true_value(landscape.x_opt)[0]),
    }


def finished_keys(path: Path) -> set[str]:
    if not path.exists():
        return set()
    keys = set()
    for line in path.read_text().splitlines():
        try:
            keys.add(json.loads(line)["key"])
        except (json.JSONDecodeError, KeyError):
            continue  # a torn last line from an interrupted run: that run is simply redone
    return keys


def run_grid(
    specs: Iterable[RunSpec], out: Path, workers: int | None = None, progress: bool = True
) -> list[dict[str, Any]]:
    """Run every spec not already in ``out``; append each record as soon as it finishes."""
    from tqdm import tqdm

    out.parent.mkdir(parents=True, exist_ok=True)
    done = finished_keys(out)
    todo = [s for s in specs if s.key not in done]
    workers = workers or max(1, min(len(todo), os.cpu_count() or 1))
    records = []
    with out.open("a") as fh, tqdm(total=len(todo), disable=not progress, desc="bench runs") as bar:
        if workers == 1:
            iterator: Iterable[Any] = (run_one(s) for s in todo)
            for record in iterator:
                fh.write(json.dumps(record) + "\n")
                fh.flush()
                records.append(record)
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(run_one, s) for s in todo]
                for future in as_completed(futures):
                    record = future.result()
                    fh.write(json.dumps(record) + "\n")
                    fh.flush()
                    records.append(record)
                    bar.update()
    return records


def load_records(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def summary_table(records: list[dict[str, Any]], optimizers: list[str]) -> str:
    """Markdown, one row per landscape × dim × budget: median [IQR] of the true accuracy of each recommendation."""
    cells: dict[tuple[str, int, int], dict[str, list[float]]] = {}
    for r in records:
        if r["optimizer"] in optimizers and r.get("final"):
            cells.setdefault((r["landscape"], r["dim"], r["budget"]), {}).setdefault(r["optimizer"], []).append(
                r["final"]["true_of_best"]
            )
    lines = [
        "| landscape | N | budget | " + " | ".join(optimizers) + " |",
        "|---|---|---|" + "---|" * len(optimizers),
    ]
    for landscape, dim, budget in sorted(cells):
        row = [landscape, str(dim), str(budget)]
        for name in optimizers:
            vals = cells[(landscape, dim, budget)].get(name)
            if not vals:
                row.append("—")
                continue
            q1, med, q3 = np.percentile(vals, [25, 50, 75])
            row.append(f"{med:.3f} [{q1:.3f}, {q3:.3f}]")
        lines.append("| " + " | ".join(row) + " |")
    seeds = sorted({len(v) for c in cells.values() for v in c.values()})
    lines.append(f"\nseeds per cell: {', '.join(map(str, seeds))}")
    return "\n".join(lines)
