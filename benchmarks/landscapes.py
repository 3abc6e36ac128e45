"""Cheap landscapes that look like LLM merging: a true accuracy p(λ) observed through a finite validation set.

A base function f on the box [-1, 1]^dim (a rotated ill-conditioned ellipsoid, or a rotated Rastrigin-type
multimodal function; both ours, simple stand-ins until the BBOB suite is wired in) becomes an accuracy

    p(x) = a_lo + (a_hi − a_lo) / (1 + ((f(x) − f_opt) / s)^κ)

observed either as (R) Binomial(n_val, p)/n_val — fresh noise per evaluation — or (F) a *fixed* validation set,
round(n_val · clip(p + σ·z(x), 0, 1)) / n_val with a frozen smooth random field z: plateaus, 1/n_val steps and
overfitting to the validation set, like real merging. The optimum is drawn away from the centre and from every
one-hot, and those score at least 5 points below it, so centre- or expert-biased starts cannot win by
construction. Optimizers are scored on p at their recommendation (``true_value``) and on an independent field z′
(``test_value``), not on the luckiest observation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _rotation(rng: np.random.Generator, dim: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def _optimum(rng: np.random.Generator, dim: int) -> np.ndarray:
    """A point at least 0.25 from the centre and from every one-hot (∞-norm), inside [-0.8, 0.8]^dim."""
    for _ in range(1000):
        x = rng.uniform(-0.8, 0.8, dim)
        corners = np.concatenate([np.zeros((1, dim)), np.eye(dim)])
        if np.min(np.max(np.abs(corners - x), axis=1)) >= 0.25:
            return x
    raise RuntimeError("could not place an optimum away from the centre and the one-hots")


@dataclass
class SmoothField:
    """A frozen smooth random function z(x) ~ N(0, 1) per point: random Fourier features (RBF kernel)."""

    dim: int
    seed: int
    length_scale: float = 0.3
    n_features: int = 256
    _w: np.ndarray = field(init=False, repr=False)
    _b: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self._w = rng.standard_normal((self.dim, self.n_features)) / self.length_scale
        self._b = rng.uniform(0, 2 * np.pi, self.n_features)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.sqrt(2.0 / self.n_features) * np.cos(np.atleast_2d(x) @ self._w + self._b).sum(axis=1)


@dataclass
class MergeLikeLandscape:
    """Observed validation accuracy (to maximise) over λ ∈ [-1, 1]^dim."""

    base: str  # "ellipsoid" | "rastrigin"
    dim: int
    noise: str = "F"  # "R": binomial resampling; "F": fixed validation set
    n_val: int = 200
    instance: int = 0
    a_lo: float = 0.25
    a_hi: float = 0.85
    kappa: float = 1.5
    field_sigma: float = 0.02

    def __post_init__(self) -> None:
        if self.base not in ("ellipsoid", "rastrigin"):
            raise ValueError(f"unknown base function {self.base!r}")
        if self.noise not in ("R", "F"):
            raise ValueError("noise must be 'R' (binomial) or 'F' (fixed validation set)")
        rng = np.random.default_rng([self.instance, self.dim, 7])
        self.rotation = _rotation(rng, self.dim)
        self.conditioning = 10.0 ** (3.0 * np.arange(self.dim) / max(1, self.dim - 1))
        probe = rng.uniform(-1, 1, (256, self.dim))
        corners = np.concatenate([np.zeros((1, self.dim)), np.eye(self.dim)])
        for _ in range(200):
            self.x_opt = _optimum(rng, self.dim)
            # scale s: f at a uniformly random point is typically a few s, so random search is clearly beatable
            self.scale = float(np.median(self.base_value(probe))) / 3.0
            # the centre and the one-hots must also be clearly worse in *value*, not only in position
            if np.max(self.true_value(corners)) <= self.a_hi - 0.05:
                break
        else:
            raise RuntimeError("could not place an optimum clearly better than the centre and the one-hots")
        self.val_field = SmoothField(self.dim, seed=self.instance * 1000 + 1)
        self.test_field = SmoothField(self.dim, seed=self.instance * 1000 + 2)

    @property
    def name(self) -> str:
        return f"{self.base}-{self.noise}{self.n_val}"

    def base_value(self, x: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(x) - self.x_opt) @ self.rotation.T
        if self.base == "ellipsoid":
            return (self.conditioning * z**2).sum(axis=1) / self.conditioning.sum() * self.dim
        return (z**2 - 0.1 * np.cos(2 * np.pi * 3.0 * z) + 0.1).sum(axis=1)

    def true_value(self, x: np.ndarray) -> np.ndarray:
        """p(x): the accuracy an infinite validation set would report."""
        gap = np.maximum(self.base_value(x), 0.0) / self.scale
        return self.a_lo + (self.a_hi - self.a_lo) / (1.0 + gap**self.kappa)

    def _fixed_set(self, x: np.ndarray, z: SmoothField) -> np.ndarray:
        p = np.clip(self.true_value(x) + self.field_sigma * z(x), 0.0, 1.0)
        return np.round(self.n_val * p) / self.n_val

    def test_value(self, x: np.ndarray) -> np.ndarray:
        """Accuracy on an independent held-out set (a second frozen field z′)."""
        return self._fixed_set(x, self.test_field)

    def observe(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """What an optimizer sees: the validation accuracy of each row."""
        if self.noise == "F":
            return self._fixed_set(x, self.val_field)
        return rng.binomial(self.n_val, self.true_value(x)) / self.n_val


def make_landscape(name: str, dim: int, instance: int = 0) -> MergeLikeLandscape:
    """Parse ``"<base>-<R|F><n_val>"``, e.g. ``"ellipsoid-F200"``."""
    try:
        base, spec = name.rsplit("-", 1)
        return MergeLikeLandscape(base=base, dim=dim, noise=spec[0], n_val=int(spec[1:]), instance=instance)
    except (ValueError, IndexError) as exc:
        raise ValueError(f"bad landscape name {name!r}; expected e.g. 'ellipsoid-F200' or 'rastrigin-R500'") from exc
