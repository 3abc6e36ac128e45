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

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evogm_opt import _state
from evogm_opt.base import Optimizer
from evogm_opt.bounds import BoundsLike
from evogm_opt.evogm import handoff, proposals
from evogm_opt.evogm.basis import Basis, BasisShift, fold_into_box, spread_rows
from evogm_opt.evogm.config import PRESETS, EvoGMConfig, resolve
from evogm_opt.evogm.generator import GeneratorPair
from evogm_opt.evogm.history import History
from evogm_opt.evogm.surrogate import GaussianProcess
from evogm_opt.optimizers.cmaes import CMAES
from evogm_opt.threads import check_thread_count, torch_threads

logger = logging.getLogger("evogm_opt.evogm")

BasisHook = Callable[[BasisShift], None]


@dataclass(frozen=True, eq=False)
class AskedBatch:
    """One ask, with what adapters of nonlinear merges need beside the points.

    ``x``: the points, shape (n, dim), user coordinates — exactly what ``ask(n)`` returns. ``basis_version``:
    the basis they were asked in (how many shifts, ``len(shift_rows)``). ``coordinates``: their current
    coordinates c, shape (n, dim), over the experts of that basis — for ``boundary="reflect"`` the
    coordinates of x itself; for ``"clip"`` (the paper presets) the generator's own c, of which x is c @ B
    clipped into the box.
    """

    x: np.ndarray
    basis_version: int
    coordinates: np.ndarray


@dataclass
class _Generation:
    """The generation in progress; a new one starts once ``popsize`` results have been told."""

    queue: np.ndarray  # proposals made and not yet asked (current coordinates)
    batches: int = 0  # proposal batches made; in iteration 0 the first one is the initial population
    trained: bool = False  # the generators have been trained for it
    told_rows: list[int] = field(default_factory=list)  # history rows told in it (the 1/5th rule's trials)


class GenerativeOptimizer(Optimizer):
    """EvoGM: a learned loser→winner generator replaces mutation; rounds end with a basis shift.

    One *round* (paper Alg. 1) is an initial population followed by T *iterations*; each iteration splits the
    round's history H into winners (top ρ) and losers, trains the generators, proposes ``G_lw(population)`` and
    keeps the best P of H as the next population. A generation is complete once ``popsize`` results have been
    told, whatever mix of asked and external rows they are.

    Coordinates: the optimizer searches *current* coordinates c ∈ [-1, 1]^dim. A point is evaluated at
    u = c @ B in the original normalised box and returned to the user as x = centre + u ⊙ half_width. After a
    basis shift (paper §3.3) the rows of B are the round's top-dim points, so c @ B can leave the box; the
    config's ``boundary`` rule brings it back (:func:`~evogm_opt.evogm.basis.fold_into_box`): ``"clip"`` (the
    paper preset: projected per coordinate, the generator keeps learning in its own c) or ``"reflect"`` (the
    default: mirrored at the faces, and c becomes the current coordinates of the point evaluated). Rows told
    without an ask are expressed in the current basis by least squares.

    Args:
        dim: number of coefficients (experts).
        bounds: ``(lower, upper)`` for every coordinate or an array of shape ``(dim, 2)``.
        popsize: P, default 2·dim as in the paper.
        preset: ``"default"`` (ours) or ``"paper"`` (the reference).
        config: an :class:`EvoGMConfig` replacing the preset entirely, or a dict of settings replacing the
            preset's (``{"handoff_dim": 50}``: the named preset with that one setting changed).
        on_basis_shift: called with a :class:`BasisShift` after each shift; adapters of nonlinear merges (TIES,
            DARE) materialise the new experts there (``np.asarray(shift)`` is the new basis matrix).
        torch_threads: torch threads for the generators' training and proposals (default 1: the networks are
            tiny, and more threads only add contention on a busy machine). Set around each call and restored,
            so your own torch settings are untouched; fixed, so results do not depend on them.

    Logging: ``logging.getLogger("evogm_opt")`` at INFO reports each generation (round, iteration, best, step
    size σ, generator loss) and each basis shift.

    Extending: :meth:`generate` (population → proposals) is the one method a variant overrides to change where
    proposals come from; noise, screening, repeats, shifts and checkpoints stay as they are. The bench's research
    variants (``benchmarks/research/``) are built this way. :meth:`recommend` is the best observed point (paper
    Alg. 1), as for every optimizer.
    """

    name = "evogm"

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
        torch_threads: int = 1,
    ) -> None:
        self.torch_threads = check_thread_count(torch_threads, "torch_threads")
        self.config = resolve(preset, config)
        super().__init__(dim, bounds, popsize=popsize, seed=seed, maximize=maximize, max_evals=max_evals)
        if self.popsize < 2:
            raise ValueError("GenerativeOptimizer needs popsize >= 2 (winners and losers)")
        # P as constructed; ``popsize`` becomes sep-CMA-ES's generation after a handoff, a checkpoint keeps this
        self._evogm_popsize = self.popsize
        self.on_basis_shift = on_basis_shift
        self.round = 0
        self.iteration = 0  # 0: the round's initial population; 1..T: generator iterations
        self.basis = Basis.identity(dim)
        self.noise = self.config.proposal_noise * self._step_unit  # σ per coordinate
        self.generators: GeneratorPair | None = None  # one pair (and one Adam) per round, as the reference
        self.last_loss = float("nan")
        self._history = History.empty(dim)
        self._generation = _Generation(np.empty((0, dim)))
        # the history the GP was fitted on, and the GP (None: too little data): one fit per generation's history
        self._surrogate_cache: tuple[History, GaussianProcess | None] | None = None
        # sep-CMA-ES once the search has been handed off (config.handoff_dim; evogm/handoff.py), else None
        self.handoff: CMAES | None = None

    @property
    def preset(self) -> str:
        """The name of the preset this optimizer's configuration equals, or ``"custom"``."""
        return next((name for name, config in PRESETS.items() if config == self.config), "custom")

    @property
    def basis_version(self) -> int:
        """How many basis shifts have happened (the version of the current basis)."""
        return self.basis.version

    @property
    def shift_rows(self) -> list[np.ndarray]:
        """Each shift's top rows in the coordinates they were chosen in, oldest first (checkpointed): what
        adapters of nonlinear merges replay to rebuild the experts of a resumed run."""
        return list(self.basis.shift_rows)

    @property
    def history(self) -> tuple[np.ndarray, np.ndarray]:
        """The current round's history (user coordinates, minimised values; failures are +inf)."""
        return self.box.to_user(self._history.u), self._history.y.copy()

    @property
    def payload_width(self) -> int:  # type: ignore[override]
        return 1 + self.dim  # basis version + current coordinates of the asked point

    @property
    def _step_unit(self) -> float:
        return proposals.step_unit(self.dim, self.config.noise_per_sqrt_dim)

    @property
    def hands_off(self) -> bool:
        """Whether this optimizer continues as sep-CMA-ES after its initial population (``dim ≥ handoff_dim``);
        such a search does not shift its basis (:attr:`never_shifts`), so nonlinear merges with several
        coefficient groups can use it."""
        return self.config.handoff_dim is not None and self.dim >= self.config.handoff_dim

    @property
    def never_shifts(self) -> bool:
        """Whether this search will never shift its basis: it hands off, and has not shifted yet (a checkpoint
        written before this rule may have, when its whole initial population failed; it then goes on as EvoGM)."""
        return self.hands_off and self.basis.version == 0

    def _repr_extra(self) -> str:
        if self.hands_off:
            when = "active" if self.handoff is not None else "after the initial population"
            limit = self.config.handoff_dim
            return f", preset={self.preset!r}, strategy=sep-CMA-ES (dim >= handoff_dim={limit}, {when})"
        return (
            f", preset={self.preset!r}, strategy=population, round={self.round}, iteration={self.iteration}, "
            f"basis_version={self.basis.version}, step={self.noise:.3g}"
        )

    # ------------------------------------------------------------------ asks
    def ask(self, n: int | None = None) -> np.ndarray:
        """Return ``n`` (default ``popsize``) points to evaluate, shape ``(n, dim)``, inside the bounds."""
        return self.ask_with_coordinates(n).x

    def ask_with_coordinates(self, n: int | None = None) -> AskedBatch:
        """The ask itself (``ask`` returns its ``.x``), with the basis version and current coordinates of each row.

        Adapters whose merge is nonlinear evaluate ``coordinates`` over the experts they rebuilt at each shift
        (:attr:`shift_rows`) instead of x; this is the way to get them (:meth:`pending_coordinates` matches rows
        by value later, for callers that only kept x).
        """
        x = super().ask(n)
        payload = self._pending_payload[len(self._pending_payload) - len(x) :]
        return AskedBatch(x=x, basis_version=int(payload[0, 0]), coordinates=payload[:, 1:].copy())

    def _propose(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self.handoff is not None:  # basis version 0 and c = u: the handoff starts before any shift
            x = self.handoff.ask(n)
            return x, np.concatenate([np.zeros((n, 1)), self.box.to_unit(x)], axis=1)
        with torch_threads(self.torch_threads):  # the only place the networks train and run
            return self._propose_rows(n)

    def _propose_rows(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        generation = self._generation
        while len(generation.queue) < n:
            generation.queue = np.concatenate([generation.queue, self._make_proposals()])
        c, generation.queue = generation.queue[:n], generation.queue[n:]
        u = self._into_box(c)
        if self.config.boundary != "clip" and self.basis.version:
            c = self.basis.to_current(u)  # the coordinates of the point actually evaluated
        x = self.box.to_user(u)
        payload = np.concatenate([np.full((n, 1), float(self.basis.version)), c], axis=1)
        return x, payload

    def _into_box(self, c: np.ndarray) -> np.ndarray:
        """Where current coordinates are evaluated: u = c @ B, folded into the box by the ``boundary`` rule."""
        u = c if self.basis.version == 0 else self.basis.to_original(c)  # B = I before the first shift: u is c
        return fold_into_box(u, self.config.boundary)

    def _make_proposals(self) -> np.ndarray:
        """The next batch of asks (current coordinates): paper Alg. 1, plus our noise, screening and repeats."""
        cfg = self.config
        self._generation.batches += 1
        if self.iteration == 0:
            if self._generation.batches == 1:
                return proposals.initial_population(self.dim, self.popsize, self.rng)
            return proposals.uniform(self.popsize, self.dim, self.rng)
        population = self._history.c[self._history.ranked()[: self.popsize]]  # Alg. 1: the best P of H
        made = self.generate(population)  # Alg. 1: C = G_lw(population)
        surrogate = self._surrogate() if cfg.screening > 0 else None
        if surrogate is not None:
            candidates = proposals.screening_candidates(made, cfg.screening, self.noise, self.rng)
            made = proposals.screened(candidates, surrogate, self._into_box)
        elif self.noise > 0:
            made = proposals.perturbed(made, self.noise, self.rng)
        if cfg.deduplicate:
            made = proposals.without_repeats(made, self._history.c, max(self.noise, 0.05), self.rng)
        return made

    def generate(self, population: np.ndarray) -> np.ndarray:
        """C = G_lw(population) (paper Alg. 1): the generation's proposals, one per row of ``population`` (the
        best P of H, current coordinates), before exploration noise, screening and de-duplication; G_lw is trained
        for this generation first if it is not yet.

        The extension point: a subclass overrides this to change where proposals come from, all else equal — the
        bench's no-generator variant returns the population itself (benchmarks/research/variants.py). It may draw
        from ``self.rng`` (the draws are then part of exact resume) and must return an array of the same shape.
        """
        generators = self.generators
        if generators is None or not self._generation.trained:
            generators = self._train()
        return generators.propose(population)

    def _train(self) -> GeneratorPair:
        """Paper Alg. 1: split H into winners and losers and train the round's generators (§3.2) on them."""
        if self.generators is None:
            self.generators = GeneratorPair(self.dim, self.config.generator, self.rng)
        winners, losers = self._history.winners_and_losers(self.config.winner_fraction, self.config.train_window)
        self.last_loss = self.generators.train(winners, losers, self.rng)
        self._generation.trained = True
        return self.generators

    # ------------------------------------------------------------------ surrogate
    def _surrogate(self) -> GaussianProcess | None:
        """A GP on the kept history in the original box (stable across basis shifts); None if too little data.
        Cached until the history changes: a generation whose asks come in several calls fits it once."""
        if self._surrogate_cache is not None and self._surrogate_cache[0] is self._history:
            return self._surrogate_cache[1]
        history = self._history
        rows = history.finite_rows()
        model = None
        if len(rows) >= max(5, self.dim // 2 + 2):
            rows = history.window(rows, self.config.surrogate_points)
            try:
                model = GaussianProcess(history.u[rows], history.y[rows])
            except np.linalg.LinAlgError:
                model = None
        self._surrogate_cache = (history, model)
        return model

    # ------------------------------------------------------------------ results
    def _observe(self, x: np.ndarray, y: np.ndarray, payload: np.ndarray, asked: np.ndarray) -> None:
        u = self.box.to_unit(x)
        c = self.basis.to_current(u)
        same_basis = asked & (payload[:, 0] == self.basis.version)
        c[same_basis] = payload[same_basis, 1:]
        start = len(self._history)
        evaluations = np.arange(self.n_evals - len(y) + 1, self.n_evals + 1)
        self._history = self._history.appended(c, u, y, evaluations)
        if self.handoff is not None:
            # only rows sep-CMA-ES asked itself update it; rows asked before the handoff or never asked stay in the
            # history (and count for best/recommend) without pulling its mean away from where it searches
            own = self.handoff._match_pending(x) >= 0
            if own.any():
                handoff.tell_inner(self.handoff, x[own], y[own])
            self.popsize = self.handoff.es.popsize  # a generation is now sep-CMA-ES's (IPOP restarts double it)
            return
        self._generation.told_rows.extend(range(start, start + len(y)))
        if len(self._generation.told_rows) >= self.popsize:
            self._advance()

    def _advance(self) -> None:
        """A generation's worth of results has arrived: next iteration, or end of round + basis shift."""
        told = self._generation.told_rows
        if self.config.adapt_noise and self.iteration > 0 and told:
            top = set(self._history.ranked()[: self.popsize].tolist())
            success = np.mean([row in top for row in told])
            ceiling = self.config.max_proposal_noise * self._step_unit
            self.noise = proposals.adapted_step(self.noise, success, ceiling)
        self._generation = _Generation(np.empty((0, self.dim)))
        best = "none" if self._best is None else f"{self._best.y:.6g}"
        logger.info(
            "round %d, iteration %d done: %d evaluations, best %s, step σ=%.3g, generator loss %.4g",
            self.round,
            self.iteration,
            self.n_evals,
            best,
            self.noise,
            self.last_loss,
        )
        self.iteration += 1
        if self.never_shifts:  # the search continues as sep-CMA-ES once a result is finite, without a shift
            if self._best is not None:
                self._hand_off()
        elif self.iteration > self.config.iterations_per_round:
            self._end_round()

    def _hand_off(self) -> None:
        """The initial population is in: continue as sep-CMA-ES from its best point (evogm/handoff.py)."""
        seed = int(self.rng.integers(2**62))
        self.handoff = handoff.start_inner(self.dim, self.box.state(), self._best.x, self.config.handoff_sigma, seed)
        self.popsize = self.handoff.es.popsize
        logger.info("dim %d >= handoff_dim: continuing as sep-CMA-ES from the best point so far", self.dim)

    def _end_round(self) -> None:
        cfg = self.config
        self.round += 1
        if cfg.n_rounds is None or self.round != cfg.n_rounds:
            self._shift_basis()
        self.generators = None
        self.iteration = 0 if cfg.reinit_each_round else 1
        if cfg.reset_history_each_round:
            self._history = History.empty(self.dim)
        else:
            self._history = self._history.in_basis(self.basis)
        if not cfg.reinit_each_round:  # a new round starts at σ₀ at least
            self.noise = max(self.noise, cfg.proposal_noise * self._step_unit)

    def _shift_basis(self) -> None:
        """Paper §3.3: the round's top-dim points become the experts of the next round (B ← C_top @ B)."""
        history = self._history
        order = history.ranked()
        finite = order[np.isfinite(history.y[order])]
        if self.config.shift_min_residual > 0:
            finite = spread_rows(history.u, finite, self.config.shift_min_residual, self.dim)
        top = history.c[finite[: self.dim]]
        if len(top) < self.dim:  # too few successful evaluations: keep current experts for the missing rows
            top = np.concatenate([top, np.eye(self.dim)[len(top) :]])
        self.basis = self.basis.shifted(top)
        if logger.isEnabledFor(logging.INFO):  # the SVD of the condition number only when someone reads it
            logger.info(
                "round %d ended: basis shift, the round's top points are the new experts: %r", self.round, self.basis
            )
        if self.on_basis_shift is not None:
            self.on_basis_shift(BasisShift(self.basis.version, self.basis.matrix.copy(), top.copy()))

    def _algorithm_stop(self) -> str | None:
        if self.handoff is not None:
            return self.handoff._stop_reason(default_rules=False)  # the outer optimizer owns the budget
        if self.config.n_rounds is not None and self.round >= self.config.n_rounds:
            return f"completed n_rounds={self.config.n_rounds} rounds"
        return None

    # ------------------------------------------------------------------ state
    def _config(self) -> dict[str, Any]:
        config = {**super()._config(), "popsize": self._evogm_popsize}
        return {**config, "config": self.config.to_dict(), "torch_threads": self.torch_threads}

    @classmethod
    def _constructor_arguments(cls, config: dict[str, Any]) -> dict[str, Any]:
        # a recorded configuration is complete, or older than some setting: that one takes the paper's value (what
        # the algorithm did then), never the preset's, which a partial dict from a user is layered over
        if isinstance(config.get("config"), dict):
            return {**config, "config": EvoGMConfig.from_dict(config["config"])}
        return config

    def _algorithm_state(self) -> dict[str, Any]:
        generation = self._generation
        return {
            "round": self.round,
            "iteration": self.iteration,
            "basis": self.basis.matrix.copy(),
            "basis_version": self.basis.version,
            "shift_rows": np.asarray(self.basis.shift_rows, dtype=float).reshape(-1, self.dim, self.dim),
            "noise": self.noise,
            "trained": generation.trained,
            "queue": generation.queue.copy(),
            "batches_made": generation.batches,
            "told_in_generation": len(generation.told_rows),
            "generation_rows": np.asarray(generation.told_rows, dtype=np.int64),
            **self._history.state(),
            "last_loss": self.last_loss,
            "generators": None if self.generators is None else self.generators.state(),
            "handoff": None if self.handoff is None else self.handoff.state_dict(),
        }

    def _check_algorithm_state(self, state: dict[str, Any]) -> None:
        """What a run of EvoGM can write: counters in range, a finite step size, basis, queue and history (a NaN
        there makes every later ask NaN, clipped to a face; a negative iteration makes the paper preset's next ask
        run for minutes)."""
        cfg, dim, require = self.config, self.dim, _state.require
        round_ = _state.count(state["round"], "round")
        if cfg.n_rounds is not None:
            require(round_ <= cfg.n_rounds, "round", f"is {round_}, beyond n_rounds = {cfg.n_rounds}")
        iteration = _state.count(state["iteration"], "iteration")
        if not self.hands_off:  # a search that hands off counts initial populations until one succeeds
            limit = cfg.iterations_per_round
            require(iteration <= limit, "iteration", f"is {iteration}, beyond iterations_per_round = {limit}")
        require(_state.number(state["noise"], "noise") >= 0, "noise", f"is {state['noise']}; it must be >= 0")
        _state.array(state["basis"], "basis", (dim, dim))
        if "shift_rows" in state:
            _state.array(state["shift_rows"], "shift_rows", (None, dim, dim))
        _state.count(state["basis_version"], "basis_version")
        require(isinstance(state["trained"], (bool, np.bool_)), "trained", f"is {state['trained']!r}, not a bool")
        _state.array(state["queue"], "queue", (None, dim))
        _state.count(state["batches_made"], "batches_made")
        _state.count(state["told_in_generation"], "told_in_generation")
        _state.number(state["last_loss"], "last_loss", nan=True)
        c = _state.array(state["hist_c"], "hist_c", (None, dim))
        u = _state.array(state["hist_u"], "hist_u", (len(c), dim))
        require(np.all(np.abs(u) <= 1.0 + 1e-9), "hist_u", "has rows outside the normalised box [-1, 1]")
        y = _state.array(state["hist_y"], "hist_y", (len(c),), finite=False)
        require(not np.isnan(y).any() and not np.isneginf(y).any(), "hist_y", "holds NaN or -inf (failures are +inf)")
        n = _state.array(state["hist_n"], "hist_n", (len(c),), dtype=np.int64)
        require(np.all((n >= 1) & (n <= self.n_evals)), "hist_n", f"has evaluation numbers outside 1..{self.n_evals}")
        rows = _state.array(state["generation_rows"], "generation_rows", (None,), dtype=np.int64)
        require(np.all((rows >= 0) & (rows < len(c))), "generation_rows", f"has rows outside the {len(c)} of hist_y")
        if state["generators"] is not None:
            GeneratorPair.check_state(state["generators"], dim, self.config.generator)
        # written by 0.1 (final replicates, removed in 0.2.0): -1 unless that setting was on, which the config refuses
        if "final_phase_from" in state:
            start = _state.count(state["final_phase_from"], "final_phase_from", low=-1)
            require(start == -1, "final_phase_from", f"is {start}; the final replicates were removed in 0.2.0")

    def _load_algorithm_state(self, state: dict[str, Any]) -> None:
        dim = self.dim
        self.round = int(state["round"])
        self.iteration = int(state["iteration"])
        rows = np.asarray(state.get("shift_rows", np.empty((0, dim, dim))), dtype=float).reshape(-1, dim, dim)
        self.basis = Basis(np.asarray(state["basis"], dtype=float).reshape(dim, dim), list(rows))
        if self.basis.version != int(state["basis_version"]):
            raise ValueError(
                f"checkpoint has {self.basis.version} recorded basis shifts but basis version {state['basis_version']}"
            )
        self.noise = float(state["noise"])
        told_rows = [int(i) for i in np.asarray(state["generation_rows"]).ravel()]
        if int(state["told_in_generation"]) != len(told_rows):
            raise ValueError("checkpoint counts a different number of rows told in the generation than it lists")
        self._generation = _Generation(
            queue=np.array(state["queue"], dtype=float).reshape(-1, dim),
            batches=int(state["batches_made"]),
            trained=bool(state["trained"]),
            told_rows=told_rows,
        )
        self._history = History.from_state(state, dim)
        self.last_loss = float(state["last_loss"])
        self.generators = None
        if state["generators"] is not None:
            self.generators = GeneratorPair(dim, self.config.generator, np.random.default_rng(0))
            self.generators.load(state["generators"])
        inner = state.get("handoff")  # absent before handoffs existed
        try:
            self.handoff = None if inner is None else CMAES.from_state_dict(inner)
        except _state.InvalidState as exc:
            raise exc.within("handoff") from None
        if self.handoff is not None:
            self.popsize = self.handoff.es.popsize
        self._surrogate_cache = None

    # ------------------------------------------------------------------ introspection
    def pending_coordinates(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Basis version and current coordinates c of asked, not yet told rows (matched by value, as ``tell`` will).

        For callers that kept only x; adapters should take the coordinates from :meth:`ask_with_coordinates`.
        """
        points = self._validate_points(x)
        index = self._match_pending(points)
        if (index < 0).any():
            raise ValueError(f"row {int(np.flatnonzero(index < 0)[0])} of X was not asked (or was already told)")
        payload = self._pending_payload[index]
        return payload[:, 0].astype(np.int64), payload[:, 1:].copy()
