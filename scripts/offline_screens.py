"""Offline screens of surrogate mechanisms that did not earn a setting (docs/research.md, ablation 19).

Why a script and not a setting: a mechanism that loses its first screen should not add a knob to the core, but
its numbers must still be reproducible. Each variant here patches the default optimizer in the worker process,
runs the merge-like suite with the bench's own runner (same landscapes, seeds and observation noise as
``evogm-opt bench``), and records the true value of the recommendation at 10·N and 20·N.

    python scripts/offline_screens.py run default --dims 4 --seeds 30 --out base.jsonl
    python scripts/offline_screens.py run ei-ascent --dims 4 --seeds 30 --out ascent.jsonl
    python scripts/offline_screens.py compare base.jsonl ascent.jsonl

Variants:
- ``default``: the unpatched default.
- ``noise-grid``: the screening GP may also call the values mostly noise (noise variances 1 and 3 added to its
  grid of 1e-3, 0.03, 0.3, against a unit signal): the marginal likelihood, not a fixed floor (ablation 18),
  decides whether chance-level bumps are signal.
- ``ei-ascent`` / ``ei-polish``: after screening, each ask climbs log expected improvement by gradient ascent
  in the box (Adam, 30 steps at rate 0.05 / 10 steps at 0.01), as Bayesian optimisers polish their
  acquisition's maximum; the generator's screened asks are the start points.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from evogm_opt.evogm.surrogate import GaussianProcess

SUITE_FUNCTIONS = (1, 7, 10, 15, 21)
ASCENT = {"ei-ascent": (30, 0.05), "ei-polish": (10, 0.01)}


def _log_expected_improvement(gp: GaussianProcess, u: torch.Tensor) -> torch.Tensor:
    """log EI of the screening GP at ``u``, differentiable in ``u`` (the log keeps far-off gradients alive)."""
    return torch.log(torch.clamp(gp._expected_improvement(u)[0], min=1e-300))


_PATCHED: list[str] = []  # the variant this process runs; a worker runs many jobs and is patched once


def _patch(variant: str) -> None:
    """Apply ``variant`` to this process, once: patched once per job, the ascent's wrappers nested and a run's
    result depended on the jobs before it in the same worker."""
    if _PATCHED:
        if _PATCHED != [variant]:
            raise RuntimeError(f"this process already runs {_PATCHED[0]!r}; one variant per process")
        return
    _PATCHED.append(variant)
    from evogm_opt.evogm import optimizer, surrogate

    if variant == "noise-grid":
        surrogate._NOISE_VARIANCES = (1e-3, 3e-2, 0.3, 1.0, 3.0)
    elif variant in ASCENT:
        steps, rate = ASCENT[variant]
        original = optimizer.GenerativeOptimizer._make_proposals

        def climbed(self: optimizer.GenerativeOptimizer) -> np.ndarray:
            made = original(self)
            gp = self._surrogate() if self.iteration > 0 and self.config.screening > 0 else None
            if gp is None:
                return made
            start = self._into_box(made)
            u = torch.tensor(start, dtype=torch.float64, requires_grad=True)
            adam = torch.optim.Adam([u], lr=rate)
            for _ in range(steps):
                adam.zero_grad()
                (-_log_expected_improvement(gp, u).sum()).backward()
                adam.step()
                with torch.no_grad():
                    u.clamp_(-1.0, 1.0)
            end = u.detach().numpy()
            moved = gp.expected_improvement(end) > gp.expected_improvement(start)
            out = np.where(moved[:, None], end, start)
            return self.basis.to_current(out) if self.basis.version else out

        optimizer.GenerativeOptimizer._make_proposals = climbed
    elif variant != "default":
        raise SystemExit(f"unknown variant {variant!r}; expected default, noise-grid, {', '.join(ASCENT)}")


def _one(job: tuple[str, str, int, int]) -> dict[str, Any]:
    variant, landscape, dim, seed = job
    _patch(variant)
    from evogm_bench.runner import RunSpec, run_one
    from evogm_bench.stats import value_at

    record = run_one(RunSpec("evogm", landscape, dim, 20 * dim, seed))
    out = {"variant": variant, "landscape": landscape, "dim": dim, "seed": seed}
    for k in (10, 20):
        out[f"true_{k}N"] = value_at(record, k * dim)
    return out


def run(args: argparse.Namespace) -> None:
    _patch(args.variant)  # fail on a bad name before any work starts
    landscapes = [f"merge-f{f}-{m}200" for f in SUITE_FUNCTIONS for m in "FR"]
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = [(args.variant, land, dim, s) for dim in args.dims for land in landscapes for s in seeds]
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool, open(args.out, "w") as out:
        for record in pool.imap_unordered(_one, jobs):
            out.write(json.dumps(record) + "\n")


def compare(args: argparse.Namespace) -> None:
    from evogm_bench import stats

    def load(path: str) -> dict[tuple[str, int], dict[int, dict[str, Any]]]:
        cells: dict[tuple[str, int], dict[int, dict[str, Any]]] = defaultdict(dict)
        with open(path) as lines:
            for line in lines:
                r = json.loads(line)
                cells[(r["landscape"], r["dim"])][r["seed"]] = r
        return cells

    base, other = load(args.base), load(args.other)
    higher = lower = 0
    pvalues, a12s = [], []
    if set(base) != set(other):
        print(f"note: only the {len(set(base) & set(other))} cells in both files are compared")
    for cell in sorted(set(base) & set(other), key=lambda c: (c[1], c[0])):
        seeds = sorted(set(base[cell]) & set(other[cell]))
        for k in ("true_10N", "true_20N"):
            a = np.array([base[cell][s][k] for s in seeds])
            b = np.array([other[cell][s][k] for s in seeds])
            higher += np.median(b) > np.median(a)
            lower += np.median(b) < np.median(a)
            if len(seeds) < len(base[cell]) or len(seeds) < len(other[cell]):
                print(f"note: {cell[0]} N={cell[1]}: only the {len(seeds)} seeds in both files are compared")
            p = stats.mann_whitney(a, b)
            pvalues.append(p)
            a12s.append(stats.a12(-b, -a))  # true values are maximised; a12 reads losses: > 0.5 means b is better
            print(
                f"{cell[0]:15s} N={cell[1]:2d} {k[5:]:>3s}  medians {np.median(a):.3f} → {np.median(b):.3f}  "
                f"runs < 0.5: {int(np.sum(a < 0.5)):2d} → {int(np.sum(b < 0.5)):2d}  mean diff {np.mean(b - a):+.4f}  "
                f"p = {p:.3f} (unadjusted)"
            )
    adjusted = stats.holm(pvalues)
    better = sum(q < 0.05 and a > 0.5 for q, a in zip(adjusted, a12s))
    worse = sum(q < 0.05 and a < 0.5 for q, a in zip(adjusted, a12s))
    print(f"median higher in {higher} cells, lower in {lower}; significant (Holm) better {better}, worse {worse}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("variant")
    r.add_argument("--dims", type=int, nargs="+", default=[4])
    r.add_argument("--seeds", type=int, default=30)
    r.add_argument("--first-seed", type=int, default=0)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("base")
    c.add_argument("other")
    args = parser.parse_args()
    if args.command == "run":
        run(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
