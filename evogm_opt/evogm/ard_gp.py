"""A Gaussian process with one length scale per coordinate, fitted by maximum a posteriori, and log expected
improvement maximised over the box: the surrogate of EvoGM's sequential shape (``sequential.py``).

Why a second GP beside the screening GP of the population shape (``surrogate.py``): that one ranks a few hundred
candidates a generation with an isotropic kernel chosen from a grid, which is all screening needs. A sequential
search lives or dies by where *one* point goes, so here the kernel has a length scale per coordinate (ARD) and
the hyperparameters are optimised, as in the BO peers it is measured against (Optuna's GPSampler, BoTorch, SMAC3;
docs/research.md, ablations 20, 29, 32 and 33).
Facts used, not code: Matérn-5/2 (Rasmussen & Williams 2006, eq. 4.17), the log marginal likelihood (eq. 5.8),
log-normal hyperparameter priors scaled with the dimension (Hvarfner et al. 2024, "Vanilla BO performs great in
high dimensions"), and LogEI (Ament et al. 2023) computed in a form that stays finite far from the incumbent.

Conventions: inputs are the unit box's coordinates in [-1, 1]^dim, values are *minimised*; values are
standardised before fitting. Float64 throughout; the caller sets the thread count (the optimizer fixes it).
The two inner loops — the fit's L-BFGS-B on the log posterior and the acquisition's climb — take their gradients
in closed form, in NumPy (``_log_posterior_and_grad``, ``log_ei_and_grad``): on these n ≤ 80 problems torch's
per-operation and autograd overhead was most of an ask (backward alone 40 %; the closed form takes an ask at N = 4
from 0.037 to 0.013 s, docs/research.md, ablation 37). The torch forms (``neg_log_posterior``, ``log_ei``) stay as
the definitions those gradients are tested against; ``log_ei`` also scores the pool.
``scale_of`` (length scales shared by groups of coordinates) and ``fixed`` (coordinates a climb keeps) are general
parameters of the kernel and of the climb; the sequential shape uses neither, the bench's mixed-space research
samplers use both.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy import linalg, optimize, special

_LOG_2PI_HALF = 0.5 * math.log(2.0 * math.pi)
_NOISE_FLOOR = 1e-6  # standardised units: the smallest noise variance the fit may choose


def matern52(x1: torch.Tensor, x2: torch.Tensor, length_scales: torch.Tensor) -> torch.Tensor:
    """k(x, x') = (1 + r√5 + 5r²/3)·exp(−r√5), r the length-scaled distance (unit signal variance).

    r² = |a|² + |b|² − 2a·b with a = x/ℓ, b = x'/ℓ: one matrix product instead of the n × n × d tensor of
    coordinate differences (ablation 32: the same fit to ≤ 1e-9 in the log hyperparameters, 3–5× faster at N = 16,
    n = 320, where that tensor and its backward pass were nearly all of an ask). The clamp removes the cancellation's
    small negatives at r ≈ 0; the kernel there is 1 − 5r²/6 + …, so an error of 1e-12 in r² moves it by as much."""
    a, b = x1 / length_scales, x2 / length_scales
    squared = (a * a).sum(-1)[:, None] + (b * b).sum(-1)[None, :] - 2.0 * (a @ b.T)
    r = torch.sqrt(torch.clamp(squared, min=0.0) + 1e-12) * math.sqrt(5.0)
    return (1.0 + r + r**2 / 3.0) * torch.exp(-r)


def log_h(z: torch.Tensor) -> torch.Tensor:
    """log(φ(z) + zΦ(z)), finite for every z: directly where z > −30 (through erfcx, which has no underflow),
    by its asymptotic series below (the direct form loses all digits to cancellation there)."""
    z_safe = torch.clamp(z, min=-30.0)
    direct = -0.5 * z_safe**2 + torch.log(
        torch.clamp(
            1.0 / math.sqrt(2.0 * math.pi) + 0.5 * z_safe * torch.special.erfcx(-z_safe / math.sqrt(2.0)), min=1e-300
        )
    )
    z_tail = torch.clamp(z, max=-30.0)
    tail = -0.5 * z_tail**2 - _LOG_2PI_HALF - 2.0 * torch.log(-z_tail) + torch.log1p(-3.0 / z_tail**2)
    return torch.where(z > -30.0, direct, tail)


class ARDGaussianProcess:
    """Zero-mean GP on standardised values: signal variance, noise variance and one length scale per coordinate
    by MAP (L-BFGS-B on their logarithms, from the previous fit's values and the prior's mode, or — ``mode_start``
    False — from the previous fit's values alone, the cheaper warm fit that Optuna's GPSampler also makes).

    Priors (on the unit cube's scale, [0, 1]^dim): length scale ~ LogNormal(√2 + ½·log dim, √3) — the
    dimension-scaled prior of Hvarfner et al., mode 0.41 at N = 4 and 0.82 at N = 16 —; noise variance ~
    LogNormal(−4, 1) (mode 0.007 of the values' variance); log signal variance ~ N(0, 1).
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        warm: np.ndarray | None = None,
        *,
        mode_start: bool = True,
        scale_of: np.ndarray | None = None,
    ) -> None:
        """``scale_of``: the length scale each coordinate uses (indices 0 … S−1; default: one per coordinate) —
        a categorical's one-hot coordinates share one, so the kernel sees it as one variable whose choices are
        all equally far apart (an overlap kernel). The priors are stated for S variables."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        if len(x) < 2:
            raise ValueError("a GP needs at least two observations")
        self.dim = x.shape[1]
        self.scale_of = np.arange(self.dim) if scale_of is None else np.asarray(scale_of, dtype=int)
        if self.scale_of.shape != (self.dim,) or set(self.scale_of) != set(range(self.scale_of.max() + 1)):
            raise ValueError(f"scale_of must name scales 0 … S−1 for each of the {self.dim} coordinates")
        self.n_scales = int(self.scale_of.max()) + 1
        self.y_mean = float(np.mean(y))
        self.y_scale = float(np.std(y)) or 1.0
        self.x = torch.as_tensor((x + 1.0) / 2.0)  # the unit cube, where the priors are stated
        self.t = torch.as_tensor((y - self.y_mean) / self.y_scale)
        self._x_np, self._t_np = self.x.numpy(), self.t.numpy()
        self.log_params = self.fit(warm, mode_start=mode_start or warm is None)
        self.factor()

    # ------------------------------------------------------------------ fit
    def unpack(self, log_params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(a length scale per coordinate, signal variance, noise variance) from [log scales, log signal, log noise]."""
        s = self.n_scales
        return torch.exp(log_params[:s])[self.scale_of], torch.exp(log_params[s]), torch.exp(log_params[s + 1])

    def neg_log_posterior(self, log_params: torch.Tensor) -> torch.Tensor:
        length_scales, signal, noise = self.unpack(log_params)
        n = len(self.t)
        cov = signal * matern52(self.x, self.x, length_scales) + (noise + _NOISE_FLOOR) * torch.eye(
            n, dtype=torch.float64
        )
        chol, info = torch.linalg.cholesky_ex(cov)
        if int(info) != 0:
            return torch.tensor(1e10, dtype=torch.float64, requires_grad=True)
        alpha = torch.cholesky_solve(self.t[:, None], chol)[:, 0]
        nll = 0.5 * self.t @ alpha + torch.log(torch.diagonal(chol)).sum()
        s = self.n_scales
        ls_mean = math.sqrt(2.0) + 0.5 * math.log(s)
        # log-normal densities of the length scales and the noise (in their own units, hence the + log terms)
        log_ls, log_noise = log_params[:s], log_params[s + 1]
        prior = (((log_ls - ls_mean) ** 2) / (2.0 * 3.0) + log_ls).sum()
        prior = prior + (log_noise + 4.0) ** 2 / 2.0 + log_noise + log_params[s] ** 2 / 2.0
        return nll + prior

    def _log_posterior_and_grad(self, log_params: np.ndarray) -> tuple[float, np.ndarray]:
        """:meth:`neg_log_posterior` and its gradient in closed form (R&W eq. 5.9): ∂/∂θ = ½ tr((K⁻¹ − ααᵀ) ∂K/∂θ),
        with ∂K/∂log ℓ_j = σ²·(5/3)(1 + r)e^(−r)·(x_j − x'_j)²/ℓ_j² for Matérn-5/2 (r = √5·ρ, ρ the scaled
        distance). A covariance that is not positive definite gets the same 1e10 and no gradient as the torch form."""
        x = self._x_np
        s = self.n_scales
        ls = np.exp(log_params[:s])[self.scale_of]
        signal, noise = math.exp(log_params[s]), math.exp(log_params[s + 1])
        scaled = x / ls
        r, decay = _scaled_distance(scaled, scaled)
        cov = signal * (1.0 + r + r * r / 3.0) * decay
        cov[np.diag_indices_from(cov)] += noise + _NOISE_FLOOR
        try:
            chol = linalg.cholesky(cov, lower=True, check_finite=False)
        except linalg.LinAlgError:
            return 1e10, np.zeros_like(log_params)
        t = self._t_np
        alpha = linalg.cho_solve((chol, True), t, check_finite=False)
        value = 0.5 * t @ alpha + np.log(np.diagonal(chol)).sum()
        outer = linalg.cho_solve((chol, True), np.eye(len(t)), check_finite=False) - np.outer(alpha, alpha)
        grad = np.empty_like(log_params)
        weight = 0.5 * outer * (signal * 5.0 / 3.0) * (1.0 + r) * decay  # symmetric
        # Σ_ik w_ik (x_ij − x_kj)² = 2 Σ_i (Σ_k w_ik) x_ij² − 2 x_jᵀ w x_j
        per_coordinate = 2.0 * (weight.sum(1) @ (x * x) - np.einsum("ij,ik,kj->j", x, weight, x)) / ls**2
        grad[:s] = np.bincount(self.scale_of, weights=per_coordinate, minlength=s)
        grad[s] = 0.5 * np.sum(outer * (cov - (noise + _NOISE_FLOOR) * np.eye(len(t))))
        grad[s + 1] = 0.5 * np.trace(outer) * noise
        # the priors: as in neg_log_posterior
        ls_mean = math.sqrt(2.0) + 0.5 * math.log(s)
        log_ls, log_signal, log_noise = log_params[:s], log_params[s], log_params[s + 1]
        value += (((log_ls - ls_mean) ** 2) / 6.0 + log_ls).sum()
        value += (log_noise + 4.0) ** 2 / 2.0 + log_noise + log_signal**2 / 2.0
        grad[:s] += (log_ls - ls_mean) / 3.0 + 1.0
        grad[s] += log_signal
        grad[s + 1] += log_noise + 5.0
        return float(value), grad

    def fit(self, warm: np.ndarray | None, mode_start: bool = True) -> np.ndarray:
        s = self.n_scales
        mode = np.concatenate([np.full(s, math.sqrt(2.0) + 0.5 * math.log(s) - 3.0), [0.0, -5.0]])
        starts = [] if warm is None else [np.asarray(warm, dtype=float)]
        if mode_start:
            starts.append(mode)
        bounds = [(-6.0, 4.0)] * s + [(-6.0, 4.0), (-16.0, 2.0)]
        best = None
        for start in starts:
            result = optimize.minimize(
                self._log_posterior_and_grad,
                start,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxiter": 200},
            )
            if best is None or result.fun < best.fun:
                best = result
        return np.asarray(best.x)

    def factor(self) -> None:
        length_scales, signal, noise = self.unpack(torch.as_tensor(self.log_params))
        self.length_scales, self.signal, self.noise = length_scales, signal, noise + _NOISE_FLOOR
        n = len(self.t)
        cov = signal * matern52(self.x, self.x, length_scales) + self.noise * torch.eye(n, dtype=torch.float64)
        jitter = 0.0
        for _ in range(8):  # no jitter, then 1e-9 … 1e-3: a covariance that needs more is not a fit to use
            chol, info = torch.linalg.cholesky_ex(cov + jitter * torch.eye(n, dtype=torch.float64))
            if int(info) == 0:
                break
            jitter = max(1e-9, jitter * 10.0)
        else:
            raise np.linalg.LinAlgError("the GP's covariance is not positive definite even with jitter 1e-3")
        self.cholesky = chol
        self.weights = torch.cholesky_solve(self.t[:, None], chol)[:, 0]
        # the climb's NumPy copies (log_ei_and_grad)
        self._x_np, self._t_np = self.x.numpy(), self.t.numpy()
        self._ls_np, self._signal_np = length_scales.numpy(), float(signal)
        self._chol_np, self._weights_np = chol.numpy(), self.weights.numpy()

    def conditioned(self, x_new: np.ndarray, y_new: np.ndarray) -> ARDGaussianProcess:
        """The same hyperparameters, with (x_new, y_new) added as observations: a fantasy for a batch (kriging
        believer) — no refit, only a new factorisation."""
        other = object.__new__(ARDGaussianProcess)
        other.dim, other.y_mean, other.y_scale = self.dim, self.y_mean, self.y_scale
        other.scale_of, other.n_scales = self.scale_of, self.n_scales
        other.x = torch.cat([self.x, torch.as_tensor((np.atleast_2d(x_new) + 1.0) / 2.0)])
        other.t = torch.cat([self.t, torch.as_tensor((np.atleast_1d(y_new) - self.y_mean) / self.y_scale)])
        other.log_params = self.log_params
        other.factor()
        return other

    # ------------------------------------------------------------------ predict
    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent mean and sd at x (unit-cube tensor), standardised units; differentiable in x."""
        ks = self.signal * matern52(x, self.x, self.length_scales)
        mean = ks @ self.weights
        v = torch.linalg.solve_triangular(self.cholesky, ks.T, upper=False)
        var = torch.clamp(self.signal - (v**2).sum(0), min=1e-12)
        return mean, torch.sqrt(var)

    def mean(self, x: np.ndarray) -> np.ndarray:
        """Posterior mean at box points x ([-1, 1]^dim), in the values' own units."""
        with torch.no_grad():
            m, _ = self.posterior(torch.as_tensor((np.atleast_2d(x) + 1.0) / 2.0))
        return m.numpy() * self.y_scale + self.y_mean

    def incumbent(self, rule: str = "observed") -> float:
        """EI's reference, standardised: the best (lowest) observed value (``"observed"``, as Optuna's GPSampler
        and SMAC3 use), or the best posterior mean at an observed point (``"mean"``, robust to noise, lower)."""
        if rule == "observed":
            return float(self.t.min())
        with torch.no_grad():
            m, _ = self.posterior(self.x)
        return float(m.min())

    def log_ei(self, x: torch.Tensor, incumbent: float) -> torch.Tensor:
        """log EI(x) below ``incumbent`` (standardised), x in the unit cube; differentiable."""
        mean, sd = self.posterior(x)
        z = (incumbent - mean) / sd
        return log_h(z) + torch.log(sd)

    def log_ei_and_grad(self, x: np.ndarray, incumbent: float) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`log_ei` at the rows of x (unit cube, NumPy) and its gradient in each row, in closed form: the
        climb's inner loop. With k(x, x_n) = σ²·m(r), ∂k/∂x_j = −σ²·(5/3)(1 + r)e^(−r)·(x_j − x_nj)/ℓ_j²; the
        mean's gradient is Σ_n w_n ∂k_n, the variance's −2 Σ_n (K⁻¹k)_n ∂k_n (zero where it is clamped), and
        d log h/dz = Φ(z)/h(z), which is ½·erfcx(−z/√2) / (1/√(2π) + ½·z·erfcx(−z/√2)) above the tail."""
        train, ls, signal = self._x_np, self._ls_np, self._signal_np
        r, decay = _scaled_distance(x / ls, train / ls)
        ks = signal * (1.0 + r + r * r / 3.0) * decay
        slope = -signal * 5.0 / 3.0 * (1.0 + r) * decay  # ∂k/∂x = slope · (x − x_n)/ℓ²
        mean = ks @ self._weights_np
        v = linalg.solve_triangular(self._chol_np, ks.T, lower=True, check_finite=False)
        beta = linalg.solve_triangular(self._chol_np.T, v, lower=False, check_finite=False).T  # K⁻¹k, per row
        raw_var = signal - (v * v).sum(0)
        var = np.maximum(raw_var, 1e-12)
        sd = np.sqrt(var)
        z = (incumbent - mean) / sd

        def gradient_of(coef: np.ndarray) -> np.ndarray:  # Σ_n coef_n ∂k(x, x_n)/∂x, per row
            c = slope * coef
            return (c.sum(1)[:, None] * x - c @ train) / ls**2

        d_mean = gradient_of(np.broadcast_to(self._weights_np, slope.shape))
        d_var = np.where((raw_var > 1e-12)[:, None], -2.0 * gradient_of(beta), 0.0)
        d_sd = d_var / (2.0 * sd[:, None])
        d_z = -d_mean / sd[:, None] - (z / sd)[:, None] * d_sd
        value, d_log_h = _log_h_and_slope(z)
        return value + np.log(sd), d_log_h[:, None] * d_z + d_sd / sd[:, None]


def maximise_log_ei(
    gp: ARDGaussianProcess,
    starts_pool: np.ndarray,
    n_starts: int = 8,
    maxiter: int = 60,
    incumbent_rule: str = "observed",
    fixed: np.ndarray | Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, float]:
    """The box point of highest LogEI: every point of ``starts_pool`` ([-1, 1]^dim) is scored, the ``n_starts``
    best distinct ones are climbed together by L-BFGS-B (the sum of independent LogEIs has a block-diagonal
    Hessian, so one run climbs all), and the best end point is returned with its LogEI. ``fixed``: a mask of
    coordinates each start keeps (a categorical's one-hot, which a gradient step would blur between choices), or a
    function of the starts ([-1, 1]^dim rows) giving one mask per start (coordinates that start does not use)."""
    incumbent = gp.incumbent(incumbent_rule)
    pool = torch.as_tensor((np.clip(starts_pool, -1.0, 1.0) + 1.0) / 2.0)
    with torch.no_grad():
        scores = gp.log_ei(pool, incumbent).numpy()
    order = np.argsort(-scores, kind="stable")
    chosen: list[int] = []
    for i in order:
        if all(np.max(np.abs(pool[i].numpy() - pool[j].numpy())) > 1e-6 for j in chosen):
            chosen.append(int(i))
        if len(chosen) == n_starts:
            break
    start = pool[chosen].numpy()
    k, dim = start.shape

    def value_and_grad(flat: np.ndarray) -> tuple[float, np.ndarray]:
        values, grads = gp.log_ei_and_grad(flat.reshape(k, dim), incumbent)
        return float(-values.sum()), np.nan_to_num(-grads.ravel())

    result = optimize.minimize(
        value_and_grad,
        start.ravel(),
        jac=True,
        method="L-BFGS-B",
        bounds=_climb_bounds(start, fixed(start * 2.0 - 1.0) if callable(fixed) else fixed),
        options={"maxiter": maxiter},
    )
    ends = np.clip(result.x.reshape(k, dim), 0.0, 1.0)
    with torch.no_grad():
        end_scores = gp.log_ei(torch.as_tensor(ends), incumbent).numpy()
    # a climb that ended lower than where it started (L-BFGS-B on a sum can trade one start for another) keeps its start
    start_scores = scores[chosen]
    better = end_scores >= start_scores
    points = np.where(better[:, None], ends, start)
    values = np.where(better, end_scores, start_scores)
    best = int(np.argmax(values))
    return points[best] * 2.0 - 1.0, float(values[best])


def _climb_bounds(start: np.ndarray, fixed: np.ndarray | None) -> list[tuple[float, float]]:
    """The unit cube for every start's coordinates, except that a ``fixed`` coordinate (a mask for all starts, or
    one row per start) stays where it starts."""
    low, high = np.zeros_like(start), np.ones_like(start)
    if fixed is not None:
        mask = np.broadcast_to(np.asarray(fixed, dtype=bool), start.shape)
        low, high = np.where(mask, start, low), np.where(mask, start, high)
    return list(zip(low.ravel().tolist(), high.ravel().tolist(), strict=True))


def _scaled_distance(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(r, e^(−r)) between the rows of a and b, already divided by the length scales: r = √5·ρ, with ρ² by the
    same inner-product form and clamp as :func:`matern52`, so both forms agree to rounding."""
    squared = (a * a).sum(-1)[:, None] + (b * b).sum(-1)[None, :] - 2.0 * (a @ b.T)
    r = np.sqrt(np.maximum(squared, 0.0) + 1e-12) * math.sqrt(5.0)
    return r, np.exp(-r)


def _log_h_and_slope(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`log_h` and its derivative Φ(z)/h(z), in NumPy; the same two branches at z = −30."""
    z_safe = np.maximum(z, -30.0)
    scaled = special.erfcx(-z_safe / math.sqrt(2.0))
    inner = 1.0 / math.sqrt(2.0 * math.pi) + 0.5 * z_safe * scaled
    direct = -0.5 * z_safe**2 + np.log(np.maximum(inner, 1e-300))
    direct_slope = np.where(inner > 1e-300, 0.5 * scaled / np.maximum(inner, 1e-300), -z_safe)
    z_tail = np.minimum(z, -30.0)
    tail = -0.5 * z_tail**2 - _LOG_2PI_HALF - 2.0 * np.log(-z_tail) + np.log1p(-3.0 / z_tail**2)
    tail_slope = -z_tail - 2.0 / z_tail + (6.0 / z_tail**3) / (1.0 - 3.0 / z_tail**2)
    above = z > -30.0
    return np.where(above, direct, tail), np.where(above, direct_slope, tail_slope)
