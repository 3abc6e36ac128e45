"""A small Gaussian-process surrogate that screens generator proposals before they cost an evaluation.

Why: at budgets of 10–50 evaluations per dimension, every evaluation is precious; a learned generator proposes
*where* to look, and a cheap regression model on the same history decides *which* of many such proposals is
worth evaluating (the idea of surrogate-assisted EAs, e.g. lq-CMA-ES; here with a GP so it also works on
multimodal landscapes).

Model: zero-mean GP on a rank-based Gaussian copula of the values, y' = Φ⁻¹((rank + ½)/n) — robust to the
heavy tails of raw objectives and to the ties of quantised accuracies; z-scores and a known noise floor are
options, measured and not adopted (research ablations 17, 18) — with an isotropic Matérn-5/2 kernel
(Rasmussen & Williams 2006, eq. 4.17), unit signal variance, and the length scale and noise variance chosen by
maximum log marginal likelihood (eq. 5.8) over a small grid. Acquisition: expected improvement (Jones et al.
1998) for minimisation. A fit on a few hundred points takes milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from scipy import stats

_LENGTH_SCALES = (0.15, 0.3, 0.6, 1.2)  # times sqrt(dim): distances in [-1, 1]^dim grow like sqrt(dim)
_NOISE_VARIANCES = (1e-3, 3e-2, 0.3)  # relative to the unit signal variance of the copula values


def copula(y: np.ndarray) -> np.ndarray:
    """Φ⁻¹((rank + ½)/n) with ties sharing their mean rank: order-preserving, marginally N(0, 1)."""
    ranks = stats.rankdata(y, method="average") - 1.0
    return stats.norm.ppf((ranks + 0.5) / len(y))


def standardized(y: np.ndarray) -> np.ndarray:
    """(y − mean)/sd: keeps the values' shape (a quadratic bowl stays one), as Optuna's GPSampler and BoTorch
    model them; an all-equal y maps to zeros."""
    sd = float(np.std(y))
    return (y - np.mean(y)) / (sd if sd > 0 else 1.0)


#: How observed values become the GP's targets: "copula" (ranks, robust to tails and ties; ours) or "standardized"
#: (shape-keeping; ablation 17).
VALUE_TRANSFORMS = {"copula": copula, "standardized": standardized}


def distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a, b)


def matern52(dist: torch.Tensor, length_scale: float) -> torch.Tensor:
    r = dist * (np.sqrt(5.0) / length_scale)
    return (1.0 + r + r**2 / 3.0) * torch.exp(-r)


def most_likely(
    target: torch.Tensor, covariances: Iterable[tuple[Any, torch.Tensor]]
) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """Of (setting, covariance) pairs, the one of highest log marginal likelihood for ``target`` (eq. 5.8, up to a
    constant; the first of equals wins), with its Cholesky factor and α = K⁻¹·target. Covariances that are not
    positive definite are skipped."""
    best = None
    for setting, covariance in covariances:
        chol, info = torch.linalg.cholesky_ex(covariance)
        if int(info) != 0:
            continue
        alpha = torch.cholesky_solve(target[:, None], chol)[:, 0]
        lml = float(-0.5 * target @ alpha - torch.log(torch.diagonal(chol)).sum())
        if best is None or lml > best[0]:
            best = (lml, setting, chol, alpha)
    if best is None:
        raise np.linalg.LinAlgError("no kernel setting gave a positive-definite covariance")
    return best[1], best[2], best[3]


class GaussianProcess:
    """Fit on (x, y) with y to be *minimised*; predict on the transformed scale (copula ranks by default; lower
    is better).

    Linear algebra runs in torch (float64), like the generator, so one thread pool does all the work: mixing in
    numpy's OpenBLAS threads made the generator's small multi-threaded matmuls several times slower.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, values: str = "copula", noise_floor: float = 0.0) -> None:
        """``values``: a key of :data:`VALUE_TRANSFORMS`. ``noise_floor``: the observations' noise standard
        deviation in the values' own units, if known (0: fit the noise freely). Both transforms spread the values
        to about unit variance, so on a plateau whose values differ only by noise its bumps look like signal; with
        the floor the fitted noise variance is at least (noise_floor / sd(y))² — noise_floor in the targets' units
        exactly for z-scores, roughly for ranks, which do not scale linearly — and such a plateau looks flat
        (research ablation 18)."""
        if len(x) < 2:
            raise ValueError("a surrogate needs at least two finite observations")
        if values not in VALUE_TRANSFORMS:
            raise ValueError(f"values must be one of {sorted(VALUE_TRANSFORMS)}, got {values!r}")
        if not 0.0 <= noise_floor < float("inf"):
            raise ValueError(f"noise_floor must be finite and >= 0, got {noise_floor}")
        y = np.asarray(y, dtype=float)
        self.x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        self.t = torch.as_tensor(VALUE_TRANSFORMS[values](y))
        dim = self.x.shape[1]
        dist = distances(self.x, self.x)
        eye = torch.eye(len(self.x), dtype=torch.float64)
        floor, spread = 0.0, float(np.std(y))
        if noise_floor > 0:  # in units of the transformed values, whose spread is about 1
            floor = min((noise_floor / spread) ** 2, 1e3) if spread > noise_floor * 1e-3 else 1e3
        noises = sorted({max(v, floor) for v in _NOISE_VARIANCES})
        kernels = ((ls * np.sqrt(dim), matern52(dist, ls * np.sqrt(dim))) for ls in _LENGTH_SCALES)
        settings = (((ls, noise), k + noise * eye) for ls, k in kernels for noise in noises)
        (self.length_scale, self.noise), self._chol, self._alpha = most_likely(self.t, settings)
        self.incumbent = float(torch.min(self.t - self.noise * self._alpha))  # the best posterior mean observed
        self._fantasies = 0  # the last rows of x that :meth:`believing` added

    def believing(self, x: np.ndarray) -> GaussianProcess:
        """This GP with the points ``x`` added as observed, without noise, at its own posterior mean (the "kriging
        believer" of batch BO, Ginsbourger et al. 2010): the mean is unchanged everywhere, the uncertainty at ``x``
        vanishes, so the expected improvement of the next pick of a batch moves away from the picks before it.
        The kernel settings stay those fitted to the real data; the incumbent becomes the best of the real
        posterior means and the believed values, as if the picks had been observed."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        mean, _ = self._predict(x)
        new = object.__new__(GaussianProcess)
        new.x = torch.cat([self.x, torch.as_tensor(x)])
        new.t = torch.cat([self.t, mean])
        new.length_scale, new.noise = self.length_scale, self.noise
        new.incumbent = min(self.incumbent, float(torch.min(mean)))
        new._fantasies = self._fantasies + len(x)
        jitter = torch.full((len(new.x),), self.noise, dtype=torch.float64)
        jitter[len(new.x) - new._fantasies :] = 1e-8  # a believed value is exact; real ones keep the fitted noise
        covariance = matern52(distances(new.x, new.x), new.length_scale) + torch.diag(jitter)
        new._chol = torch.linalg.cholesky(covariance)
        new._alpha = torch.cholesky_solve(new.t[:, None], new._chol)[:, 0]
        return new

    def _predict(self, x: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and sd as tensors; a tensor ``x`` keeps its autograd graph (research scripts climb EI)."""
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.atleast_2d(x), dtype=torch.float64)
        ks = matern52(distances(x, self.x), self.length_scale)
        mean = ks @ self._alpha
        v = torch.linalg.solve_triangular(self._chol, ks.T, upper=False)
        var = torch.clamp(1.0 - (v**2).sum(dim=0), min=1e-12)
        return mean, torch.sqrt(var)

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the latent (noise-free) function."""
        mean, sd = self._predict(x)
        return mean.numpy(), sd.numpy()

    def fitted_mean(self) -> np.ndarray:
        """Posterior mean at the observed points: t − σ²_noise·α (no new solve needed)."""
        return (self.t - self.noise * self._alpha).numpy()

    def expected_improvement(self, x: np.ndarray) -> np.ndarray:
        """EI below the best posterior mean at the observed points (a noise-robust incumbent)."""
        return self.expected_improvement_and_mean(x)[0]

    def expected_improvement_and_mean(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """EI (as :meth:`expected_improvement`) and the posterior mean, from one prediction."""
        ei, mean = self._expected_improvement(x)
        return ei.numpy(), mean.numpy()

    def _expected_improvement(self, x: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """EI and the posterior mean as tensors (Jones et al. 1998, for minimisation)."""
        mean, sd = self._predict(x)
        z = (self.incumbent - mean) / sd
        pdf = torch.exp(-0.5 * z**2) / np.sqrt(2.0 * np.pi)
        return sd * (z * torch.special.ndtr(z) + pdf), mean


_SIGNAL_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)  # times the variance of the observed values
_BINOMIAL_LENGTH_SCALES = (0.1, 0.2, 0.4, 0.8, 1.6)  # times sqrt(dim)


def binomial_smoothed(u: np.ndarray, accuracy: np.ndarray, trials: int) -> np.ndarray:
    """GP posterior mean at the observed points of accuracies measured on ``trials`` freshly drawn examples.

    Why: an accuracy on n resampled examples carries binomial noise of *known* variance p(1 − p)/n; a GP told that
    variance (rather than fitting one, on a rank scale, as the screening GP does) can weigh one lucky look
    against its neighbours correctly. Raw scale, constant mean (the observed mean), isotropic Matérn-5/2; length
    scale and signal variance by maximum log marginal likelihood over a small grid, noise fixed per point at
    max(y(1 − y), 0.01)/n (research ablation 15).
    """
    y = torch.as_tensor(np.asarray(accuracy, dtype=np.float64))
    x = torch.as_tensor(np.asarray(u, dtype=np.float64))
    centred = y - y.mean()
    spread = float(torch.var(y, unbiased=False)) or 1e-6
    noise = torch.clamp(y * (1.0 - y), min=0.01) / trials
    dist = distances(x, x)
    shapes = (matern52(dist, ls * np.sqrt(x.shape[1])) for ls in _BINOMIAL_LENGTH_SCALES)
    covariances = ((None, spread * scale * k + torch.diag(noise)) for k in shapes for scale in _SIGNAL_SCALES)
    _, _, alpha = most_likely(centred, covariances)
    return (y - noise * alpha).numpy()  # posterior mean at the data: y − Σ_noise·α
