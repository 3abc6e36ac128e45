"""A small Gaussian-process surrogate that screens generator proposals before they cost an evaluation.

Why: at budgets of 10–50 evaluations per dimension, every evaluation is precious; a learned generator proposes
*where* to look, and a cheap regression model on the same history decides *which* of many such proposals is
worth evaluating (the idea of surrogate-assisted EAs, e.g. lq-CMA-ES; here with a GP so it also works on
multimodal landscapes).

Model: zero-mean GP on a rank-based Gaussian copula of the values, y' = Φ⁻¹((rank + ½)/n) — robust to the
heavy tails of raw objectives and to the ties of quantised accuracies (z-scores and a known noise floor were
measured and not adopted: research ablations 17, 18) — with an isotropic Matérn-5/2 kernel
(Rasmussen & Williams 2006, eq. 4.17), unit signal variance, and the length scale and noise variance chosen by
maximum log marginal likelihood (eq. 5.8) over a small grid. Acquisition: expected improvement (Jones et al.
1998) for minimisation. A fit on a few hundred points takes milliseconds.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

_LENGTH_SCALES = (0.15, 0.3, 0.6, 1.2)  # times sqrt(dim): distances in [-1, 1]^dim grow like sqrt(dim)
_NOISE_VARIANCES = (1e-3, 3e-2, 0.3)  # relative to the unit signal variance of the copula values


def copula(y: np.ndarray) -> np.ndarray:
    """Φ⁻¹((rank + ½)/n) with ties sharing their mean rank: order-preserving, marginally N(0, 1)."""
    ranks = stats.rankdata(y, method="average") - 1.0
    return stats.norm.ppf((ranks + 0.5) / len(y))


def matern52(dist: torch.Tensor, length_scale: float) -> torch.Tensor:
    r = dist * (np.sqrt(5.0) / length_scale)
    return (1.0 + r + r**2 / 3.0) * torch.exp(-r)


def _most_likely(target: torch.Tensor, dist: torch.Tensor, dim: int) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """Of the grid of length scales (times √dim) and noise variances, the pair of highest log marginal likelihood
    for ``target`` (eq. 5.8, up to a constant; the first of equals in grid order wins), with its Cholesky factor and
    α = K⁻¹·target. Pairs whose covariance is not positive definite are skipped."""
    eye = torch.eye(len(target), dtype=torch.float64)
    best = None
    for length_scale in (ls * np.sqrt(dim) for ls in _LENGTH_SCALES):
        kernel = matern52(dist, length_scale)
        for noise in _NOISE_VARIANCES:
            chol, info = torch.linalg.cholesky_ex(kernel + noise * eye)
            if int(info) != 0:
                continue
            alpha = torch.cholesky_solve(target[:, None], chol)[:, 0]
            lml = float(-0.5 * target @ alpha - torch.log(torch.diagonal(chol)).sum())
            if best is None or lml > best[0]:
                best = (lml, length_scale, noise, chol, alpha)
    if best is None:
        raise np.linalg.LinAlgError("no kernel setting gave a positive-definite covariance")
    return best[1], best[2], best[3], best[4]


class GaussianProcess:
    """Fit on (x, y) with y to be *minimised*; predict on the copula scale of the values (lower is better).

    Linear algebra runs in torch (float64), like the generator, so one thread pool does all the work: mixing in
    numpy's OpenBLAS threads made the generator's small multi-threaded matmuls several times slower.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        if len(x) < 2:
            raise ValueError("a surrogate needs at least two finite observations")
        self.x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        self.t = torch.as_tensor(copula(np.asarray(y, dtype=float)))
        dist = torch.cdist(self.x, self.x)
        self.length_scale, self.noise, self._chol, self._alpha = _most_likely(self.t, dist, self.x.shape[1])
        self.incumbent = float(torch.min(self.t - self.noise * self._alpha))  # the best posterior mean observed

    def _predict(self, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and sd as tensors."""
        x = torch.as_tensor(np.atleast_2d(x), dtype=torch.float64)
        ks = matern52(torch.cdist(x, self.x), self.length_scale)
        mean = ks @ self._alpha
        v = torch.linalg.solve_triangular(self._chol, ks.T, upper=False)
        var = torch.clamp(1.0 - (v**2).sum(dim=0), min=1e-12)
        return mean, torch.sqrt(var)

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the latent (noise-free) function."""
        mean, sd = self._predict(x)
        return mean.numpy(), sd.numpy()

    def expected_improvement(self, x: np.ndarray) -> np.ndarray:
        """EI below the best posterior mean at the observed points, a noise-robust incumbent (Jones et al. 1998,
        for minimisation)."""
        mean, sd = self._predict(x)
        z = (self.incumbent - mean) / sd
        pdf = torch.exp(-0.5 * z**2) / np.sqrt(2.0 * np.pi)
        return (sd * (z * torch.special.ndtr(z) + pdf)).numpy()
