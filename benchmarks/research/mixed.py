"""Research round three (docs/research.md, ablation 30): the sequential variant on a mixed tuning space, with each
categorical kept as one variable — in the surrogate and in the acquisition's moves.

Why: the integrations encode a categorical of k ≥ 3 choices as k relaxed scores decoded by argmax
(:mod:`evogm_opt.integrations.space`). A GP on those raw scores sees differences that the objective never sees
(two rows with the same choice and different scores), gives each score its own length scale, and a gradient climb
blurs the scores between choices. Here:

* told rows enter the surrogate canonical: each categorical as the one-hot of the choice that was evaluated;
* a categorical's coordinates share **one** length scale, so any two different choices are equally far apart —
  the overlap kernel that SMAC3 and Optuna's GPSampler use for categoricals;
* the acquisition climbs the numeric coordinates with the categoricals fixed, from starts whose categoricals are
  canonical, and the pool also holds the best points with one categorical *moved to another choice*; the climbed
  point is then offered every single-categorical move and keeps the best by LogEI.

Integers stay continuous coordinates (the no-repeat rule of the integrations maps a proposal to an unused
configuration). Everything else — the design, the fit, LogEI, kriging believer for batches — is the sequential
variant's. The space comes from the sampler (``GenerativeSampler.search_space``), so the optimizer is built for one
encoding; a changed space builds a new one, as the sampler already does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from evogm_bench.research.sequential import SequentialConfig, SequentialEvoGM

from evogm_opt.evogm.ard_gp import ARDGaussianProcess, maximise_log_ei
from evogm_opt.integrations.space import Categorical, SearchSpace


class MixedSpaceSequential(SequentialEvoGM):
    """:class:`SequentialEvoGM` that knows the encoding ``space`` of its box (see the module docstring)."""

    name = "evogm-sequential-mixed"

    def __init__(
        self,
        space: SearchSpace,
        *,
        seed: int | None = None,
        maximize: bool = False,
        max_evals: int | None = None,
        config: SequentialConfig | None = None,
        active: Callable[[dict[str, Any]], frozenset[str] | None] | None = None,
    ) -> None:
        """``active``: the parameters a configuration uses, from its values (None where not known); with it,
        the coordinates of parameters a row does not use are told, offered and climbed at 0 (ablation 31)."""
        if space.dim == 0:
            raise ValueError("the mixed-space variant needs a space with at least one coordinate")
        super().__init__(space.dim, (-1.0, 1.0), seed=seed, maximize=maximize, max_evals=max_evals, config=config)
        self.space = space
        # each categorical: its coordinates and the canonical row piece of each choice
        self.categoricals: list[tuple[slice, np.ndarray]] = [
            (space.slices[name], np.array([p.to_unit(c) for c in p.choices]))
            for name, p in space.params.items()
            if isinstance(p, Categorical) and p.width > 0
        ]
        self.categorical_mask = np.zeros(space.dim, dtype=bool)
        scale_of, scale = np.empty(space.dim, dtype=int), 0
        for name in space.params:
            s = space.slices[name]
            width = s.stop - s.start
            if isinstance(space.params[name], Categorical):
                scale_of[s] = scale  # one shared length scale: one variable
                self.categorical_mask[s] = True
                scale += width > 0
            else:
                scale_of[s] = np.arange(scale, scale + width)
                scale += width
        self.scale_of = scale_of
        self.active = active

    def canonical(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` with each categorical replaced by the one-hot of its argmax (ties to the first choice, as the
        space's deterministic decoding does). A categorical that a trial did not use (conditional) is made a
        choice too — a false signal for the surrogate; none of the bench's tuning spaces has a conditional
        categorical, and the inactive coordinates of numeric parameters are ablation 30's open question."""
        rows = np.array(rows, dtype=float, copy=True)
        for s, table in self.categoricals:
            piece = rows[:, s]
            if table.shape[1] == 1:  # two choices: the sign of one coordinate
                choice = (piece[:, 0] > 0).astype(int)
            else:
                choice = np.argmax(piece, axis=1)
            rows[:, s] = table[choice]
        return rows

    def unused(self, rows: np.ndarray) -> np.ndarray:
        """Per row, a mask of the coordinates of parameters that row's configuration does not use (all False
        without ``active``, or where the configuration's branch has not been seen)."""
        mask = np.zeros(np.shape(rows), dtype=bool)
        if self.active is None:
            return mask
        for i, row in enumerate(rows):
            used = self.active(self.space.decode(row)[0])
            if used is not None:
                for name, s in self.space.slices.items():
                    mask[i, s] = name not in used
        return mask

    def neutral(self, rows: np.ndarray) -> np.ndarray:
        """Canonical rows with unused parameters' coordinates at 0: an inactive parameter carries no signal, and a
        GP that saw it vary would read a flat branch (a linear SVM's gamma) as unexplored."""
        rows = self.canonical(rows)
        return np.where(self.unused(rows), 0.0, rows)

    def moves(self, rows: np.ndarray) -> np.ndarray:
        """Every row of ``rows`` with one categorical set to each of its other choices (canonical rows in)."""
        out = []
        for s, table in self.categoricals:
            for piece in table:
                moved = rows.copy()
                moved[:, s] = piece
                out.append(moved[np.any(rows[:, s] != piece, axis=1)])
        return np.concatenate(out) if out else np.empty((0, self.dim))

    # ------------------------------------------------------------------ the sequential variant's seams
    def surrogate_rows(self, unit: np.ndarray) -> np.ndarray:
        return self.neutral(unit)

    def fit_gp(self, y: np.ndarray) -> ARDGaussianProcess:
        return ARDGaussianProcess(
            self.told_u, y, warm=self.gp_warm, mode_start=self.config.fit_from_mode, scale_of=self.scale_of
        )

    def pool(self, y: np.ndarray) -> np.ndarray:
        best = self.told_u[np.argsort(y, kind="stable")[:5]]
        return self.neutral(np.concatenate([super().pool(y), self.moves(best)]))

    def maximise(self, gp: ARDGaussianProcess, pool: np.ndarray) -> np.ndarray:
        cfg = self.config
        point, value = maximise_log_ei(
            gp,
            pool,
            n_starts=cfg.n_starts,
            maxiter=cfg.climb_iterations,
            incumbent_rule=cfg.incumbent,
            fixed=lambda starts: self.categorical_mask | self.unused(starts),
        )
        moved = self.neutral(self.moves(point[None]))
        if len(moved):
            with torch.no_grad():
                scores = gp.log_ei(torch.as_tensor((moved + 1.0) / 2.0), gp.incumbent(cfg.incumbent)).numpy()
            if scores.max() > value:
                point = moved[int(np.argmax(scores))]
        return point

    def describe(self) -> str:
        return f", space={list(self.space.params)}" + super().describe()

    def state_dict(self) -> dict[str, Any]:
        # its constructor takes the search space, which a checkpoint's plain data does not rebuild
        raise NotImplementedError(f"{self.name} is a research sampler without exact resume; it writes no checkpoint")


def sampler_factory(config: SequentialConfig, conditional: bool = False) -> Any:
    """A ``GenerativeSampler`` over the mixed-space variant: the optimizer is built from the sampler's own
    encoding each time the sampler (re)builds it. ``conditional``: the sampler also learns which parameters each
    branch of the space uses (:class:`BranchRecordingSampler`) and the optimizer neutralises the others."""
    from evogm_opt.integrations.optuna import GenerativeSampler

    def build(seed: int) -> GenerativeSampler:
        def factory(dim: int, optimizer_seed: int | None, maximize: bool) -> MixedSpaceSequential:
            space = sampler.search_space  # set by the sampler just before it calls this factory
            if space.dim != dim:
                raise RuntimeError(f"the sampler's encoding has {space.dim} coordinates, the factory was asked {dim}")
            active = sampler.used_by if conditional else None
            return MixedSpaceSequential(space, seed=optimizer_seed, maximize=maximize, config=config, active=active)

        sampler = (branch_recording_sampler() if conditional else GenerativeSampler)(
            seed=seed, optimizer_factory=factory
        )
        return sampler

    return build


def branch_recording_sampler() -> type:
    """``GenerativeSampler`` that remembers, from each completed trial (Optuna's public ``after_trial``), which
    parameters a configuration with those categorical choices uses — the conditional structure, learnt as the
    sampler's users define it, by running their objective."""
    import optuna

    from evogm_opt.integrations.optuna import GenerativeSampler

    class BranchRecordingSampler(GenerativeSampler):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.branches: dict[tuple[tuple[str, str], ...], frozenset[str]] = {}

        def branch(self, values: dict[str, Any], names: Any) -> tuple[tuple[str, str], ...]:
            space = self.search_space.params
            return tuple(
                sorted((n, repr(values[n])) for n in names if n in values and isinstance(space.get(n), Categorical))
            )

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            super().after_trial(study, trial, state, values)
            if state == optuna.trial.TrialState.COMPLETE:
                self.branches[self.branch(trial.params, trial.params)] = frozenset(trial.params)

        def used_by(self, values: dict[str, Any]) -> frozenset[str] | None:
            """The parameters a configuration with ``values``' categorical choices used, if such a one completed
            (a branch is keyed by the choices of the categoricals that configuration used)."""
            for used in self.branches.values():
                if self.branches.get(self.branch(values, used)) == used:
                    return used
            return None

    return BranchRecordingSampler
