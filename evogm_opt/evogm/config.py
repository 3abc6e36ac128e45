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
from typing import Any, TypeVar, get_args

from evogm_opt.evogm.basis import Boundary
from evogm_opt.evogm.generator import GeneratorConfig

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
    # the generator trains on at most this many points (same rule; ours, ablation 4); None: all of H (reference)
    train_window: int | None = None
    # from this many coordinates on, the search continues as sep-CMA-ES after the initial population (ours,
    # evogm/handoff.py); None: never
    handoff_dim: int | None = None
    # the handed-off sep-CMA-ES's initial step, a fraction of the box half-width
    handoff_sigma: float = 0.3

    def __post_init__(self) -> None:
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
        if self.screening < 0 or self.surrogate_points < 8:
            raise ValueError("screening must be >= 0 and surrogate_points >= 8")
        if self.train_window is not None and self.train_window < 8:
            raise ValueError("train_window must be >= 8 or None")
        if self.boundary == "mixed":  # removed in 0.2.0 (ablation 8's follow-up), refused like a removed setting
            raise ValueError(_removed("boundary", self.boundary, recorded=True))
        if self.boundary not in get_args(Boundary):
            raise ValueError(f"boundary must be 'clip' or 'reflect', got {self.boundary!r}")
        if self.handoff_dim is not None and self.handoff_dim < 2:
            raise ValueError(f"handoff_dim must be >= 2 or None, got {self.handoff_dim}")
        if not self.handoff_sigma > 0:
            raise ValueError(f"handoff_sigma must be > 0, got {self.handoff_sigma}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["generator"]["hidden"] = list(self.generator.hidden)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvoGMConfig:
        """Settings as :meth:`to_dict` writes them. A setting missing from ``data`` (a checkpoint of an older
        version, written before the setting existed) takes the paper's value — what the algorithm did then. A
        setting removed since (:data:`REMOVED_SETTINGS`) is accepted at its neutral value, which is what the
        algorithm does now, and refused at any other (one line naming the setting and the commit of its code)."""
        return PAPER.with_settings(_without_removed(data))

    def with_settings(self, data: dict[str, Any]) -> EvoGMConfig:
        """This configuration with the settings ``data`` names replaced (``generator`` a dict of its own);
        how a user's partial dict is layered over a preset."""
        data = dict(data)
        for name in data:
            if name in REMOVED_SETTINGS or name in _REMOVED_PARAMETERS:
                raise ValueError(_removed(name))
        _refuse_unknown(type(self), data, "EvoGM")
        gen = dict(data.pop("generator", {}))
        return dataclasses.replace(self, generator=generator_with(self.generator, gen), **data)


#: The commit that still holds the code of the settings removed in 0.2.0 (``git checkout a95bed8``).
REMOVED_AT = "a95bed8"
#: Settings removed in 0.2.0 (issue 28) → the value that switched them off. Each existed only for an ablation that
#: docs/research.md records as rejected; no preset turned one on. A setting enters the core when its ablation is
#: adopted (docs/architecture.md), so these left it; their code lives at :data:`REMOVED_AT`.
REMOVED_SETTINGS: dict[str, Any] = {
    "surrogate_values": "copula",  # ablation 17
    "surrogate_noise_floor": 0.0,  # ablation 18
    "recommendation": "best",  # ablations 2, 12, 15
    "exploit_candidates": 0,  # ablation 5
    "use_generator": True,  # the no-generator measurement: now benchmarks/research/variants.py
    "screening_candidates": "noise",  # ablation 11
    "screening_batch": "independent",  # ablation 16
    "keep_step_across_rounds": False,  # ablation 16
    "screening_scales": (1.0,),  # ablation 16
    "screening_global": 0.0,  # ablation 16
    "screening_refine": 0,  # ablation 17
    "final_replicates_per_dim": 0.0,  # ablation 14
    "binomial_trials": None,  # ablation 15
    "success_target": 0.2,  # ablation 17: the 1/5th rule is now evogm/proposals.py's constant
}
# removed parameters of a removed switch: read only while the switch was on, so any value of theirs is neutral
_REMOVED_PARAMETERS = {"recommend_top_fraction": "recommendation", "screening_refine_scale": "screening_refine"}


def _removed(name: str, value: Any = None, *, recorded: bool = False) -> str:
    setting = f"{name}={value!r}" if recorded else name
    where = f"its code lives at commit {REMOVED_AT} (git checkout {REMOVED_AT})"
    if name == "use_generator":
        where += "; the bench runs it as the peer evogm-no-generator (benchmarks/research/variants.py)"
    return f"EvoGM setting {setting} was removed in evogm-opt 0.2.0 (a rejected ablation, docs/research.md); {where}"


def _neutral(value: Any, off: Any) -> bool:
    """Whether a recorded ``value`` is the removed setting's ``off`` (a number as int or float, a tuple as a list)."""
    if isinstance(off, tuple):
        return isinstance(value, (list, tuple)) and list(value) == list(off)
    if off is None or isinstance(off, (bool, str)):
        return value is off or (type(value) is type(off) and value == off)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == off


def _without_removed(data: dict[str, Any]) -> dict[str, Any]:
    """A recorded configuration without the settings removed in 0.2.0, if each holds its neutral value (what the
    algorithm does now); a ValueError naming the first that does not."""
    data = dict(data)
    for name, off in REMOVED_SETTINGS.items():
        if name in data and not _neutral(value := data.pop(name), off):
            raise ValueError(_removed(name, value, recorded=True))
    for name in _REMOVED_PARAMETERS:
        data.pop(name, None)
    return data


def generator_with(base: GeneratorConfig, data: dict[str, Any]) -> GeneratorConfig:
    """``base`` with the generator settings ``data`` names replaced, ``hidden`` as a tuple whatever sequence it was
    written as (JSON and YAML give lists); shared by every configuration that nests a generator, so an unknown
    generator setting is refused in one line whichever configuration names it."""
    _refuse_unknown(GeneratorConfig, data, "generator")
    data = dict(data)
    if "hidden" in data:
        data["hidden"] = tuple(int(h) for h in data["hidden"])
    return dataclasses.replace(base, **data)


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


# The reference implementation (docs/method.md): N = dim, P = 2N (the optimizer's popsize), R = 2, T = 3, ρ = 0.3.
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
    noise_per_sqrt_dim=False,
    boundary="clip",  # the reference evaluates c @ B unfolded; asks lie in the box, and clipping keeps c as made
    deduplicate=False,  # the reference re-evaluates repeats (~10 of 160 evaluations)
    screening=0,
    surrogate_points=300,  # unused without screening
    train_window=None,  # all of H
    handoff_dim=None,  # the reference is EvoGM at every size
    handoff_sigma=0.3,  # unused without a handoff
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
    noise_per_sqrt_dim=True,  # ablation 7
    boundary="reflect",  # ablation 8
    deduplicate=True,
    screening=64,  # ablation 1
    surrogate_points=160,  # ablation 4
    train_window=160,  # ablation 4
    handoff_dim=100,  # ablation 13: sep-CMA-ES after the initial population from 100 coordinates on
    handoff_sigma=0.3,  # ablation 13
)

PRESETS: dict[str, EvoGMConfig] = {
    "paper": PAPER,
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
