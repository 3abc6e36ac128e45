"""EvoGM settings as frozen data, and the named presets.

``paper`` is the reference implementation's choices (the EvoGM code and its config YAML, docs/method.md), every
setting written out where :data:`PAPER` is defined; ``default`` is ours and moves only when the benchmarks say so
(docs/research.md), also written out in full. Field defaults are neutral — the reference's algorithm with none
of our additions — but no preset relies on them: :func:`_every_field` refuses a preset that leaves one out, so a
new setting must be decided for each preset where it is defined.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args

from evogm_opt.evogm.basis import Boundary
from evogm_opt.evogm.generator import GeneratorConfig

#: What :meth:`GenerativeOptimizer.recommend` returns: ``"best"`` the best observed point (paper Alg. 1: "return
#: the best point ever seen"), ``"posterior"`` the evaluated point with the best GP posterior mean (research
#: ablation 2, rejected), ``"posterior-top"`` the same among the best observed (ablation 12, rejected),
#: ``"binomial-posterior"`` the same with a GP told the binomial noise of accuracies on ``binomial_trials`` freshly
#: drawn examples (ablation 15).
Recommendation = Literal["best", "posterior", "posterior-top", "binomial-posterior"]
#: Where the screening candidates of one proposal come from (ours, research round two): ``"noise"`` G_lw(p) plus
#: Gaussian noise; ``"generator-input"`` G_lw(p + noise), the generator's image of a neighbourhood of p;
#: ``"generator-line"`` p + t·(G_lw(p) − p) + noise, steps of random length t along the learned direction.
CandidateSource = Literal["noise", "generator-input", "generator-line"]
SurrogateValues = Literal["copula", "standardized"]
ScreeningBatch = Literal["independent", "believer"]

_T = TypeVar("_T")


@dataclass(frozen=True)
class EvoGMConfig:
    """Every setting of EvoGM; each is annotated with where it comes from (paper, reference code, or ours)."""

    # paper §3.2: G_lw (and G_wl) — architecture, Adam, loss weights
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    # paper Alg. 1: winners are the top max(1, int(ρ·|H|)) of the history; reference ρ = 0.3
    winner_fraction: float = 0.3
    # paper Alg. 1: T generator iterations per round; reference T = 3
    iterations_per_round: int = 3
    # paper Alg. 1: R rounds, a basis shift between two; reference R = 2. None: rounds until the budget is spent
    n_rounds: int | None = 2
    # paper Alg. 1 / reference code: H = {} at every round. False: H is re-expressed in the new basis (ours)
    reset_history_each_round: bool = True
    # paper Alg. 1: the hybrid initial population at every round (its one-hots are the new experts)
    reinit_each_round: bool = True
    # τ > 0: a new expert must have ≥ τ of its length outside the others' span (ours, ablation 10); paper §3.3: 0
    shift_min_residual: float = 0.0
    # σ₀ of Gaussian noise on G_lw's proposals, current coordinates (ours; reference: C = G_lw(pop), no noise)
    proposal_noise: float = 0.0
    # the 1/5th-success rule on σ, measured per generation (ours, Rechenberg 1973)
    adapt_noise: bool = False
    # the 1/5th rule never raises σ above this
    max_proposal_noise: float = 1.0
    # the success share at which the rule holds σ still (with adapt_noise): 0.2 is Rechenberg's 1/5th; screened asks
    # succeed more often than unscreened ones, so a higher target shrinks σ where the 1/5th rule would only raise it
    success_target: float = 0.2
    # True: σ₀ and the cap are lengths of the whole perturbation, σ = value/√dim (ours, ablation 7)
    noise_per_sqrt_dim: bool = False
    # c @ B outside the box after a shift (basis.Boundary): the reference clips
    boundary: Boundary = "clip"
    # re-draw proposals that repeat an evaluated point (ours; the reference re-evaluates them)
    deduplicate: bool = False
    # K > 0: K noisy variants of each proposal, the GP's best by expected improvement is asked (ours, ablation 1)
    screening: int = 0
    # the GP is fitted on at most this many points, the most recent + the best eighth (ours, ablation 4)
    surrogate_points: int = 300
    # how the GP sees the values (surrogate.VALUE_TRANSFORMS): "copula" ranks (ours, robust to tails and ties) or
    # "standardized" z-scores, which keep a smooth optimum's shape (ablation 17)
    surrogate_values: SurrogateValues = "copula"
    # the observations' noise sd in the values' own units, if known (an accuracy on n examples: about √(p(1−p)/n));
    # the GP's noise variance is kept at or above (s / sd(y))² of its targets' unit spread — exact for
    # "standardized", approximate for the copula — so a plateau of noise-sized bumps looks flat (ablation 18).
    # Both surrogate_* settings apply to the screening GP and the GP-mean recommendations, not to "binomial-posterior"
    surrogate_noise_floor: float = 0.0
    # the generator trains on at most this many points (same rule; ours, ablation 4); None: all of H (reference)
    train_window: int | None = None
    # see Recommendation; the reference returns the best observed point
    recommendation: Recommendation = "best"
    # M > 0: the M lowest-EI asks of a screened batch become its M best-mean candidates (ours, ablation 5)
    exploit_candidates: int = 0
    # False: the no-generator ablation — proposals are the top-P population itself instead of G_lw(population),
    # all else equal (noise, screening, shifts); what the learned proposal adds is measured against it
    use_generator: bool = True
    # where the screening candidates come from (CandidateSource); the first candidate is always G_lw(p)
    screening_candidates: CandidateSource = "noise"
    # how a generation's screened asks are chosen together (ScreeningBatch): each by its own EI, or one after
    # another with the earlier ones added to the GP at its mean ("kriging believer"), so a batch spreads out
    screening_batch: ScreeningBatch = "independent"
    # without reinit_each_round: keep the adapted step σ across a basis shift instead of raising it back to σ₀
    keep_step_across_rounds: bool = False
    # screening candidates' noise as multiples of σ, the candidates split evenly among them: (1.0,) one scale;
    # (1.0, 0.25, 0.0625) lets expected improvement also choose fine steps where the GP is sure
    screening_scales: tuple[float, ...] = (1.0,)
    # share of each proposal's screening candidates drawn uniformly from the whole box instead of near it, so
    # expected improvement can send an ask far away while the GP is flat (a plateau at chance accuracy)
    screening_global: float = 0.0
    # R > 0: each screened ask is polished by a second screening of R points around it at σ·screening_refine_scale
    # (ours, ablation 17), so EI's peak is sampled finely as well as found; needs screening. It scores with the
    # plain GP, so it may undo what screening_batch="believer" spread and replaces exploit_candidates' rows
    screening_refine: int = 0
    screening_refine_scale: float = 0.25
    # "posterior-top": the recommendation is chosen by GP mean among this share of the best observed points
    recommend_top_fraction: float = 0.1
    # from this many coordinates on, the search continues as sep-CMA-ES after the initial population (ours,
    # evogm/handoff.py); None: never
    handoff_dim: int | None = None
    # the handed-off sep-CMA-ES's initial step, a fraction of the box half-width
    handoff_sigma: float = 0.3
    # r > 0 (with max_evals): the last ⌈r·dim⌉ evaluations re-evaluate the best observed points once each, and the
    # recommendation is the best mean among the points looked at in that final phase (ours, ablation 14)
    final_replicates_per_dim: float = 0.0
    # "binomial-posterior": each evaluation is an accuracy on this many freshly drawn examples (ours, ablation 15)
    binomial_trials: int | None = None

    def __post_init__(self) -> None:
        scales = self.screening_scales
        if isinstance(scales, (int, float)) or not all(isinstance(v, (int, float)) for v in scales):
            raise ValueError(f"screening_scales must be a sequence of numbers, got {scales!r}")
        object.__setattr__(self, "screening_scales", tuple(float(v) for v in scales))
        if not self.screening_scales or not all(0.0 < v < float("inf") for v in self.screening_scales):
            raise ValueError(f"screening_scales must be positive and finite, got {scales!r}")
        if not 0.0 <= self.screening_global < 1.0:
            raise ValueError(f"screening_global must be in [0, 1), got {self.screening_global}")
        if not isinstance(self.screening_refine, int) or self.screening_refine < 0 or self.screening_refine == 1:
            raise ValueError(f"screening_refine must be 0 (off) or >= 2, got {self.screening_refine}")
        if not 0.0 < self.screening_refine_scale < float("inf"):
            raise ValueError(f"screening_refine_scale must be positive and finite, got {self.screening_refine_scale}")
        if not 0.0 < self.winner_fraction < 1.0:
            raise ValueError(f"winner_fraction must be in (0, 1), got {self.winner_fraction}")
        if self.iterations_per_round < 1:
            raise ValueError("iterations_per_round must be >= 1")
        if self.n_rounds is not None and self.n_rounds < 1:
            raise ValueError("n_rounds must be >= 1 or None")
        if not 0.0 <= self.shift_min_residual < 1.0:
            raise ValueError(f"shift_min_residual must be in [0, 1), got {self.shift_min_residual}")
        if self.proposal_noise < 0:
            raise ValueError("proposal_noise must be >= 0")
        if self.max_proposal_noise <= 0:
            raise ValueError("max_proposal_noise must be > 0")
        if not 0.0 < self.success_target < 1.0:
            raise ValueError(f"success_target must be in (0, 1), got {self.success_target}")
        if self.screening < 0 or self.surrogate_points < 8:
            raise ValueError("screening must be >= 0 and surrogate_points >= 8")
        if self.train_window is not None and self.train_window < 8:
            raise ValueError("train_window must be >= 8 or None")
        if self.exploit_candidates < 0:
            raise ValueError("exploit_candidates must be >= 0")
        if self.boundary not in get_args(Boundary):
            raise ValueError(f"boundary must be 'clip', 'reflect' or 'mixed', got {self.boundary!r}")
        if self.recommendation not in get_args(Recommendation):
            raise ValueError(
                f"recommendation must be one of {list(get_args(Recommendation))}, got {self.recommendation!r}"
            )
        if self.screening_candidates not in get_args(CandidateSource):
            raise ValueError(
                f"screening_candidates must be one of {list(get_args(CandidateSource))}, "
                f"got {self.screening_candidates!r}"
            )
        if self.handoff_dim is not None and self.handoff_dim < 2:
            raise ValueError(f"handoff_dim must be >= 2 or None, got {self.handoff_dim}")
        if not self.handoff_sigma > 0:
            raise ValueError(f"handoff_sigma must be > 0, got {self.handoff_sigma}")
        if not 0.0 <= self.surrogate_noise_floor < float("inf"):
            raise ValueError(f"surrogate_noise_floor must be finite and >= 0, got {self.surrogate_noise_floor}")
        if self.surrogate_values not in get_args(SurrogateValues):
            raise ValueError(
                f"surrogate_values must be one of {list(get_args(SurrogateValues))}, got {self.surrogate_values!r}"
            )
        if self.screening_batch not in get_args(ScreeningBatch):
            raise ValueError(
                f"screening_batch must be one of {list(get_args(ScreeningBatch))}, got {self.screening_batch!r}"
            )
        if not 0.0 < self.recommend_top_fraction <= 1.0:
            raise ValueError(f"recommend_top_fraction must be in (0, 1], got {self.recommend_top_fraction}")
        if self.recommendation == "binomial-posterior" and (self.binomial_trials is None or self.binomial_trials < 1):
            raise ValueError(
                "recommendation='binomial-posterior' needs binomial_trials, the examples each evaluation draws, "
                f"got {self.binomial_trials!r}"
            )
        if self.binomial_trials is not None and self.binomial_trials < 1:
            raise ValueError(f"binomial_trials must be >= 1 or None, got {self.binomial_trials}")
        if not 0.0 <= self.final_replicates_per_dim < float("inf"):
            raise ValueError(f"final_replicates_per_dim must be finite and >= 0, got {self.final_replicates_per_dim}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["generator"]["hidden"] = list(self.generator.hidden)
        data["screening_scales"] = list(self.screening_scales)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvoGMConfig:
        """Settings as :meth:`to_dict` writes them. A setting missing from ``data`` (a checkpoint of an older
        version, written before the setting existed) takes the paper's value — what the algorithm did then."""
        return PAPER.with_settings(data)

    def with_settings(self, data: dict[str, Any]) -> EvoGMConfig:
        """This configuration with the settings ``data`` names replaced (``generator`` a dict of its own);
        how a user's partial dict is layered over a preset."""
        data = dict(data)
        _refuse_unknown(type(self), data, "EvoGM")
        gen = dict(data.pop("generator", {}))
        _refuse_unknown(GeneratorConfig, gen, "generator")
        if "hidden" in gen:
            gen["hidden"] = tuple(int(h) for h in gen["hidden"])
        return dataclasses.replace(self, generator=dataclasses.replace(self.generator, **gen), **data)


def _refuse_unknown(cls: type, data: dict[str, Any], what: str) -> None:
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} settings {sorted(unknown)}")


def _every_field(cls: type[_T], **settings: Any) -> _T:
    """``cls(**settings)``, refusing to let any setting fall back to its field default: a preset says them all."""
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in settings]  # type: ignore[arg-type]
    if missing:
        raise TypeError(f"a preset must set every {cls.__name__} field; missing {missing}")
    return cls(**settings)


# The reference implementation (evogm-method.md): N = dim, P = 2N (the optimizer's popsize), R = 2, T = 3, ρ = 0.3.
PAPER = _every_field(
    EvoGMConfig,
    generator=_every_field(
        GeneratorConfig,
        hidden=(128, 256, 256, 256, 128),  # reference code: MLP N→128→256→256→256→128→N, ReLU, Tanh output
        learning_rate=1e-4,  # reference YAML (the code's own default is 1e-3)
        epochs=200,  # reference YAML (the code's own default is 50); one full-batch Adam step each
        cycle_weight=100.0,  # reference code: loss = 100·cycle + 1·pull
        pull_weight=1.0,
        dual=True,  # paper §3.2: G_lw and G_wl with the cycle loss
    ),
    winner_fraction=0.3,  # paper Alg. 1, reference ρ
    iterations_per_round=3,  # reference T
    n_rounds=2,  # reference R
    reset_history_each_round=True,  # paper Alg. 1: H = {} each round
    reinit_each_round=True,  # paper Alg. 1: hybrid init each round
    shift_min_residual=0.0,  # paper §3.3: the plain top-N become the experts
    proposal_noise=0.0,  # paper Alg. 1: C = G_lw(pop), deterministic
    adapt_noise=False,
    max_proposal_noise=1.0,  # unused without noise
    success_target=0.2,  # unused without noise
    noise_per_sqrt_dim=False,
    boundary="clip",  # the reference evaluates c @ B unfolded; asks lie in the box, and clipping keeps c as made
    deduplicate=False,  # the reference re-evaluates repeats (~10 of 160 evaluations)
    screening=0,
    surrogate_points=300,  # unused without screening or the posterior recommendation
    surrogate_values="copula",  # unused without screening or the posterior recommendation
    surrogate_noise_floor=0.0,  # unused without screening or the posterior recommendation
    train_window=None,  # all of H
    recommendation="best",  # paper Alg. 1: the best point ever seen
    exploit_candidates=0,
    use_generator=True,  # paper Alg. 1: C = G_lw(population)
    screening_candidates="noise",  # unused without screening
    screening_batch="independent",  # unused without screening
    keep_step_across_rounds=False,  # unused without noise
    screening_scales=(1.0,),  # unused without screening
    screening_global=0.0,  # unused without screening
    screening_refine=0,  # unused without screening
    screening_refine_scale=0.25,  # unused without screening
    recommend_top_fraction=0.1,  # unused with recommendation="best"
    handoff_dim=None,  # the reference is EvoGM at every size
    handoff_sigma=0.3,  # unused without a handoff
    final_replicates_per_dim=0.0,  # the reference spends every evaluation on new points
    binomial_trials=None,  # unused with recommendation="best"
)

# Ours (docs/research.md): small generator, history kept across rounds, noisy proposals with step-size control whose
# start and cap are perturbation lengths (0.6 and 1.2, i.e. σ = 0.6/√N … 1.2/√N per coordinate), effective
# coefficients reflected into the box rather than clipped, no repeats, each proposal screened among 64 noisy
# variants by a GP surrogate, and generator and GP fitted on bounded windows of the history (most recent + best
# eighth) so a generation's cost stays flat; a basis shift skips top points that add no direction (residual < 0.3
# of their length), so the basis stays invertible; from 100 coordinates on (layer-wise merges) the search continues
# as sep-CMA-ES after the initial population.
DEFAULT = _every_field(
    EvoGMConfig,
    generator=_every_field(
        GeneratorConfig,
        hidden=(64, 64),  # the core issue's starting point (docs/research.md)
        learning_rate=1e-3,
        epochs=60,
        cycle_weight=100.0,
        pull_weight=1.0,
        dual=True,
    ),
    winner_fraction=0.3,
    iterations_per_round=3,
    n_rounds=None,  # rounds until the budget is spent
    reset_history_each_round=False,  # H re-expressed in the new basis
    reinit_each_round=False,
    shift_min_residual=0.3,  # ablation 10
    proposal_noise=0.6,  # ablation 7
    adapt_noise=True,
    max_proposal_noise=1.2,  # ablation 7
    success_target=0.2,  # ablation 17
    noise_per_sqrt_dim=True,  # ablation 7
    boundary="reflect",  # ablation 8
    deduplicate=True,
    screening=64,  # ablation 1
    surrogate_points=160,  # ablation 4
    surrogate_values="copula",  # ablation 17
    surrogate_noise_floor=0.0,  # ablation 18
    train_window=160,  # ablation 4
    recommendation="best",  # ablation 2: the posterior did not win
    exploit_candidates=0,  # ablation 5
    use_generator=True,  # research.md, round two: the no-generator ablation
    screening_candidates="noise",  # ablation 11: drawn from the generator was worse or level
    screening_batch="independent",
    keep_step_across_rounds=False,
    screening_scales=(1.0,),
    screening_global=0.0,
    screening_refine=0,  # ablation 17
    screening_refine_scale=0.25,
    recommend_top_fraction=0.1,  # unused with recommendation="best" (ablation 12)
    handoff_dim=100,  # ablation 13: sep-CMA-ES after the initial population from 100 coordinates on
    handoff_sigma=0.3,  # ablation 13
    final_replicates_per_dim=0.0,  # ablation 14
    binomial_trials=None,  # opt-in, for resampled validation (ablation 15)
)

PRESETS: dict[str, EvoGMConfig] = {
    "paper": PAPER,
    # Paper ablation "w/o cycle": no backward generator, G_lw trained by the pull term alone.
    "paper-single-generator": dataclasses.replace(PAPER, generator=dataclasses.replace(PAPER.generator, dual=False)),
    # Paper ablation "w/o rounds": the same T·R iterations in one round, so no basis shift.
    "paper-no-rounds": dataclasses.replace(PAPER, iterations_per_round=PAPER.iterations_per_round * 2, n_rounds=1),
    "default": DEFAULT,
}


def resolve(preset: str, config: EvoGMConfig | dict[str, Any] | None) -> EvoGMConfig:
    """The configuration a GenerativeOptimizer runs: an ``EvoGMConfig`` as given; a dict's settings over the
    named preset (so ``{"handoff_dim": 50}`` changes one setting of the default, not of the paper); else the
    preset."""
    if isinstance(config, EvoGMConfig):
        return config
    if config is not None and not isinstance(config, dict):
        raise TypeError(f"config must be an EvoGMConfig or a dict of its settings, got {type(config).__name__}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[preset] if config is None else PRESETS[preset].with_settings(config)
