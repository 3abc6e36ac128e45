"""Where EvoGM's asks come from, besides the generator itself: the initial population, exploration noise and its
step size, surrogate screening, and de-duplication. All in current coordinates c, all drawing from the
optimizer's one numpy Generator (the order of the draws is part of exact resume).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from evogm_opt.bounds import clip_into_unit_box
from evogm_opt.evogm.surrogate import GaussianProcess

#: current coordinates (and which rows are the generator's own proposals) -> where they are evaluated, u
IntoBox = Callable[[np.ndarray, np.ndarray], np.ndarray]


def initial_population(dim: int, popsize: int, rng: np.random.Generator) -> np.ndarray:
    """Reference hybrid init (paper Alg. 1, reference code): the dim one-hots, the uniform 1/dim mix, then
    uniform random points of [-1, 1]^dim; cut to P. After a basis shift the one-hots are the new experts."""
    rows = [np.eye(dim), np.full((1, dim), 1.0 / dim)]
    rows.append(rng.uniform(-1.0, 1.0, (max(0, popsize - dim - 1), dim)))
    return np.concatenate(rows)[:popsize]


def uniform(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Asks beyond the initial population before its results are in: uniform random in [-1, 1]^dim."""
    return rng.uniform(-1.0, 1.0, (n, dim))


# ---------------------------------------------------------------------- step size
def step_unit(dim: int, per_sqrt_dim: bool) -> float:
    """σ per coordinate for a setting of 1. With ``noise_per_sqrt_dim`` the settings are lengths of the whole
    perturbation (≈ σ·√dim): after a basis shift a perturbation of the current coordinates is a random
    combination of the round's top points, whose length grows with √dim at a fixed σ (ours, research ablation 7).
    """
    return 1.0 / np.sqrt(dim) if per_sqrt_dim else 1.0


def adapted_step(sigma: float, success: float, ceiling: float, target: float = 0.2) -> float:
    """Success rule (Rechenberg 1973), smooth form: σ ← σ·exp((s − t)/(1 − t)), kept in [1e-3, ceiling].

    ``success`` is the share of a generation's results that entered the best P of H (ours; the reference has
    no exploration noise); ``target`` t = 1/5 is the classic rule."""
    return float(np.clip(sigma * np.exp((success - target) / (1.0 - target)), 1e-3, ceiling))


# ---------------------------------------------------------------------- proposals
def perturbed(proposals: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian exploration noise on the generator's proposals, kept in [-1, 1] of the current coordinates."""
    return np.clip(proposals + sigma * rng.standard_normal(proposals.shape), -1.0, 1.0)


def screening_candidates(
    population: np.ndarray,
    made: np.ndarray,
    generate: Callable[[np.ndarray], np.ndarray],
    *,
    source: str,
    variants: int,
    sigma: float,
    rng: np.random.Generator,
    scales: tuple[float, ...] = (1.0,),
    far: int = 0,
    to_current: Callable[[np.ndarray], np.ndarray] = np.asarray,
) -> np.ndarray:
    """Per proposal ``made[i]`` = G_lw(population[i]), ``variants`` candidates (n, k, dim), the first G_lw(p) itself.

    ``source`` (config.CandidateSource): ``"noise"`` G_lw(p) + σε — the generator gives one point, isotropic
    noise the spread; ``"generator-input"`` G_lw(p + σε) — the generator's image of p's neighbourhood, so the
    spread is the learned map's (contracted where it pulls towards winners, kept where it does not);
    ``"generator-line"`` p + t·(G_lw(p) − p) + σε with t ~ U(0, 2): steps of random length along the learned
    loser→winner direction, overshooting it as often as falling short (ours, research round two).
    ``scales``: multiples of σ, the candidates' noise cycling through them (ablation 16). ``far``: the last ``far``
    candidates of each proposal are drawn uniformly over the box instead (original coordinates, mapped by
    ``to_current``), so expected improvement can leave a plateau (ablation 16).
    """
    n, dim = made.shape
    k = variants
    noise = sigma * rng.standard_normal((n, k, dim))
    if len(scales) > 1:  # candidate j's noise at scales[j % len(scales)]: coarse and fine steps side by side
        noise *= np.resize(np.asarray(scales), k)[None, :, None]
    noise[:, 0] = 0.0
    if source == "noise":
        out = clip_into_unit_box(made[:, None, :] + noise)
    elif source == "generator-input":
        inputs = clip_into_unit_box(population[:, None, :] + noise)
        out = clip_into_unit_box(generate(inputs.reshape(-1, dim))).reshape(n, k, dim)
        out[:, 0] = made
    else:
        t = rng.uniform(0.0, 2.0, (n, k, 1))
        t[:, 0] = 1.0
        out = clip_into_unit_box(population[:, None, :] + t * (made - population)[:, None, :] + noise)
    if far:
        out[:, k - far :] = to_current(uniform(n * far, dim, rng)).reshape(n, far, dim)
    return out


def screened(
    candidates: np.ndarray,
    surrogate: GaussianProcess,
    into_box: IntoBox,
    *,
    exploit: int,
    believer: bool = False,
    first_own: np.ndarray | bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Per proposal, of its candidates (n, k, dim; the first its noise-free proposal) ask the one with the highest
    expected improvement under the GP (ours, research ablation 1). With ``believer`` the proposals pick in turn,
    each earlier pick added to the GP at its posterior mean (:meth:`GaussianProcess.believing`), so that two
    proposals whose candidates overlap do not both ask the same peak of EI. With ``exploit`` = M > 0 the M asks
    of lowest EI are swapped for the candidates of best GP mean not already asked (ablation 5, rejected).

    ``first_own``: which proposals' first candidate is the generator's own output (all of them, unless a proposal
    was already moved, as in :func:`refined`). Returns the chosen rows and which of them are the generator's own,
    noise-free proposals.
    """
    n, k, dim = candidates.shape
    flat = candidates.reshape(-1, dim)
    own = np.zeros(len(flat), dtype=bool)
    own[::k] = first_own
    boxed = into_box(flat, own)
    ei, mean = surrogate.expected_improvement_and_mean(boxed)
    ei = ei.reshape(n, k)
    pick = np.argmax(ei, axis=1)
    if believer:
        boxed = boxed.reshape(n, k, dim)
        believed = surrogate
        for i in range(n):
            if i:
                ei[i] = believed.expected_improvement(boxed[i])
                pick[i] = int(np.argmax(ei[i]))
            if i + 1 < n:
                believed = believed.believing(boxed[i, pick[i]])
    chosen = candidates[np.arange(n), pick]
    projected = own[np.arange(n) * k + pick]
    m = min(exploit, n)
    if m:
        taken = set((np.arange(n) * k + pick).tolist())
        best = [i for i in np.argsort(mean, kind="stable") if int(i) not in taken][:m]
        weakest = np.argsort(ei[np.arange(n), pick], kind="stable")[: len(best)]
        chosen[weakest] = flat[best]
        projected[weakest] = own[best]
    return chosen, projected


def refined(
    chosen: np.ndarray,
    projected: np.ndarray,
    surrogate: GaussianProcess,
    into_box: IntoBox,
    *,
    variants: int,
    sigma: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """A second, finer screening around each chosen ask (ours, ablation 17): ``variants`` points at σ around it,
    the ask itself among them, and the one of highest expected improvement replaces it.

    Why: a wide cloud of candidates finds *where* EI is high but samples its peak coarsely (64 points at σ ≈ 0.6
    per coordinate in 4 dimensions); Bayesian optimisers polish the acquisition's maximum locally, and this is
    the cheapest form of that polish. A row that moves is no longer the generator's own proposal."""
    n, dim = chosen.shape
    candidates = np.repeat(chosen[:, None, :], variants, axis=1)
    # the ask itself stays as chosen (a whole-box candidate may lie outside [-1, 1] in shifted coordinates)
    candidates[:, 1:] = clip_into_unit_box(candidates[:, 1:] + sigma * rng.standard_normal((n, variants - 1, dim)))
    return screened(candidates, surrogate, into_box, exploit=0, first_own=projected)


def without_repeats(proposals: np.ndarray, evaluated: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Re-draw proposals that repeat an evaluated point or each other (coordinates equal on a 1e-9 grid), by
    Gaussian steps of ``scale``, at most 10 times each (ours: the reference re-evaluates repeats).

    Points are compared by their rounded coordinates in a hash set, so a generation costs O((P + H)·dim)
    rather than a distance scan per proposal (which dominated ask at 512 dims).
    """

    def key(row: np.ndarray) -> bytes:
        # float bytes, not int64: coordinates in a near-singular basis can exceed int64 after scaling;
        # + 0.0 makes -0.0 and 0.0 one key
        return (np.round(row * 1e9) + 0.0).tobytes()

    seen = {key(row) for row in evaluated}
    out = proposals.copy()
    dim = out.shape[1]
    for i in range(len(out)):
        for _ in range(10):
            if key(out[i]) not in seen:
                break
            out[i] = np.clip(out[i] + scale * rng.standard_normal(dim), -1.0, 1.0)
        seen.add(key(out[i]))
    return out
