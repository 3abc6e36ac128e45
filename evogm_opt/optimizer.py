"""``GenerativeOptimizer``: EvoGM (ICML 2026, arXiv 2605.29295) as an ask/tell optimizer.

Example::

    import numpy as np
    from evogm_opt import GenerativeOptimizer

    opt = GenerativeOptimizer(dim=4, seed=0, max_evals=80)
    while not opt.stop():
        X = opt.ask()
        opt.tell(X, [float(np.sum((x - 0.3) ** 2)) for x in X])
    print(opt.best.x, opt.best.y)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from evogm_opt.base import Best, Optimizer
from evogm_opt.basis import Basis
from evogm_opt.bounds import BoundsLike, clip_into_unit_box, reflect_into_unit_box
from evogm_opt.config import EvoGMConfig, resolve
from evogm_opt.generator import GeneratorPair
from evogm_opt.surrogate import GaussianProcess

BasisHook = Callable[[np.ndarray], None]


class GenerativeOptimizer(Optimizer):
    """EvoGM: a learned loser→winner generator replaces mutation; rounds end with a basis shift.

    One *round* (paper Alg. 1) is an initial population followed by T *iterations*; each iteration splits the
    round's history H into winners (top ρ) and losers, trains the generators, proposes ``G_lw(population)`` and
    keeps the best P of H as the next population. A generation is complete once ``popsize`` results have been
    told, whatever mix of asked and external rows they are.

    Coordinates: the optimizer searches *current* coordinates c ∈ [-1, 1]^dim. A point is evaluated at
    u = c @ B in the original normalised box and returned to the user as x = centre + u ⊙ half_width. After a
    basis shift the rows of B are the round's top-dim points, so c @ B can leave the box; such effective
    coefficients are brought back before they are returned, by the config's ``boundary`` rule: ``"clip"``
    (the paper presets: projected per coordinate, the generator keeps learning in its own c) or ``"reflect"``
    (the default: mirrored at the faces, and c becomes the current coordinates of the point evaluated). Rows
    told without an ask are expressed in the current basis by least squares.

    Args:
        dim: number of coefficients (experts).
        bounds: ``(lower, upper)`` for every coordinate or an array of shape ``(dim, 2)``.
        popsize: P, default 2·dim as in the paper.
        preset: ``"default"`` (ours), ``"paper"`` (the reference), ``"paper-single-generator"``, ``"paper-no-rounds"``.
        config: an :class:`EvoGMConfig` overriding the preset entirely.
        on_basis_shift: called with the new basis (dim × dim, rows over the original normalised coordinates)
            after each shift; adapters of nonlinear merges (TIES, DARE) materialise new experts there.
    """

    def __init__(
        self,
        dim: int,
        bounds: BoundsLike = (-1.0, 1.0),
        *,
        popsize: int | None = None,
        seed: int | None = None,
        maximize: bool = False,
        max_evals: int | None = None,
        preset: str = "default",
        config: EvoGMConfig | dict[str, Any] | None = None,
        on_basis_shift: BasisHook | None = None,
    ) -> None:
        if isinstance(config, dict):
            config = EvoGMConfig.from_dict(config)
        self.config = resolve(preset, config)
        self.preset = preset if config is None else "custom"
        super().__init__(dim, bounds, popsize=popsize, seed=seed, maximize=maximize, max_evals=max_evals)
        if self.popsize < 2:
            raise ValueError("GenerativeOptimizer needs popsize >= 2 (winners and losers)")
        self.on_basis_shift = on_basis_shift
        self.round = 0
        self.iteration = 0  # 0: the round's initial population; 1..T: generator iterations
        self.basis = Basis.identity(dim)
        self.basis_version = 0
        # top rows of each shift in the coordinates they were chosen in: what adapters of nonlinear merges
        # replay to rebuild the round's experts (TIES of TIES merges is not a linear map of the originals)
        self.shift_rows: list[np.ndarray] = []
        # σ per coordinate. With noise_per_sqrt_dim the settings are lengths of the whole perturbation (≈ σ·√dim):
        # after a basis shift a perturbation of the current coordinates is a random combination of the round's
        # top points, whose length grows with √dim at a fixed σ (docs/research.md, ablation 7).
        self._noise_unit = 1.0 / np.sqrt(dim) if self.config.noise_per_sqrt_dim else 1.0
        self.noise = self.config.proposal_noise * self._noise_unit
        self.generators: GeneratorPair | None = None
        self._trained = False
        self._queue = np.empty((0, dim))
        self._batches_made = 0  # proposal batches made in the current generation
        self._told_in_generation = 0
        self._generation_rows: list[int] = []
        self._hist_c = np.empty((0, dim))
        self._hist_u = np.empty((0, dim))
        self._hist_y = np.empty(0)
        self._hist_n = np.empty(0, dtype=np.int64)  # 1-based evaluation number of each history row
        self.last_loss = float("nan")
        # (history length, basis version) -> the GP and the history rows it was fitted on
        self._surrogate_cache: tuple[tuple[int, int], GaussianProcess | None, np.ndarray] | None = None

    @property
    def payload_width(self) -> int:  # type: ignore[override]
        return 1 + self.dim  # basis version + current coordinates of the asked point

    # ------------------------------------------------------------------ proposals
    def _propose(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        while len(self._queue) < n:
            self._queue = np.concatenate([self._queue, self._make_proposals()])
        c, self._queue = self._queue[:n], self._queue[n:]
        u = self._effective(c)
        if self.config.boundary != "clip" and self.basis_version:
            c = self.basis.to_current(u)  # the coordinates of the point actually evaluated
        x = self.box.to_user(u)
        payload = np.concatenate([np.full((n, 1), float(self.basis_version)), c], axis=1)
        return x, payload

    def _effective(self, c: np.ndarray) -> np.ndarray:
        """Current coordinates → the original normalised box, folded into it by the configured ``boundary`` rule."""
        u = c if self.basis_version == 0 else self.basis.to_original(c)
        if self.config.boundary != "clip":
            return reflect_into_unit_box(u)
        return clip_into_unit_box(u)

    def _make_proposals(self) -> np.ndarray:
        self._batches_made += 1
        if self.iteration == 0:
            if self._batches_made == 1:
                return self._initial_population()
            return self.rng.uniform(-1.0, 1.0, (self.popsize, self.dim))  # asks beyond the initial population
        if not self._trained:
            self._train()
        population = self._hist_c[self._ranked()[: self.popsize]]
        proposals = self.generators.propose(population) if self.generators is not None else population.copy()
        surrogate = self._surrogate() if self.config.screening > 0 else None
        if surrogate is not None:
            proposals = self._screen(proposals, surrogate)
        elif self.noise > 0:
            proposals = np.clip(proposals + self.noise * self.rng.standard_normal(proposals.shape), -1.0, 1.0)
        if self.config.deduplicate:
            proposals = self._without_repeats(proposals)
        return proposals

    def _surrogate(self) -> GaussianProcess | None:
        """A GP on the kept history in the original box (stable across basis shifts); None if too little data."""
        return self._fitted_surrogate()[0]

    def _fitted_surrogate(self) -> tuple[GaussianProcess | None, np.ndarray]:
        """The GP and the history rows it was fitted on. Cached until the history changes, so screening and
        ``recommend`` share one fit per generation."""
        key = (len(self._hist_y), self.basis_version)
        if self._surrogate_cache is not None and self._surrogate_cache[0] == key:
            return self._surrogate_cache[1], self._surrogate_cache[2]
        finite = np.flatnonzero(np.isfinite(self._hist_y))
        model = None
        if len(finite) >= max(5, self.dim // 2 + 2):
            finite = self._window(finite, self.config.surrogate_points)
            try:
                model = GaussianProcess(self._hist_u[finite], self._hist_y[finite])
            except np.linalg.LinAlgError:
                model = None
        self._surrogate_cache = (key, model, finite)
        return model, finite

    def _window(self, rows: np.ndarray, limit: int | None) -> np.ndarray:
        """At most ``limit`` of ``rows``: the most recent ones plus the best eighth (bounded cost per generation)."""
        if limit is None or len(rows) <= limit:
            return rows
        best = rows[np.argsort(self._hist_y[rows], kind="stable")[: limit // 8]]
        return np.union1d(rows[-(limit - len(best)) :], best)

    def _screen(self, proposals: np.ndarray, surrogate: GaussianProcess) -> np.ndarray:
        """Per proposal, K noisy variants (the first noise-free); ask the one with the highest expected improvement."""
        k = self.config.screening
        noise = self.noise * self.rng.standard_normal((len(proposals), k, self.dim))
        noise[:, 0] = 0.0
        candidates = clip_into_unit_box(proposals[:, None, :] + noise)
        flat = candidates.reshape(-1, self.dim)
        u = self._effective(flat)
        if self.config.boundary == "mixed" and self.basis_version:
            # the generator's own (noise-free) proposal is projected, so a face or corner stays reachable; the
            # noisy variants are mirrored. Asked rows carry the current coordinates of the point chosen.
            own = np.arange(0, len(flat), k)
            u[own] = clip_into_unit_box(self.basis.to_original(flat[own]))
            flat = self.basis.to_current(u)
            candidates = flat.reshape(candidates.shape)
        ei, mean = surrogate.expected_improvement_and_mean(u)
        ei = ei.reshape(len(proposals), k)
        pick = np.argmax(ei, axis=1)
        chosen = candidates[np.arange(len(proposals)), pick]
        m = min(self.config.exploit_candidates, len(proposals))
        if m:  # exploitation: swap the weakest asks for the candidates the GP predicts best (not already asked)
            taken = set((np.arange(len(proposals)) * k + pick).tolist())
            best = [i for i in np.argsort(mean, kind="stable") if int(i) not in taken][:m]
            weakest = np.argsort(ei[np.arange(len(proposals)), pick], kind="stable")[:m]
            chosen[weakest] = flat[best]
        return chosen

    def recommend(self) -> Best | None:
        """With ``recommendation="posterior"``: the evaluated point with the best GP posterior mean (smoothing the
        noise of a finite validation set); otherwise, and while the GP cannot be fitted, ``best``."""
        if self.config.recommendation != "posterior" or self._best is None:
            return self._best
        surrogate, rows = self._fitted_surrogate()
        if surrogate is None:
            return self._best
        i = rows[int(np.argmin(surrogate.fitted_mean()))]
        y = float(-self._hist_y[i] if self.maximize else self._hist_y[i])
        return Best(x=self.box.to_user(self._hist_u[i : i + 1])[0], y=y, evaluation=int(self._hist_n[i]))

    def _initial_population(self) -> np.ndarray:
        """Reference hybrid init: the dim one-hots, the uniform 1/dim mix, then uniform random; cut to P."""
        k = self.dim
        rows = [np.eye(k), np.full((1, k), 1.0 / k)]
        n_random = max(0, self.popsize - k - 1)
        rows.append(self.rng.uniform(-1.0, 1.0, (n_random, k)))
        return np.concatenate(rows)[: self.popsize]

    def _without_repeats(self, proposals: np.ndarray) -> np.ndarray:
        """Re-draw proposals that repeat an evaluated point or each other (coordinates equal on a 1e-9 grid).

        Points are compared by their rounded coordinates in a hash set, so a generation costs O((P + H)·dim)
        rather than a distance scan per proposal (which dominated ask at 512 dims).
        """

        def key(row: np.ndarray) -> bytes:
            # float bytes, not int64: coordinates in a near-singular basis can exceed int64 after scaling;
            # + 0.0 makes -0.0 and 0.0 one key
            return (np.round(row * 1e9) + 0.0).tobytes()

        scale = max(self.noise, 0.05)
        seen = {key(row) for row in self._hist_c}
        out = proposals.copy()
        for i in range(len(out)):
            for _ in range(10):
                if key(out[i]) not in seen:
                    break
                out[i] = np.clip(out[i] + scale * self.rng.standard_normal(self.dim), -1.0, 1.0)
            seen.add(key(out[i]))
        return out

    def _ranked(self) -> np.ndarray:
        return np.argsort(self._hist_y, kind="stable")

    def _train(self) -> None:
        """Split H into winners (top max(1, int(ρ|H|))) and losers, and train the round's generators."""
        if self.generators is None:
            self.generators = GeneratorPair(self.dim, self.config.generator, self.rng)
        rows = self._window(np.arange(len(self._hist_y)), self.config.train_window)
        order = rows[np.argsort(self._hist_y[rows], kind="stable")]
        n_winners = max(1, int(self.config.winner_fraction * len(order)))
        winners = self._hist_c[order[:n_winners]]
        losers = self._hist_c[order[n_winners:]]
        self.last_loss = self.generators.train(winners, losers, self.rng)
        self._trained = True

    # ------------------------------------------------------------------ results
    def _observe(self, x: np.ndarray, y: np.ndarray, payload: np.ndarray, asked: np.ndarray) -> None:
        u = self.box.to_unit(x)
        c = self.basis.to_current(u)
        same_basis = asked & (payload[:, 0] == self.basis_version)
        c[same_basis] = payload[same_basis, 1:]
        start = len(self._hist_y)
        self._hist_c = np.concatenate([self._hist_c, c])
        self._hist_u = np.concatenate([self._hist_u, u])
        self._hist_y = np.concatenate([self._hist_y, y])
        self._hist_n = np.concatenate([self._hist_n, np.arange(self.n_evals - len(y) + 1, self.n_evals + 1)])
        self._generation_rows.extend(range(start, start + len(y)))
        self._told_in_generation += len(y)
        if self._told_in_generation >= self.popsize:
            self._advance()

    def _advance(self) -> None:
        """A generation's worth of results has arrived: next iteration, or end of round + basis shift."""
        if self.config.adapt_noise and self.iteration > 0 and self._generation_rows:
            top = set(self._ranked()[: self.popsize].tolist())
            success = np.mean([row in top for row in self._generation_rows])
            # 1/5th success rule (Rechenberg 1973), smooth form: σ ← σ·exp((s − 1/5)/(1 − 1/5)).
            ceiling = self.config.max_proposal_noise * self._noise_unit
            self.noise = float(np.clip(self.noise * np.exp((success - 0.2) / 0.8), 1e-3, ceiling))
        self._told_in_generation = 0
        self._generation_rows = []
        self._queue = np.empty((0, self.dim))
        self._batches_made = 0
        self._trained = False
        self.iteration += 1
        if self.iteration > self.config.iterations_per_round:
            self._end_round()

    def _end_round(self) -> None:
        self.round += 1
        if self.config.n_rounds is None or self.round != self.config.n_rounds:
            self._shift_basis()
        self.generators = None
        self.iteration = 0 if self.config.reinit_each_round else 1
        if self.config.reset_history_each_round:
            self._hist_c = np.empty((0, self.dim))
            self._hist_u = np.empty((0, self.dim))
            self._hist_y = np.empty(0)
            self._hist_n = np.empty(0, dtype=np.int64)
        else:
            self._hist_c = self.basis.to_current(self._hist_u)
        if not self.config.reinit_each_round:
            self.noise = max(self.noise, self.config.proposal_noise * self._noise_unit)

    def _shift_basis(self) -> None:
        """Paper §3.3: the round's top-dim points become the experts of the next round (B ← C_top @ B)."""
        order = self._ranked()
        finite = order[np.isfinite(self._hist_y[order])]
        if self.config.shift_min_residual > 0:
            finite = self._spread_rows(finite, self.config.shift_min_residual)
        finite = finite[: self.dim]
        top = self._hist_c[finite]
        if len(top) < self.dim:  # too few successful evaluations: keep current experts for the missing rows
            top = np.concatenate([top, np.eye(self.dim)[len(top) :]])
        self.basis = self.basis.shifted(top)
        self.basis_version += 1
        self.shift_rows.append(top.copy())
        if self.on_basis_shift is not None:
            self.on_basis_shift(self.basis.matrix.copy())

    def _spread_rows(self, ranked: np.ndarray, tau: float) -> np.ndarray:
        """The best rows, in rank order, each with at least ``tau`` of its length outside the span of those
        chosen before it (Gram–Schmidt on the original coordinates u).

        Why: the round's top points cluster as the search converges, so top-dim of them make a near-singular
        basis (condition numbers of 1e3–1e6 after three shifts), and the least-squares current coordinates of
        the rest of the history explode — the generator then trains on values in the thousands.
        """
        chosen: list[int] = []
        basis = np.empty((0, self.dim))  # orthonormal rows spanning the chosen points
        for row in ranked:
            u = self._hist_u[row]
            residual = u - (basis @ u) @ basis
            rest = float(np.linalg.norm(residual))
            if rest > 0.0 and rest >= tau * float(np.linalg.norm(u)):
                chosen.append(int(row))
                basis = np.vstack([basis, residual / rest])
                if len(chosen) == self.dim:
                    break
        return np.asarray(chosen, dtype=np.int64)

    def _algorithm_stop(self) -> str | None:
        if self.config.n_rounds is not None and self.round >= self.config.n_rounds:
            return f"completed n_rounds={self.config.n_rounds} rounds"
        return None

    # ------------------------------------------------------------------ state
    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "config": self.config.to_dict()}

    def _algorithm_state(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "iteration": self.iteration,
            "basis": self.basis.matrix.copy(),
            "basis_version": self.basis_version,
            "shift_rows": np.asarray(self.shift_rows, dtype=float).reshape(-1, self.dim, self.dim),
            "noise": self.noise,
            "trained": self._trained,
            "queue": self._queue.copy(),
            "batches_made": self._batches_made,
            "told_in_generation": self._told_in_generation,
            "generation_rows": np.asarray(self._generation_rows, dtype=np.int64),
            "hist_c": self._hist_c.copy(),
            "hist_u": self._hist_u.copy(),
            "hist_y": self._hist_y.copy(),
            "hist_n": self._hist_n.copy(),
            "last_loss": self.last_loss,
            "generators": None if self.generators is None else self.generators.state(),
        }

    def _load_algorithm_state(self, state: dict[str, Any]) -> None:
        self.round = int(state["round"])
        self.iteration = int(state["iteration"])
        self.basis = Basis(np.asarray(state["basis"], dtype=float).reshape(self.dim, self.dim))
        self.basis_version = int(state["basis_version"])
        rows = np.asarray(state.get("shift_rows", np.empty((0, self.dim, self.dim))), dtype=float)
        self.shift_rows = list(rows.reshape(-1, self.dim, self.dim))
        if len(self.shift_rows) != self.basis_version:
            raise ValueError(
                f"checkpoint has {len(self.shift_rows)} recorded basis shifts but basis version {self.basis_version}"
            )
        self.noise = float(state["noise"])
        self._trained = bool(state["trained"])
        self._queue = np.asarray(state["queue"], dtype=float).reshape(-1, self.dim)
        self._batches_made = int(state["batches_made"])
        self._told_in_generation = int(state["told_in_generation"])
        self._generation_rows = [int(i) for i in np.asarray(state["generation_rows"]).ravel()]
        self._hist_c = np.asarray(state["hist_c"], dtype=float).reshape(-1, self.dim)
        self._hist_u = np.asarray(state["hist_u"], dtype=float).reshape(-1, self.dim)
        self._hist_y = np.asarray(state["hist_y"], dtype=float).ravel()
        self._hist_n = np.asarray(state["hist_n"], dtype=np.int64).ravel()
        if not (len(self._hist_c) == len(self._hist_u) == len(self._hist_y) == len(self._hist_n)):
            raise ValueError("history arrays in the checkpoint have different lengths")
        self.last_loss = float(state["last_loss"])
        self.generators = None
        if state["generators"] is not None:
            self.generators = GeneratorPair(self.dim, self.config.generator, np.random.default_rng(0))
            self.generators.load(state["generators"])

    # ------------------------------------------------------------------ introspection
    def pending_coordinates(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Basis version and *current* coordinates c of asked, not yet told rows (matched as ``tell`` will).

        An adapter whose merge is nonlinear evaluates c over the experts it materialised at the shifts
        (:attr:`shift_rows`) instead of the effective x = c @ B brought into the box.
        """
        points = self._validate_points(x)
        index = self._match_pending(points)
        if (index < 0).any():
            raise ValueError(f"row {int(np.flatnonzero(index < 0)[0])} of X was not asked (or was already told)")
        payload = self._pending_payload[index]
        return payload[:, 0].astype(np.int64), payload[:, 1:].copy()

    @property
    def history(self) -> tuple[np.ndarray, np.ndarray]:
        """The current round's history (user coordinates, minimised values; failures are +inf)."""
        return self.box.to_user(self._hist_u), self._hist_y.copy()
