"""EvoGM settings as frozen data, and the named presets.

``paper`` is the reference implementation's choices (EvoGM code + its config YAML, see docs/method.md);
``default`` is ours and moves only when the benchmarks say so (docs/research.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from evogm_opt.generator import GeneratorConfig


@dataclass(frozen=True)
class EvoGMConfig:
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    winner_fraction: float = 0.3  # ρ: winners are the top max(1, int(ρ·|H|)) of the history
    iterations_per_round: int = 3  # T
    n_rounds: int | None = 2  # R; None: keep starting rounds until the budget is spent
    reset_history_each_round: bool = True  # reference: H = {} at every round; False: re-express H in the new basis
    reinit_each_round: bool = True  # reference: hybrid initial population at every round (one-hots = new basis)
    shift_min_residual: float = 0.0  # τ > 0: a new expert must have ≥ τ of its length outside the others' span
    proposal_noise: float = 0.0  # σ₀ of Gaussian noise added to G_lw's proposals (current coordinates)
    adapt_noise: bool = False  # 1/5th-success rule on σ (Rechenberg), measured per generation
    max_proposal_noise: float = 1.0  # the 1/5th rule never raises σ above this
    noise_per_sqrt_dim: bool = False  # True: σ₀ and the cap are lengths of the whole perturbation, σ = value/√dim
    boundary: str = "clip"  # c @ B outside the box: "clip" (project), "reflect" (mirror), "mixed" (own one clipped)
    deduplicate: bool = False  # re-draw proposals that repeat an evaluated point
    screening: int = 0  # K > 0: K noisy variants of each proposal, the GP's best (expected improvement) is asked
    surrogate_points: int = 300  # the GP is fitted on at most this many points (most recent + best eighth)
    train_window: int | None = None  # the generator trains on at most this many points (same rule); None: all
    recommendation: str = "best"  # "best": best observed; "posterior": best GP posterior mean among evaluated
    exploit_candidates: int = 0  # M > 0: the M lowest-EI asks of a screened batch become its M best-mean candidates

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
        if self.exploit_candidates < 0:
            raise ValueError("exploit_candidates must be >= 0")
        if self.boundary not in ("clip", "reflect", "mixed"):
            raise ValueError(f"boundary must be 'clip', 'reflect' or 'mixed', got {self.boundary!r}")
        if self.recommendation not in ("best", "posterior"):
            raise ValueError(f"recommendation must be 'best' or 'posterior', got {self.recommendation!r}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["generator"]["hidden"] = list(self.generator.hidden)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvoGMConfig:
        data = dict(data)
        gen = dict(data.pop("generator"))
        gen["hidden"] = tuple(int(h) for h in gen["hidden"])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown EvoGM settings {sorted(unknown)}")
        return cls(generator=GeneratorConfig(**gen), **data)


PAPER = EvoGMConfig()

PRESETS: dict[str, EvoGMConfig] = {
    "paper": PAPER,
    # Paper ablation "w/o cycle": no backward generator, G_lw trained by the pull term alone.
    "paper-single-generator": dataclasses.replace(PAPER, generator=dataclasses.replace(PAPER.generator, dual=False)),
    # Paper ablation "w/o rounds": the same T·R iterations in one round, so no basis shift.
    "paper-no-rounds": dataclasses.replace(PAPER, iterations_per_round=PAPER.iterations_per_round * 2, n_rounds=1),
    # Ours (docs/research.md): small generator, history kept across rounds, noisy proposals with step-size
    # control whose start and cap are perturbation lengths (0.6 and 1.2, i.e. σ = 0.6/√N … 1.2/√N per
    # coordinate), effective coefficients reflected into the box rather than clipped, no repeats, each proposal
    # screened among 64 noisy variants by a GP surrogate, and generator and GP fitted on bounded windows of the
    # history (most recent + best eighth) so a generation's cost stays flat; a basis shift skips top points
    # that add no direction (residual < 0.3 of their length), so the basis stays invertible.
    "default": EvoGMConfig(
        generator=GeneratorConfig(hidden=(64, 64), learning_rate=1e-3, epochs=60),
        n_rounds=None,
        reset_history_each_round=False,
        reinit_each_round=False,
        proposal_noise=0.6,
        adapt_noise=True,
        max_proposal_noise=1.2,
        noise_per_sqrt_dim=True,
        boundary="reflect",
        shift_min_residual=0.3,
        deduplicate=True,
        screening=64,
        surrogate_points=160,
        train_window=160,
    ),
}


def resolve(preset: str, config: EvoGMConfig | None) -> EvoGMConfig:
    if config is not None:
        if not isinstance(config, EvoGMConfig):
            raise TypeError(f"config must be an EvoGMConfig, got {type(config).__name__}")
        return config
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[preset]
