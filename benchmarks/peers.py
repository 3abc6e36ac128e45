"""The optimizers the bench compares, each behind one small adapter.

Every peer *maximises a score* on the box [-1, 1]^dim (the runner negates minimised landscapes) and is one of:

- an **ask/tell peer**: ``ask(n_left) -> rows``, ``tell(rows, scores)``, ``recommend() -> point``;
- a **driver peer**: ``run(evaluate)``, calling ``evaluate(rows) -> scores`` until it raises ``BudgetExhausted``
  (lq-CMA-ES, whose surrogate decides inside one generation which points get a true evaluation).

Our own optimizers come from ``evogm_opt.registry`` under the same names, with the bench's settings on top stated in
``BENCH_SETTINGS``; other libraries' optimizers have an adapter here. Settings that differ from a library's
defaults are stated beside the adapter. Peers from optional extras
(nevergrad, optuna) are listed always and reported as skipped, with the extra to install, when missing.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from evogm_bench.registry import Registry
from evogm_bench.research import variants

from evogm_opt import PRESETS, Optimizer, registry
from evogm_opt.cli_faults import install_hint


class BudgetExhausted(Exception):
    """Raised by the runner's evaluate() when a driver peer asks for more evaluations than the budget allows."""


class OwnOptimizer:
    """Any :class:`evogm_opt.Optimizer`; it recommends what its ``recommend()`` says (``best`` by default)."""

    def __init__(self, opt: Optimizer) -> None:
        self.opt = opt

    def ask(self, n_left: int) -> np.ndarray:
        return self.opt.ask(min(self.opt.popsize, n_left))

    def tell(self, x: np.ndarray, scores: np.ndarray) -> None:
        self.opt.tell(x, scores)

    def recommend(self) -> np.ndarray:
        return self.opt.recommend().x


class NevergradPeer:
    """A nevergrad optimizer on ``Array(shape=(dim,), lower=-1, upper=1)`` (nevergrad then sets σ to a sixth of
    the range), sequential (``num_workers=1``). Recommends nevergrad's ``recommend()`` (noise-aware for NGOpt),
    not the best observed point. nevergrad's advisory warnings are silenced; they say nothing about a run.
    """

    def __init__(self, optimizer_cls: Any, dim: int, seed: int, budget: int) -> None:
        import nevergrad as ng

        # NGOpt may hand the run to scipy's COBYLA in a worker thread, out of reach of catch_warnings below
        warnings.filterwarnings("ignore", category=UserWarning, module=r"scipy\._lib\.pyprima")
        param = ng.p.Array(shape=(dim,), lower=-1.0, upper=1.0)
        param.random_state = np.random.RandomState(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.opt = optimizer_cls(parametrization=param, budget=budget, num_workers=1)

    def ask(self, n_left: int) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._candidate = self.opt.ask()
        return np.asarray(self._candidate.value, dtype=float).reshape(1, -1)

    def tell(self, x: np.ndarray, scores: np.ndarray) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.opt.tell(self._candidate, -float(scores[0]))  # nevergrad minimises

    def recommend(self) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(self.opt.recommend().value, dtype=float)


class OptunaPeer:
    """An Optuna sampler via ``study.ask``/``study.tell``, one trial at a time; recommends ``study.best_trial``
    (the best observed point). ``tpe``: ``TPESampler(multivariate=True)`` (10 random start-up trials); ``gp``:
    ``GPSampler`` with its defaults (a GP with log-EI, 10 random start-up trials). Only the seed is set.
    ``expert_start``: the first dim + 1 trials are EvoGM's informed start — the one-hots (each expert alone) and
    the uniform 1/dim mix — enqueued, so a comparison can tell a better search from a better start."""

    def __init__(self, dim: int, seed: int, budget: int, sampler: str = "tpe", expert_start: bool = False) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if sampler == "tpe":
                chosen = optuna.samplers.TPESampler(multivariate=True, seed=seed)
            else:
                chosen = optuna.samplers.GPSampler(seed=seed)
        self.study = optuna.create_study(direction="maximize", sampler=chosen)
        self.space = {f"x{i}": optuna.distributions.FloatDistribution(-1.0, 1.0) for i in range(dim)}
        if expert_start:  # EvoGM's informed start, given to the peer too: the one-hots, then the uniform mix
            for row in np.concatenate([np.eye(dim), np.full((1, dim), 1.0 / dim)]):
                self.study.enqueue_trial({k: float(v) for k, v in zip(self.space, row)})

    def ask(self, n_left: int) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._trial = self.study.ask(self.space)
        return np.array([[self._trial.params[k] for k in self.space]])

    def tell(self, x: np.ndarray, scores: np.ndarray) -> None:
        self.study.tell(self._trial, float(scores[0]))

    def recommend(self) -> np.ndarray:
        params = self.study.best_trial.params
        return np.array([params[k] for k in self.space])


def _optuna(sampler: str, expert_start: bool = False) -> Callable[[int, int, int], OptunaPeer]:
    return lambda dim, seed, budget: OptunaPeer(dim, seed, budget, sampler, expert_start)


def _bo(name: str) -> Callable[[int, int, int], Any]:
    def build(dim: int, seed: int, budget: int) -> Any:
        from evogm_bench import bo_peers

        return getattr(bo_peers, name)(dim, seed, budget)

    return build


class LQCMAES:
    """lq-CMA-ES (Hansen 2019): pycma's CMA-ES with its linear-quadratic surrogate (``SurrogatePopulation``).

    The surrogate decides which of a generation's points are truly evaluated, so this peer drives the loop.
    Same start as ``cmaes`` (centre, σ0 = 0.5, bounds handled by pycma) and the same relaxed stopping; pycma's
    documented injection of the model optimum each generation. Recommends the best truly evaluated point.
    """

    def __init__(self, dim: int, seed: int, budget: int) -> None:
        self.dim, self.seed, self.budget = dim, seed, budget

    def run(self, evaluate: Callable[[np.ndarray], np.ndarray]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import cma
            import cma.fitness_models as fm

            def loss(x: np.ndarray) -> float:
                return -float(evaluate(np.clip(np.asarray(x, dtype=float), -1, 1).reshape(1, -1))[0])

            restart = 0
            while True:  # IPOP restarts until the budget runs out (evaluate raises)
                options = {
                    "bounds": [-1.0, 1.0],
                    "seed": int(self.seed * 100 + restart + 1),
                    "verbose": -9,
                    "CMA_injections_threshold_keep_len": 1,
                    "popsize": (4 + int(3 * np.log(self.dim))) * 2**restart,
                    "tolflatfitness": 1000,
                    "tolfun": 0.0,
                    "tolfunhist": 0.0,
                    "tolx": 1e-9,
                }
                es = cma.CMAEvolutionStrategy(np.zeros(self.dim), 0.5, options)
                surrogate = fm.SurrogatePopulation(loss)
                while not es.stop():
                    x = es.ask()
                    es.tell(x, surrogate(x))
                    es.inject([surrogate.model.xopt])
                restart += 1


# IPOP restarts; flat-fitness and f-tolerances relaxed since quantised accuracies make whole generations tie
_RELAXED_CMA = {"tolflatfitness": 1000, "tolfun": 0.0, "tolfunhist": 0.0, "tolx": 1e-9}


def _keep_going(preset: str) -> dict[str, Any]:
    """The paper presets keep starting rounds past R = 2, so that they can use budgets above 160."""
    return {"config": dataclasses.replace(PRESETS[preset], n_rounds=None)}


# What the bench sets on top of the registry's defaults, per name (every other registered name runs as registered)
BENCH_SETTINGS: dict[str, dict[str, Any]] = {
    "evogm-paper": _keep_going("paper"),
    "cmaes": {"restarts": 9, "cma_options": _RELAXED_CMA},
    "sep-cmaes": {"restarts": 9, "cma_options": _RELAXED_CMA},
}


def _registered(name: str, **settings: Any) -> Callable[[int, int, int], OwnOptimizer]:
    """An optimizer of ``evogm_opt.registry``, maximising, with the run's budget as ``max_evals``."""

    def build(dim: int, seed: int, budget: int) -> OwnOptimizer:
        return OwnOptimizer(registry.create(name, dim, seed=seed, maximize=True, max_evals=budget, **settings))

    return build


def _nevergrad(name: str, **config: Any) -> Callable[[int, int, int], NevergradPeer]:
    def build(dim: int, seed: int, budget: int) -> NevergradPeer:
        import nevergrad as ng

        cls = getattr(ng.optimizers, name)
        return NevergradPeer(cls(**config) if config else cls, dim, seed, budget)

    return build


@dataclass(frozen=True)
class Peer:
    build: Callable[[int, int, int], Any]  # (dim, seed, budget) -> adapter
    requires: str | None = None  # importable module of an optional extra
    extra: str | None = None
    slow: bool = False  # seconds per evaluation: one small smoke test in CI, no grids (docs/benchmarks.md)

    @property
    def available(self) -> bool:
        return self.requires is None or importlib.util.find_spec(self.requires) is not None

    @property
    def missing_note(self) -> str:
        return f"needs `{self.requires}`: {install_hint(self.extra or self.requires)}"


PEERS: Registry[Peer] = Registry("optimizer")
"""Every peer the bench runs, by name (a name registered twice is refused); ``evogm+key=value+…`` and
``evogm@preset+…`` are one parametric family (:func:`evogm_variant`)."""

for _name in registry.names():  # our own optimizers, as the core registers them, with the bench's settings on top
    PEERS.add(_name, Peer(_registered(_name, **BENCH_SETTINGS.get(_name, {}))))
# "evogm" in its population shape where its rule picks the sequential one (dim <= 4, budget <= 20·dim): the default's
# records at N = 4 before ablation 33 are this peer's (docs/research.md)
PEERS.add("evogm-population", Peer(_registered("evogm", preset="default")))
# research variants (evogm_bench.research.variants): the no-generator measurement and the paper's ablations
for _name in variants.VARIANTS:
    PEERS.add(_name, Peer(lambda d, s, b, n=_name: OwnOptimizer(variants.for_bench(n, d, s, b))))
# research round three (evogm_bench.research.sequential): one point per ask by LogEI, G_lw's proposals as starts;
# a GP fit per ask (0.1–0.3 s), so slow: no overhead grid in CI (tests/test_research_sequential.py runs them small)
for _name in variants.SEQUENTIAL:
    PEERS.add(_name, Peer(lambda d, s, b, n=_name: OwnOptimizer(variants.sequential_for_bench(n, d, s, b)), slow=True))
# peers from other libraries, run through the bench's own adapters above
PEERS.add("lq-cmaes", Peer(LQCMAES))
PEERS.add("ng-confpso", Peer(_nevergrad("ConfPSO", popsize=16), "nevergrad", "nevergrad"))
PEERS.add("ngopt", Peer(_nevergrad("NGOpt"), "nevergrad", "nevergrad"))
PEERS.add("optuna-tpe", Peer(_optuna("tpe"), "optuna", "optuna"))
# Bayesian optimisation (evogm_bench.bo_peers): each costs seconds per evaluation here, see docs/benchmarks.md
PEERS.add("optuna-gp", Peer(_optuna("gp"), "optuna", "optuna", slow=True))
# the same, its first N + 1 trials EvoGM's one-hots and uniform mix (enqueued): is a lead only the start?
PEERS.add("optuna-gp-experts", Peer(_optuna("gp", expert_start=True), "optuna", "optuna", slow=True))
PEERS.add("botorch-qlognei", Peer(_bo("BoTorchQLogNEI"), "botorch", "bo", slow=True))
PEERS.add("smac-bb", Peer(_bo("SMACBlackBox"), "smac", "bo", slow=True))


def _parse_value(text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def evogm_variant(name: str) -> Peer:
    """``evogm[@preset]+key=value+...``: a GenerativeOptimizer with config fields overridden, for ablations.

    Keys are EvoGMConfig fields, ``generator.<field>`` for the generator's, ``popsize`` (absolute) or
    ``popsize_per_dim`` (P = max(6, round(f·N))); values are JSON (``+generator.hidden=[32,32]+proposal_noise=0.1``).
    The preset defaults to ``default``.
    """
    head, *pairs = name.split("+")
    preset = head.split("@", 1)[1] if "@" in head else "default"
    if head.split("@", 1)[0] != "evogm" or preset not in PRESETS or not pairs:
        raise ValueError(f"unknown optimizer {name!r}")
    overrides: dict[str, Any] = {}
    popsize = None
    per_dim = None
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise ValueError(f"{name!r}: expected key=value, got {pair!r}")
        value = _parse_value(text)
        if key == "popsize":
            popsize = int(value)
        elif key == "popsize_per_dim":
            per_dim = float(value)
        elif key.startswith("generator."):
            overrides.setdefault("generator", {})[key.removeprefix("generator.")] = value
        else:
            overrides[key] = value
    try:  # a user's settings over a preset: a removed setting is refused, naming the commit of its code
        config = PRESETS[preset].with_settings(overrides)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name!r}: {exc}") from exc

    def build(dim: int, seed: int, budget: int) -> OwnOptimizer:
        size = popsize if per_dim is None else max(6, round(per_dim * dim))
        opt = registry.create("evogm", dim, seed=seed, maximize=True, max_evals=budget, config=config, popsize=size)
        return OwnOptimizer(opt)

    return Peer(build)


PEERS.add_family("evogm+", evogm_variant, "evogm+key=value+...")
PEERS.add_family("evogm@", evogm_variant, "evogm@preset+key=value+...")


def get_peer(name: str) -> Peer:
    """A registered peer, or an ``evogm+key=value`` variant (see :func:`evogm_variant`); ValueError otherwise."""
    return PEERS.resolve(name)
