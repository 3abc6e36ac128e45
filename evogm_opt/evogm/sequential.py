"""EvoGM's sequential shape for small problems: one point per ask, the maximiser of LogEI under an ARD GP, with
the learned generator's proposals among the acquisition's start points (docs/research.md, ablations 20, 29, 33).

Why a second shape: at four coefficients and 40–80 evaluations a population of eight per generation gives up the
adaptivity that a sequential Bayesian optimiser keeps (round two of the research: nineteen settings of the
population shape did not move N = 4). Here the history's winners and losers still train G_lw, as in the
population shape, and G_lw(best P of H) with noisy variants of each is scored by LogEI beside a Sobol pool and
Gaussian steps around the best points; the best few are climbed together by L-BFGS-B (``ard_gp``).
Which shape ``"evogm"`` takes is decided by a rule on the dimension and the budget (``shape.py``).

The start (a rule, not a landscape): each expert alone and their uniform mix (the population shape's informed
start), then a scrambled Sobol design until a quarter of the budget is spent (SMAC3's black-box facade starts
with a Sobol quarter), and at least 5 rows per coordinate (ablation 35).

A batch — ``ask(n)`` with n > 1, or asks while others are pending — is built by kriging believer: each chosen
point joins the GP with its posterior mean as a fantasy value before the next one is chosen. The fantasies are the
asked rows still pending (a worker that finishes one row of a batch tells it; the others stay fantasies, so the
next ask does not land on a row in flight). Rows told without an ask (a warm start) take the place of the design's
Sobol rows, never of the informed start.

Exact resume: the checkpoint holds the told rows as the surrogate saw them, the design and how far it has been
handed out, the fantasies, the GP's last hyperparameters (the next fit starts from them) and the generators with
their Adam state; the random generator is the core's.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import qmc

from evogm_opt import _state
from evogm_opt.base import Optimizer
from evogm_opt.bounds import BoundsLike
from evogm_opt.evogm.ard_gp import ARDGaussianProcess, maximise_log_ei
from evogm_opt.evogm.config import DEFAULT, generator_with
from evogm_opt.evogm.generator import GeneratorConfig, GeneratorPair
from evogm_opt.evogm.shape import RULE
from evogm_opt.threads import check_thread_count, numeric_threads


@dataclass(frozen=True)
class SequentialConfig:
    """Settings of the sequential shape; each value is the one measured in docs/research.md (ablation 20 for the
    design and the pool, ablation 29 for the climb)."""

    # share of the budget spent on the informed start + Sobol design before the first model-based ask
    init_fraction: float = 0.25
    # ... and at least this many rows per coordinate: with max_evals = 10·dim a quarter (10 rows at N = 4) lost to
    # the same search with the design of 20·dim's quarter in 10 of 10 cells (ablation 35)
    min_design_per_dim: float = 5.0
    generator: GeneratorConfig = DEFAULT.generator
    winner_fraction: float = DEFAULT.winner_fraction
    # G_lw is retrained after this many tells per coordinate (the population shape retrains every generation, 2·dim)
    train_every_per_dim: float = 2.0
    # noisy variants of each generator proposal, at σ = step/√dim (the population shape's initial step)
    variants_per_proposal: int = 8
    step: float = DEFAULT.proposal_noise
    # the pool scored before climbing: Sobol points, and Gaussian steps around the five best observed points
    sobol_pool: int = 512
    local_pool: int = 64
    # the best distinct pool points climbed by L-BFGS-B, and its iterations
    n_starts: int = 4
    climb_iterations: int = 40

    def __post_init__(self) -> None:
        if not 0.0 <= self.init_fraction <= 1.0:
            raise ValueError(f"init_fraction must be in [0, 1], got {self.init_fraction}")
        if not 0.0 < self.winner_fraction < 1.0:
            raise ValueError(f"winner_fraction must be in (0, 1), got {self.winner_fraction}")
        if self.train_every_per_dim <= 0:
            raise ValueError(f"train_every_per_dim must be > 0, got {self.train_every_per_dim}")
        if self.step < 0:
            raise ValueError(f"step must be >= 0, got {self.step}")
        if self.min_design_per_dim < 0:
            raise ValueError(f"min_design_per_dim must be >= 0, got {self.min_design_per_dim}")
        for name in ("variants_per_proposal", "sobol_pool", "local_pool"):
            if _not_count(getattr(self, name), low=0):
                raise ValueError(f"{name} must be an integer >= 0, got {getattr(self, name)!r}")
        for name in ("n_starts", "climb_iterations"):
            if _not_count(getattr(self, name), low=1):
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["generator"]["hidden"] = list(self.generator.hidden)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SequentialConfig:
        """Settings as :meth:`to_dict` writes them, or a partial dict over the defaults; an unknown name is refused
        in one line naming it."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown setting {unknown[0]!r} of {cls.__name__}; known: {', '.join(sorted(known))}")
        settings = dict(data)
        if isinstance(settings.get("generator"), dict):
            settings["generator"] = generator_with(cls().generator, settings["generator"])
        return cls(**settings)


def _spawned(rng: np.random.Generator) -> int:
    """How many children the generator's seed sequence has spawned (scipy's Sobol takes one per design)."""
    sequence = getattr(rng.bit_generator, "seed_seq", None) or getattr(rng.bit_generator, "_seed_seq", None)
    return int(getattr(sequence, "n_children_spawned", 0))


def _not_count(value: Any, low: int) -> bool:
    return isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low


class SequentialOptimizer(Optimizer):
    """One point per ask (``popsize`` 1) by LogEI under an ARD GP, G_lw's proposals among its starts; see the
    module docstring. ``"evogm"`` builds it at small dimensions and budgets (:func:`evogm_opt.evogm.shape.choose`).

    Args:
        dim, bounds, seed, maximize, max_evals: as for every optimizer; ``max_evals`` (or 20·dim without one)
            sizes the start design (a quarter of it).
        popsize: points per ``ask()`` (default 1); more are built by kriging believer.
        config: a :class:`SequentialConfig`, or a dict of its settings over the defaults.
        torch_threads: threads of torch and of NumPy/SciPy's BLAS for the GP and the generators (default 1), set
            around each ask and restored.
    """

    name = "evogm-sequential"
    #: the settings' class (a bench variant extends it with settings of its own)
    config_class: type[SequentialConfig] = SequentialConfig

    def __init__(
        self,
        dim: int,
        bounds: BoundsLike = (-1.0, 1.0),
        *,
        popsize: int | None = None,
        seed: int | None = None,
        maximize: bool = False,
        max_evals: int | None = None,
        config: SequentialConfig | dict[str, Any] | None = None,
        torch_threads: int = 1,
    ) -> None:
        self.torch_threads = check_thread_count(torch_threads, "torch_threads")
        kind = self.config_class
        if config is None:
            config = kind()
        elif isinstance(config, dict):
            config = kind.from_dict(config)
        elif not isinstance(config, kind):
            raise TypeError(f"config must be a {kind.__name__} or a dict of its settings, got {type(config).__name__}")
        self.config = config
        super().__init__(dim, bounds, popsize=popsize, seed=seed, maximize=maximize, max_evals=max_evals)
        self.design = self.start_design()
        self.told_u = np.empty((0, self.dim))  # told rows as the surrogate sees them, unit box [-1, 1]
        self.told_y = np.empty(0)  # minimised values, failures +inf
        self.generators: GeneratorPair | None = None
        self.told_since_training = 0
        self.gp_warm: np.ndarray | None = None  # the last fit's log hyperparameters: the next fit starts there
        self.fantasies = np.empty((0, self.dim))  # asked rows still pending (unit box), in the order asked
        self.design_given = 0
        self.told_unasked = 0  # rows told without an ask: each replaces one of the design's Sobol rows

    @staticmethod
    def default_popsize(dim: int) -> int:
        return 1

    def start_design(self) -> np.ndarray:
        """Each expert alone, the uniform mix, then Sobol points (a seam: the bench's tuning variants start from
        Sobol alone)."""
        return self.compose_design(self.design_size(), informed=True)

    def design_size(self) -> int:
        """A quarter of the budget (20·dim without one), at least 5·dim and dim + 2 rows."""
        budget = self.max_evals if self.max_evals is not None else 20 * self.dim
        floor = max(self.dim + 2, int(round(self.config.min_design_per_dim * self.dim)))
        return max(floor, int(round(self.config.init_fraction * budget)))

    def compose_design(self, size: int, informed: bool) -> np.ndarray:
        """``size`` rows: the informed start (when ``informed``) and Sobol points after it."""
        dim = self.dim
        start = np.concatenate([np.eye(dim), np.full((1, dim), 1.0 / dim)]) if informed else np.empty((0, dim))
        self.informed_rows = min(size, len(start))  # what warm-start rows never replace
        return np.concatenate([start, self.sobol(max(0, size - len(start)))])[:size]

    def sobol(self, n: int) -> np.ndarray:
        """``n`` scrambled Sobol points in [-1, 1]^dim; scipy scrambles them with a child it spawns from the random
        generator's seed sequence (a checkpoint records how many were spawned)."""
        if n == 0:
            return np.empty((0, self.dim))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a size that is not a power of two: still space-filling
            sampler = qmc.Sobol(self.dim, scramble=True, seed=self.rng)
            return 2.0 * sampler.random(n) - 1.0

    # ------------------------------------------------------------------ asks
    def _propose(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        rows = []
        with numeric_threads(self.torch_threads):
            for _ in range(n):
                row = self.next_point(self.fantasies)
                rows.append(row)
                self.fantasies = np.concatenate([self.fantasies, row[None, :]])
        return self.box.to_user(np.array(rows)), np.empty((n, 0))

    def next_point(self, pending: np.ndarray) -> np.ndarray:
        """The next row (unit box): the design's next row, else LogEI's maximum given ``pending`` as fantasies."""
        # the design, its Sobol rows shortened by the rows told without an ask (a warm start, a sampler's startup)
        if self.design_given < max(self.informed_rows, len(self.design) - self.told_unasked):
            self.design_given += 1
            return self.design[self.design_given - 1]
        finite = np.isfinite(self.told_y)
        if finite.sum() < 2:
            return self.sobol(1)[0]
        y = np.where(finite, self.told_y, np.max(self.told_y[finite]))  # failures ranked with the worst
        gp = self.fit_gp(y)
        self.gp_warm = gp.log_params
        if len(pending):
            gp = gp.conditioned(pending, gp.mean(pending))  # kriging believer
        point = self.maximise(gp, self.pool(y))
        seen = np.concatenate([self.told_u, pending])
        if np.min(np.max(np.abs(seen - point), axis=1)) < 1e-9:  # LogEI's maximum at an observed point: explore
            point = self.sobol(1)[0]
        return point

    def fit_gp(self, y: np.ndarray) -> ARDGaussianProcess:
        """The surrogate of the told rows, its fit started from the previous fit's values (the prior's mode for the
        first): one L-BFGS-B run per ask, as Optuna's GPSampler warm-starts (ablation 29)."""
        return ARDGaussianProcess(self.told_u, y, warm=self.gp_warm, mode_start=False)

    def maximise(self, gp: ARDGaussianProcess, pool: np.ndarray) -> np.ndarray:
        """LogEI's maximum from the pool's best starts (EI's reference: the best observed value, as GPSampler and
        SMAC3 use; a noise-robust reference lost f1-R200 in ablation 20)."""
        point, _ = maximise_log_ei(gp, pool, n_starts=self.config.n_starts, maxiter=self.config.climb_iterations)
        return point

    def pool(self, y: np.ndarray) -> np.ndarray:
        """What LogEI is scored on before the climb: :meth:`search_pool` and the generator's proposals."""
        return np.clip(np.concatenate([*self.search_pool(y), self.generator_proposals(y)]), -1.0, 1.0)

    def search_pool(self, y: np.ndarray) -> list[np.ndarray]:
        """Sobol points, and Gaussian steps (0.05 and 0.2) around the five best told rows."""
        cfg = self.config
        best = self.told_u[np.argsort(y, kind="stable")[:5]]
        local = []
        for scale in (0.05, 0.2):
            centres = best[self.rng.integers(len(best), size=cfg.local_pool // 2)]
            local.append(centres + scale * self.rng.standard_normal(centres.shape))
        return [self.sobol(cfg.sobol_pool), *local]

    def generator_proposals(self, y: np.ndarray) -> np.ndarray:
        """G_lw(best 2·dim of H) and ``variants_per_proposal`` Gaussian variants of each (the population shape's
        proposals before its screening), G_lw retrained every ``train_every_per_dim``·dim tells on the top
        ``winner_fraction`` as winners and the rest as losers."""
        cfg = self.config
        order = np.argsort(y, kind="stable")
        if self.generators is None or self.told_since_training >= cfg.train_every_per_dim * self.dim:
            if self.generators is None:
                self.generators = GeneratorPair(self.dim, cfg.generator, self.rng)
            n_winners = max(1, int(cfg.winner_fraction * len(order)))
            self.generators.train(self.told_u[order[:n_winners]], self.told_u[order[n_winners:]], self.rng)
            self.told_since_training = 0
        made = self.generators.propose(self.told_u[order[: 2 * self.dim]])
        sigma = cfg.step / math.sqrt(self.dim)
        noise = sigma * self.rng.standard_normal((len(made), cfg.variants_per_proposal, self.dim))
        return np.concatenate([made, (made[:, None, :] + noise).reshape(-1, self.dim)])

    # ------------------------------------------------------------------ results
    def surrogate_rows(self, unit: np.ndarray) -> np.ndarray:
        """Told rows (unit box) as the surrogate and the generator see them: as told (a seam: the bench's
        mixed-space samplers make a categorical the one-hot of its choice)."""
        return unit

    def _observe(self, x: np.ndarray, y: np.ndarray, payload: np.ndarray, asked: np.ndarray) -> None:
        self.told_u = np.concatenate([self.told_u, self.surrogate_rows(self.box.to_unit(x))])
        self.told_y = np.concatenate([self.told_y, y])
        self.told_since_training += len(y)
        self.told_unasked += int((~asked).sum())
        self.fantasies = self.kept_fantasies()

    def kept_fantasies(self) -> np.ndarray:
        """The fantasies kept after a tell: the asked rows still pending (a seam: the bench's tuning samplers of
        ablations 20, 30 and 31 dropped them all at each tell)."""
        return self.fantasies[self.still_pending(self.fantasies)]

    def still_pending(self, rows: np.ndarray) -> np.ndarray:
        """Which asked rows (unit box) the core still holds as pending: those not told yet."""
        if len(rows) == 0 or len(self._pending_x) == 0:
            return np.zeros(len(rows), dtype=bool)
        asked = np.clip(self.box.to_user(rows), self.box.lower, self.box.upper)  # as ask() handed them out
        gaps = np.abs(asked[:, None, :] - self._pending_x[None, :, :]).max(axis=2)
        return gaps.min(axis=1) <= 1e-12 * np.max(self.box.upper - self.box.lower)

    def _patience_window(self) -> int:
        # the population shape's patience in evaluations (25 generations of 2·dim), not 25 single asks
        return self.AUTO_PATIENCE * 2 * self.dim

    def _patience_words(self) -> str:
        return f"{self.AUTO_PATIENCE} generations of the population shape, 2·dim each"

    def _default_stop(self) -> str | None:
        if self.n_evals < len(self.design):  # the start design is not a search yet: no patience inside it
            return None
        return super()._default_stop()

    # ------------------------------------------------------------------ state
    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "config": self.config.to_dict(), "torch_threads": self.torch_threads}

    @classmethod
    def _constructor_arguments(cls, config: dict[str, Any]) -> dict[str, Any]:
        return config  # the recorded dict is complete; __init__ reads it as settings over the defaults

    def _algorithm_state(self) -> dict[str, Any]:
        return {
            "design": self.design.copy(),
            "design_given": self.design_given,
            "told_u": self.told_u.copy(),
            "told_y": self.told_y.copy(),
            "told_since_training": self.told_since_training,
            "told_unasked": self.told_unasked,
            "fantasies": self.fantasies.copy(),
            "gp_warm": None if self.gp_warm is None else np.asarray(self.gp_warm, dtype=float).copy(),
            "generators": None if self.generators is None else self.generators.state(),
            "sobol_streams": _spawned(self.rng),
        }

    def _check_algorithm_state(self, state: dict[str, Any]) -> None:
        """What a run can write: the design and the told rows inside [-1, 1], one told row per evaluation, counters
        in range, fantasies no more than the pending rows, finite GP hyperparameters of this dimension, generators
        of this architecture."""
        dim, require = self.dim, _state.require
        design = _state.array(state["design"], "design", (None, dim))
        require(np.all(np.abs(design) <= 1.0), "design", "has rows outside the normalised box [-1, 1]")
        given = _state.count(state["design_given"], "design_given")
        require(given <= len(design), "design_given", f"is {given}, beyond the design's {len(design)} rows")
        told_u = _state.array(state["told_u"], "told_u", (self.n_evals, dim))
        require(np.all(np.abs(told_u) <= 1.0 + 1e-9), "told_u", "has rows outside the normalised box [-1, 1]")
        told_y = _state.array(state["told_y"], "told_y", (self.n_evals,), finite=False)
        require(not np.isnan(told_y).any() and not np.isneginf(told_y).any(), "told_y", "holds NaN or -inf")
        since = _state.count(state["told_since_training"], "told_since_training")
        require(since <= self.n_evals, "told_since_training", f"is {since}, beyond {self.n_evals} evaluations")
        if "told_unasked" in state:
            unasked = _state.count(state["told_unasked"], "told_unasked")
            require(unasked <= self.n_evals, "told_unasked", f"is {unasked}, beyond {self.n_evals} evaluations")
        fantasies = _state.array(state["fantasies"], "fantasies", (None, dim))
        pending = len(self._pending_x)
        require(len(fantasies) <= pending, "fantasies", f"has {len(fantasies)} rows; only {pending} are pending")
        if state["gp_warm"] is not None:  # a length scale per coordinate, the signal and the noise variance
            _state.array(state["gp_warm"], "gp_warm", (dim + 2,))
        if "sobol_streams" in state:
            _state.count(state["sobol_streams"], "sobol_streams")
        if state["generators"] is not None:
            GeneratorPair.check_state(state["generators"], dim, self.config.generator)

    def _load_algorithm_state(self, state: dict[str, Any]) -> None:
        dim = self.dim
        self.design = np.array(state["design"], dtype=float).reshape(-1, dim)
        self.design_given = int(state["design_given"])
        self.told_u = np.array(state["told_u"], dtype=float).reshape(-1, dim)
        self.told_y = np.array(state["told_y"], dtype=float).ravel()
        self.told_since_training = int(state["told_since_training"])
        self.told_unasked = int(state.get("told_unasked", 0))
        self.fantasies = np.array(state["fantasies"], dtype=float).reshape(-1, dim)
        warm = state["gp_warm"]
        self.gp_warm = None if warm is None else np.array(warm, dtype=float).ravel()
        self.generators = None
        if state["generators"] is not None:
            self.generators = GeneratorPair(dim, self.config.generator, np.random.default_rng(0))
            self.generators.load(state["generators"])
        # scipy's Sobol scrambles with a child of the generator's seed sequence (``rng.spawn``), which the
        # generator's state does not hold: the sequence is rebuilt with as many children already spawned
        sequence = np.random.SeedSequence(self.seed, n_children_spawned=int(state.get("sobol_streams", 0)))
        rng = np.random.Generator(np.random.PCG64(sequence))
        rng.bit_generator.state = self.rng.bit_generator.state
        self.rng = rng

    # ------------------------------------------------------------------ introspection
    def describe(self) -> str:
        """What the repr adds after the core's fields (a seam: a variant names its own settings)."""
        return f", strategy=sequential LogEI (evogm's rule: {RULE}), design={len(self.design)} points"

    def _repr_extra(self) -> str:
        return self.describe()
