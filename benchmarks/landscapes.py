"""Synthetic landscapes on the box [-1, 1]^N: BBOB functions from ``ioh`` and merge-like accuracies built on them.

Every landscape maps the optimizer's box to the BBOB domain by x = 5u and offers three views of a point u:

- ``observe(u, rng)`` — what the optimizer is told (noisy or quantised for merge-like landscapes);
- ``true_value(u)`` — what the recommendation is scored on (the noiseless function / accuracy);
- ``test_value(u)`` — a held-out view (an independent validation field for merge-like landscapes).

``sense`` says whether larger values are better ("max": accuracies) or smaller ("min": raw BBOB values), and
``optimum_value`` is the best true value, so precisions and normalised scores need no knowledge of the function.

Names (``make_landscape``, registered in ``LANDSCAPES``):

- ``bbob-f10`` / ``sbox-f10``: BBOB function 10 from ``ioh``'s ``BBOB`` or strict-box ``SBOX`` class, minimised.
- ``merge-f10-F200`` / ``merge-f10-R500``: merge-like accuracy on BBOB f10, see :class:`MergeLikeLandscape`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from evogm_bench.registry import Registry

BBOB_SCALE = 5.0  # our box [-1, 1]^N is the BBOB domain [-5, 5]^N
MERGE_SUITE_FUNCTIONS = (1, 7, 10, 15, 21)
"""The BBOB functions under the merge-like suite: sphere (easy), step ellipsoid (plateaus), rotated ellipsoid
(ill-conditioned), rotated Rastrigin (regular multimodal) and Gallagher 101 peaks (irregular multimodal)."""


class Landscape(Protocol):
    name: str
    dim: int
    sense: str  # "max" or "min"
    optimum_value: float

    def observe(self, u: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...

    def true_value(self, u: np.ndarray) -> np.ndarray: ...

    def test_value(self, u: np.ndarray) -> np.ndarray: ...


def _ioh_problem(function: int, dim: int, instance: int, problem_class: str = "BBOB"):
    import ioh

    if not 1 <= function <= 24:
        raise ValueError(f"BBOB functions are f1..f24, got f{function}")
    cls = {"BBOB": ioh.ProblemClass.BBOB, "SBOX": ioh.ProblemClass.SBOX}[problem_class]
    return ioh.get_problem(function, instance=instance, dimension=dim, problem_class=cls)


@dataclass
class BBOBLandscape:
    """A noiseless BBOB function (``ioh``), minimised; observed, true and test values coincide."""

    function: int
    dim: int
    instance: int = 1
    problem_class: str = "BBOB"  # or "SBOX": the strict-box variant with the optimum anywhere in the domain
    sense: str = "min"

    def __post_init__(self) -> None:
        self._problem = _ioh_problem(self.function, self.dim, self.instance, self.problem_class)
        self.optimum_value = float(self._problem.optimum.y)
        self.x_opt = np.asarray(self._problem.optimum.x) / BBOB_SCALE

    @property
    def name(self) -> str:
        return f"{self.problem_class.lower()}-f{self.function}"

    def raw(self, u: np.ndarray) -> np.ndarray:
        return np.asarray(self._problem((BBOB_SCALE * np.atleast_2d(u)).tolist()), dtype=float)

    def observe(self, u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.raw(u)

    def true_value(self, u: np.ndarray) -> np.ndarray:
        return self.raw(u)

    def test_value(self, u: np.ndarray) -> np.ndarray:
        return self.raw(u)


@dataclass
class SmoothField:
    """A frozen smooth random function z(u) ~ N(0, 1) per point: random Fourier features of an RBF kernel."""

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

    def __call__(self, u: np.ndarray) -> np.ndarray:
        return np.sqrt(2.0 / self.n_features) * np.cos(np.atleast_2d(u) @ self._w + self._b).sum(axis=1)


@dataclass
class ValidationItems:
    """A fixed validation set item by item, so that it can be scored on prefixes (issue 30's fidelity).

    Merge u answers item i correctly when i is among the K(u) items of lowest s_i(u) = √a·d_i + √(1−a)·ε_i(u):
    d_i ~ N(0, 1) is the item's difficulty, shared by every merge (a = ``agreement``: how much two distant merges
    agree on which items they get right), ε_i a frozen smooth field per item (random Fourier features, as
    :class:`SmoothField`), so nearby merges agree more. The items are read in one seeded permutation; the score at
    n examples is the share correct among its first n, so prefixes nest and the whole set scores exactly K/n_val.
    """

    dim: int
    n_val: int
    seed: int
    agreement: float = 0.5
    length_scale: float = 0.3
    n_features: int = 256

    def __post_init__(self) -> None:
        rng = np.random.default_rng([self.seed, self.n_val, 13])
        self.order = rng.permutation(self.n_val)
        self.difficulty = rng.standard_normal(self.n_val)
        self._w = rng.standard_normal((self.dim, self.n_features)) / self.length_scale
        self._b = rng.uniform(0, 2 * np.pi, self.n_features)
        self._a = rng.standard_normal((self.n_features, self.n_val))  # one column per item: its field's weights

    def prefix_correct(self, u: np.ndarray, k: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Items answered correctly among the first ``n`` of the order, for merges ``u`` that get ``k`` of all."""
        u = np.atleast_2d(u)
        field = np.sqrt(2.0 / self.n_features) * np.cos(u @ self._w + self._b) @ self._a
        score = np.sqrt(self.agreement) * self.difficulty + np.sqrt(1.0 - self.agreement) * field
        rank = np.argsort(np.argsort(score, axis=1, kind="stable"), axis=1, kind="stable")
        correct = (rank < np.asarray(k).reshape(-1, 1))[:, self.order]
        counts = np.cumsum(correct, axis=1)
        n = np.broadcast_to(np.asarray(n, dtype=int), (len(u),))
        return counts[np.arange(len(u)), n - 1]


def _corners(dim: int) -> np.ndarray:
    """The centre and the one-hots: where centre- or expert-biased starts begin."""
    return np.concatenate([np.zeros((1, dim)), np.eye(dim)])


class _MergeAccuracy:
    """What every merge-like landscape shares: accuracy from a scaled gap, and how it is observed.

    p(u) = a_lo + (a_hi − a_lo) / (1 + gap(u)^κ); observed as (R) Binomial(n_val, p)/n_val or (F) a fixed
    validation set round(n_val·clip(p + σ·z(u), 0, 1))/n_val with a frozen smooth field z; tested on a second
    frozen field z′.

    Fidelity (issue 30): observed on n ≤ n_val examples, (R) Binomial(n, p)/n on fresh examples, (F) the share
    correct among the first n items of the fixed set (:class:`ValidationItems`), which at n = n_val is the value
    above exactly. ``observe(u, rng)`` without n is the full-fidelity observation, unchanged.
    """

    a_lo: float
    a_hi: float
    kappa: float
    field_sigma: float
    noise: str
    n_val: int
    val_field: SmoothField
    test_field: SmoothField
    _validation_items: ValidationItems | None = None  # a plain attribute, not a field: :meth:`_items` builds it

    def _scaled_gap(self, u: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def true_value(self, u: np.ndarray) -> np.ndarray:
        """p(u): the accuracy an infinite validation set would report."""
        return self.a_lo + (self.a_hi - self.a_lo) / (1.0 + self._scaled_gap(u) ** self.kappa)

    def _fixed_count(self, u: np.ndarray, z: SmoothField) -> np.ndarray:
        """K(u) = round(n_val·clip(p + σ·z(u), 0, 1)): items of a fixed set of n_val answered correctly."""
        p = np.clip(self.true_value(u) + self.field_sigma * z(u), 0.0, 1.0)
        return np.round(self.n_val * p)

    def _fixed_set(self, u: np.ndarray, z: SmoothField) -> np.ndarray:
        return self._fixed_count(u, z) / self.n_val

    def test_value(self, u: np.ndarray) -> np.ndarray:
        """Accuracy on an independent held-out set (a second frozen field z′)."""
        return self._fixed_set(u, self.test_field)

    def observe(self, u: np.ndarray, rng: np.random.Generator, n: int | np.ndarray | None = None) -> np.ndarray:
        """Validation accuracy of ``u``; on the first ``n`` examples (one per row, or one for all) when given."""
        if n is not None:
            return self.correct(u, rng, n) / np.broadcast_to(n, (len(np.atleast_2d(u)),))
        if self.noise == "F":
            return self._fixed_set(u, self.val_field)
        return rng.binomial(self.n_val, self.true_value(u)) / self.n_val

    def correct(self, u: np.ndarray, rng: np.random.Generator, n: int | np.ndarray) -> np.ndarray:
        """Examples answered correctly among ``n`` (1 ≤ n ≤ n_val): (R) fresh ones, (F) the set's first n."""
        n = self._examples(n, len(np.atleast_2d(u)))
        if self.noise == "F":
            return self._items().prefix_correct(u, self._fixed_count(u, self.val_field), n)
        return rng.binomial(n, self.true_value(u))

    def extend(
        self, u: np.ndarray, rng: np.random.Generator, n_from: np.ndarray, correct_from: np.ndarray, n_to: np.ndarray
    ) -> np.ndarray:
        """Correct answers among ``n_to`` examples of merges already scored on their first ``n_from``, with
        ``correct_from`` right: the nested prefix scores only the new examples (R: fresh ones; F: the set's next
        ones, so the result is :meth:`correct` at ``n_to``, which already agrees with ``correct_from``)."""
        n_to = self._examples(n_to, len(np.atleast_2d(u)))
        if self.noise == "F":
            return self.correct(u, rng, n_to)
        return np.asarray(correct_from) + rng.binomial(n_to - np.asarray(n_from), self.true_value(u))

    def _examples(self, n: int | np.ndarray, rows: int) -> np.ndarray:
        n = np.broadcast_to(np.asarray(n), (rows,))
        if n.dtype.kind not in "iu" or np.any(n < 1) or np.any(n > self.n_val):
            raise ValueError(f"a fidelity is 1 … n_val = {self.n_val} examples, got {n.tolist()}")
        return n

    def _items(self) -> ValidationItems:
        """The fixed set item by item, built on first use (runs at full fidelity never need it)."""
        if self._validation_items is None:
            self._validation_items = ValidationItems(self.dim, self.n_val, self.seed * 1000 + 3)
        return self._validation_items


@dataclass
class MergeLikeLandscape(_MergeAccuracy):
    """Validation accuracy (to maximise) of a 'merge' whose quality is a BBOB function of λ ∈ [-1, 1]^N.

    True accuracy p(u) = a_lo + (a_hi − a_lo) / (1 + ((f(5u) − f_opt)/s)^κ), with s a tenth of the median gap
    f − f_opt at uniform random points: like a random task-vector merge with λ ∈ [-1, 1]^N, a random point is
    usually near chance level (p ≈ 0.27 at the median), and the good region is small. Observed as
    (R) Binomial(n_val, p)/n_val, fresh noise per evaluation, or (F) a fixed validation set,
    round(n_val·clip(p + σ·z(u), 0, 1))/n_val with a frozen smooth random field z: plateaus, 1/n_val steps and
    overfitting to the validation set. The BBOB instance is the first, from a seed-derived start, whose optimum
    is ≥ 0.25 (∞-norm) from the centre and every one-hot and where those score ≥ 5 points below a_hi, so
    centre- or expert-biased starts cannot win by construction.
    """

    function: int
    dim: int
    noise: str = "F"  # "R": binomial resampling; "F": fixed validation set
    n_val: int = 200
    seed: int = 0
    a_lo: float = 0.25
    a_hi: float = 0.85
    kappa: float = 1.5
    field_sigma: float = 0.02
    scale_divisor: float = 10.0
    sense: str = "max"

    def __post_init__(self) -> None:
        if self.noise not in ("R", "F"):
            raise ValueError("noise must be 'R' (binomial) or 'F' (fixed validation set)")
        if self.n_val < 1:
            raise ValueError("n_val must be >= 1")
        probe = np.random.default_rng([self.seed, self.dim, 7]).uniform(-1, 1, (512, self.dim))
        corners = _corners(self.dim)
        for instance in range(1 + 50 * self.seed, 1 + 50 * (self.seed + 1)):
            self.bbob = BBOBLandscape(self.function, self.dim, instance)
            self.x_opt = self.bbob.x_opt
            self.scale = float(np.median(self.bbob.raw(probe) - self.bbob.optimum_value)) / self.scale_divisor
            far = np.min(np.max(np.abs(corners - self.x_opt), axis=1)) >= 0.25
            if far and np.max(self.true_value(corners)) <= self.a_hi - 0.05:
                break
        else:
            raise RuntimeError(f"no BBOB f{self.function} instance with an optimum away from the centre/one-hots")
        self.instance = instance
        self.optimum_value = self.a_hi
        self.val_field = SmoothField(self.dim, seed=self.seed * 1000 + 1)
        self.test_field = SmoothField(self.dim, seed=self.seed * 1000 + 2)

    @property
    def name(self) -> str:
        return f"merge-f{self.function}-{self.noise}{self.n_val}"

    def _scaled_gap(self, u: np.ndarray) -> np.ndarray:
        return np.maximum(self.bbob.raw(u) - self.bbob.optimum_value, 0.0) / self.scale


@dataclass
class GroupedMergeLandscape(_MergeAccuracy):
    """A merge-like landscape over per-layer-group coefficients: dim = N experts × G groups, group-major.

    Each group g has its own N coefficients u_g. Layer-wise merging has two regularities this keeps: neighbouring
    groups want similar coefficients (group g's optimum is the N-dim BBOB optimum x* plus a drift that moves
    smoothly with g), and groups matter unequally (weights w_g, log-normal, fixed per seed). The gap is
    Σ_g w_g·(f(5(u_g − δ_g)) − f*) with one BBOB f of dimension N; accuracy and noise are as in
    :class:`MergeLikeLandscape` (s = a tenth of the median gap at random points). Block-separable across groups,
    not within a group.
    """

    function: int
    dim: int
    groups: int
    noise: str = "F"
    n_val: int = 200
    seed: int = 0
    a_lo: float = 0.25
    a_hi: float = 0.85
    kappa: float = 1.5
    field_sigma: float = 0.02
    drift: float = 0.15
    sense: str = "max"

    def __post_init__(self) -> None:
        if self.dim % self.groups:
            raise ValueError(f"dim {self.dim} is not a multiple of {self.groups} groups")
        self.n_experts = self.dim // self.groups
        rng = np.random.default_rng([self.seed, self.dim, self.groups, 11])
        inner = MergeLikeLandscape(self.function, self.n_experts, "R", self.n_val, self.seed)  # instance choice
        self.bbob = inner.bbob
        t = np.linspace(0.0, 1.0, self.groups)[:, None]
        phase = rng.uniform(0, 2 * np.pi, (1, self.n_experts))
        shift = self.drift * np.sin(2 * np.pi * t + phase)  # smooth in g: neighbouring groups agree
        self.shift = np.clip(inner.x_opt + shift, -0.95, 0.95) - inner.x_opt
        self.weights = rng.lognormal(0.0, 0.5, self.groups)
        self.weights /= self.weights.sum()
        self.x_opt = (np.clip(inner.x_opt + self.shift, -1, 1)).reshape(-1)
        probe = rng.uniform(-1, 1, (256, self.dim))
        self.scale = float(np.median(self._gap(probe))) / 10.0
        self.optimum_value = self.a_hi
        self.val_field = SmoothField(self.dim, seed=self.seed * 1000 + 1)
        self.test_field = SmoothField(self.dim, seed=self.seed * 1000 + 2)

    @property
    def name(self) -> str:
        return f"mergegroup-f{self.function}-{self.noise}{self.n_val}-g{self.groups}"

    def _gap(self, u: np.ndarray) -> np.ndarray:
        u = np.atleast_2d(u).reshape(-1, self.groups, self.n_experts)
        total = np.zeros(len(u))
        for g in range(self.groups):
            raw = self.bbob.raw(np.clip(u[:, g] - self.shift[g], -1, 1))
            total += self.weights[g] * np.maximum(raw - self.bbob.optimum_value, 0.0)
        return total

    def _scaled_gap(self, u: np.ndarray) -> np.ndarray:
        return self._gap(u) / self.scale


def merge_suite(noise: tuple[str, ...] = ("F", "R"), n_val: tuple[int, ...] = (200,)) -> list[str]:
    """Names of the merge-like suite: every function of ``MERGE_SUITE_FUNCTIONS`` × noise mode × n_val."""
    return [f"merge-f{f}-{m}{n}" for f in MERGE_SUITE_FUNCTIONS for m in noise for n in n_val]


def bbob_suite(problem_class: str = "bbob") -> list[str]:
    return [f"{problem_class}-f{f}" for f in range(1, 25)]


LandscapeFactory = Callable[[int, int], Landscape]
"""(dim, seed) → the landscape; the seed picks the instance."""

LANDSCAPES: Registry[LandscapeFactory] = Registry("landscape")
"""Landscape names, by family: ``make_landscape`` resolves a name here. A new landscape is one class with the
:class:`Landscape` protocol and one ``LANDSCAPES.add_family`` line (docs/architecture.md)."""


def _function(name: str, part: str, form: str) -> int:
    """The BBOB function number of a name's ``f<k>`` part; a ValueError naming the expected form otherwise."""
    if not part.startswith("f") or not part[1:].isdigit():
        raise ValueError(f"bad landscape name {name!r}; expected {form!r}")
    return int(part[1:])


def _observation(name: str, part: str, form: str) -> tuple[str, int]:
    """``R200`` / ``F200`` → (noise, n_val)."""
    if part[:1] not in ("R", "F") or not part[1:].isdigit():
        raise ValueError(f"bad landscape name {name!r}; expected {form!r}")
    return part[0], int(part[1:])


def _parts(name: str, count: int, form: str) -> list[str]:
    parts = name.split("-")
    if len(parts) != count:
        raise ValueError(f"bad landscape name {name!r}; expected {form!r}")
    return parts


BBOB_FORM, MERGE_FORM, GROUP_FORM = (
    "f<1..24>",
    "merge-f<1..24>-<R|F><n_val>",
    "mergegroup-f<1..24>-<R|F><n_val>-g<groups>",
)


def _bbob(problem_class: str) -> Callable[[str], LandscapeFactory]:
    form = f"{problem_class.lower()}-{BBOB_FORM}"

    def parse(name: str) -> LandscapeFactory:
        function = _function(name, _parts(name, 2, form)[1], form)
        return lambda dim, seed: BBOBLandscape(function, dim, instance=seed + 1, problem_class=problem_class)

    return parse


def _merge(name: str) -> LandscapeFactory:
    form = MERGE_FORM
    _, function_part, observation = _parts(name, 3, form)
    function, (noise, n_val) = _function(name, function_part, form), _observation(name, observation, form)
    return lambda dim, seed: MergeLikeLandscape(function, dim, noise=noise, n_val=n_val, seed=seed)


def _merge_group(name: str) -> LandscapeFactory:
    form = GROUP_FORM
    _, function_part, observation, group_part = _parts(name, 4, form)
    function, (noise, n_val) = _function(name, function_part, form), _observation(name, observation, form)
    if not group_part.startswith("g") or not group_part[1:].isdigit():
        raise ValueError(f"bad landscape name {name!r}; expected {form!r}")
    groups = int(group_part[1:])

    def build(dim: int, seed: int) -> Landscape:
        if groups < 1 or dim % groups:
            raise ValueError(f"{name}: dim {dim} is not a multiple of {groups} groups")
        return GroupedMergeLandscape(function, dim, groups, noise=noise, n_val=n_val, seed=seed)

    return build


LANDSCAPES.add_family("bbob-", _bbob("BBOB"), f"bbob-{BBOB_FORM}")
LANDSCAPES.add_family("sbox-", _bbob("SBOX"), f"sbox-{BBOB_FORM}")
LANDSCAPES.add_family("merge-", _merge, MERGE_FORM)
LANDSCAPES.add_family("mergegroup-", _merge_group, GROUP_FORM)


def make_landscape(name: str, dim: int, seed: int = 0) -> Landscape:
    """Build a landscape from its name (see :data:`LANDSCAPES`); ``seed`` picks the instance (BBOB instance
    ``seed + 1``). A name that is not registered, or does not fit ``dim``, is a ValueError."""
    return LANDSCAPES.resolve(name)(dim, seed)
