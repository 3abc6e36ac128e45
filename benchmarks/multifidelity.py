"""The bench's multi-fidelity peers: optimizers that choose how many validation examples each candidate gets.

Each is built with the run's fidelity settings and drives the run itself through the cost evaluator
(benchmarks/cost.py): ``run(ev)`` calls ``ev.measure(X, n, keys)`` — rows scored on their first ``n`` examples, a
key naming a candidate whose earlier measurement a larger ``n`` extends (nested prefixes: only the new examples are
charged) — and ``ev.record(x)`` with its recommendation, until ``ev`` raises ``BudgetExhausted``. Every peer
*maximises a score* on [-1, 1]^dim, like the bench's other peers. Full-fidelity peers need none of this: they run
at ``n_val`` examples per evaluation, charged in full (:data:`FIDELITY_PEERS` only lists the multi-fidelity ones).

- ``sh-evogm``, ``sh-random``: successive halving inside each generation of EvoGM's default / of random search,
  through the core's :class:`evogm_opt.FidelityScheduler` and the one loop (``nested=True``).
- ``optuna-tpe-hyperband``, ``optuna-gp-hyperband``: Optuna's ``TPESampler(multivariate=True)`` / ``GPSampler``
  with ``HyperbandPruner(min_resource=first rung, max_resource=n_val, reduction_factor=η)``: a trial reports its
  score at every rung (``trial.report(score, step=examples)``) and stops when ``should_prune()`` says so.
- ``smac-mf``: SMAC3's ``MultiFidelityFacade`` (Hyperband over a random forest, its defaults) with budgets in
  examples up to ``n_val`` and its η; SMAC's budgets n_val/η^k are measured at the rung ⌊n_val/η^k⌋.

Every peer measures at the same rungs, :attr:`Fidelity.rungs` = ``evogm_opt.fidelity.rung_fidelities(n_val,
minimum, η)``: built downward from n_val (⌊n_val/η^k⌋ while at least ``minimum``), as Hyperband and SMAC build
them, so no rung sits just below n_val (the bench's default, 22 examples of 200 with η = 3: 22, 66, 200).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from evogm_bench.peers import BENCH_SETTINGS, Peer
from evogm_bench.registry import Registry

from evogm_opt import FidelityScheduler, optimize, registry
from evogm_opt.fidelity import rung_fidelities


@dataclass(frozen=True)
class Fidelity:
    """A run's fidelity settings: ``full`` = the landscape's n_val, no candidate is scored on fewer than
    ``minimum`` examples, and η = ``eta`` is the promotion factor; :attr:`rungs` follow from them."""

    full: int
    minimum: int
    eta: int

    @property
    def rungs(self) -> tuple[int, ...]:
        """The examples every multi-fidelity peer measures at: the core scheduler's rungs."""
        return rung_fidelities(self.full, self.minimum, self.eta)

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.full:
            raise ValueError(f"the fewest examples per candidate must be 1 … n_val = {self.full}, got {self.minimum}")
        if self.eta < 2:
            raise ValueError(f"eta must be an integer >= 2, got {self.eta}")


class SuccessiveHalving:
    """An optimizer of ``evogm_opt.registry`` (with the bench's settings) inside :class:`FidelityScheduler`,
    driven by the core's loop; recommends the scheduler's recommendation (always a full-fidelity point)."""

    def __init__(
        self, name: str, dim: int, seed: int, budget: int, fidelity: Fidelity,
        scheduler: Callable[..., FidelityScheduler] = FidelityScheduler, wider: int = 1,
    ) -> None:  # fmt: skip
        inner = registry.create(name, dim, seed=seed, maximize=True, **BENCH_SETTINGS.get(name, {}))
        if wider > 1:  # research: generations ``wider`` times the optimizer's own popsize
            settings = {**BENCH_SETTINGS.get(name, {}), "popsize": wider * inner.popsize}
            inner = registry.create(name, dim, seed=seed, maximize=True, **settings)
        self.scheduler = scheduler(
            inner, full=fidelity.full, minimum=fidelity.minimum, eta=fidelity.eta, nested=True, max_examples=budget
        )

    def run(self, ev: Any) -> None:
        def record(sched: FidelityScheduler) -> None:
            choice = sched.recommend()
            ev.record(None if choice is None else choice.x)

        optimize(self.scheduler, lambda batch: ev.measure(batch.x, batch.fidelity, batch.candidate), after_tell=record)


class OptunaHyperband:
    """An Optuna sampler with ``HyperbandPruner``, one trial at a time through ``study.ask``/``study.tell``. The
    study's name is fixed per seed: Hyperband puts a trial in a bracket by a hash of the study name and the trial
    number. A pruned trial is told ``PRUNED`` (TPE then reads its last reported value); recommends
    ``study.best_trial`` (complete trials only: a full-fidelity point)."""

    def __init__(self, dim: int, seed: int, budget: int, fidelity: Fidelity, sampler: str) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if sampler == "tpe":
                chosen = optuna.samplers.TPESampler(multivariate=True, seed=seed)
            else:
                chosen = optuna.samplers.GPSampler(seed=seed)
        self.rungs = fidelity.rungs
        pruner = optuna.pruners.HyperbandPruner(  # its rungs, min_resource·η^k, are then at or below ours
            min_resource=self.rungs[0], max_resource=fidelity.full, reduction_factor=fidelity.eta
        )
        self.study = optuna.create_study(
            study_name=f"hyperband-{seed}", direction="maximize", sampler=chosen, pruner=pruner
        )
        self.space = {f"x{i}": optuna.distributions.FloatDistribution(-1.0, 1.0) for i in range(dim)}

    def run(self, ev: Any) -> None:
        from optuna.trial import TrialState

        while True:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trial = self.study.ask(self.space)
            x = np.array([[trial.params[k] for k in self.space]])
            for n in self.rungs:
                score = float(ev.measure(x, n, [trial.number])[0])
                if n == self.rungs[-1]:
                    self.study.tell(trial, score)
                    break
                trial.report(score, step=n)
                if trial.should_prune():
                    self.study.tell(trial, state=TrialState.PRUNED)
                    break
            ev.record(self.recommend())

    def recommend(self) -> np.ndarray | None:
        try:
            params = self.study.best_trial.params
        except ValueError:  # no complete trial yet
            return None
        return np.array([params[k] for k in self.space])


class SMACMultiFidelity:
    """SMAC3's ``MultiFidelityFacade`` through its ask/tell interface: its Hyperband intensifier (η from the run,
    SMAC's default incumbent rule: the best at the highest budget observed so far), random forest and initial
    design as the facade sets them; deterministic objective, no output kept. Budgets are examples, rounded to
    whole ones; the same configuration at a larger budget extends its earlier measurement. Recommends SMAC's
    incumbent."""

    def __init__(self, dim: int, seed: int, budget: int, fidelity: Fidelity) -> None:
        import logging
        import tempfile

        from ConfigSpace import ConfigurationSpace, Float
        from smac import MultiFidelityFacade, Scenario

        logging.getLogger("smac").setLevel(logging.ERROR)
        self.names = [f"x{i}" for i in range(dim)]
        self.full, self.rungs = fidelity.full, fidelity.rungs
        # SMAC's stages: n_val·η^-k for k = 0 … ⌊log_η(max/min)⌋; a min_budget half a stage below the first rung
        # gives as many stages as rungs, without a float rounding ⌊log_η⌋ one way or the other
        lowest = fidelity.full / fidelity.eta ** (len(self.rungs) - 0.5)
        space = ConfigurationSpace(seed=seed)
        space.add([Float(name, (-1.0, 1.0)) for name in self.names])
        self._folder = tempfile.TemporaryDirectory(prefix="smac-mf-")
        scenario = Scenario(
            space,
            deterministic=True,
            n_trials=budget // self.rungs[0] + 1,  # more trials than the examples can pay for
            min_budget=lowest,
            max_budget=fidelity.full,
            seed=seed,
            output_directory=self._folder.name,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            intensifier = MultiFidelityFacade.get_intensifier(scenario, eta=fidelity.eta)
            self.smac = MultiFidelityFacade(
                scenario, lambda config, seed=0, budget=None: 0.0, intensifier=intensifier, overwrite=True,
                logging_level=40,
            )  # fmt: skip

    def run(self, ev: Any) -> None:
        from smac.runhistory.dataclasses import TrialValue

        while True:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                info = self.smac.ask()
            x = np.array([[float(info.config[name]) for name in self.names]])
            n = self.rung(float(info.budget))
            score = float(ev.measure(x, n, [x.tobytes()])[0])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.smac.tell(info, TrialValue(cost=-score))  # SMAC minimises a cost
            ev.record(self.recommend())

    def rung(self, budget: float) -> int:
        """The shared rung of one of SMAC's budgets n_val/η^k: ⌊n_val/η^k⌋ (a budget off the rungs is an error)."""
        n = int(np.floor(budget * (1 + 1e-9)))  # n_val·η^-k computed in floats: an exact quotient may fall short
        if n not in self.rungs:
            raise RuntimeError(f"SMAC asked for a budget of {budget} examples, off the rungs {self.rungs}")
        return n

    def recommend(self) -> np.ndarray | None:
        incumbent = self.smac.intensifier.get_incumbent()
        return None if incumbent is None else np.array([float(incumbent[name]) for name in self.names])


@dataclass(frozen=True)
class FidelityPeer(Peer):
    """A bench peer (its optional extra, ``slow``, ``available``, ``missing_note``) that is built with the run's
    fidelity settings too."""

    build: Callable[[int, int, int, Fidelity], Any]  # type: ignore[assignment]  # (dim, seed, examples, fidelity)


FIDELITY_PEERS: Registry[FidelityPeer] = Registry("multi-fidelity optimizer")
"""The multi-fidelity peers, by name; ``bench fidelity`` runs them beside any full-fidelity peer of ``PEERS``."""

FIDELITY_PEERS.add("sh-evogm", FidelityPeer(lambda d, s, b, f: SuccessiveHalving("evogm", d, s, b, f)))
FIDELITY_PEERS.add("sh-random", FidelityPeer(lambda d, s, b, f: SuccessiveHalving("random", d, s, b, f)))
FIDELITY_PEERS.add(
    "optuna-tpe-hyperband", FidelityPeer(lambda d, s, b, f: OptunaHyperband(d, s, b, f, "tpe"), "optuna", "optuna")
)
FIDELITY_PEERS.add(
    "optuna-gp-hyperband",
    FidelityPeer(lambda d, s, b, f: OptunaHyperband(d, s, b, f, "gp"), "optuna", "optuna", slow=True),
)
FIDELITY_PEERS.add("smac-mf", FidelityPeer(SMACMultiFidelity, "smac", "bo", slow=True))


def _research(rule: str, **settings: Any) -> Callable[[int, int, int, Fidelity], SuccessiveHalving]:
    """The default inside a promotion rule of research (``evogm_bench.research.promotion.<rule>``, imported when a
    run builds it)."""

    def build(d: int, s: int, b: int, f: Fidelity) -> SuccessiveHalving:
        from evogm_bench.research import promotion

        return SuccessiveHalving("evogm", d, s, b, f, partial(getattr(promotion, rule), **settings))

    return build


# research (docs/research.md, issue 30): the default inside a racing promotion rule instead of a fixed share
FIDELITY_PEERS.add("race-evogm", FidelityPeer(_research("RacingScheduler", z=2.0)))
FIDELITY_PEERS.add("race-evogm-z1", FidelityPeer(_research("RacingScheduler", z=1.0)))
# research: generations η times as large, so that ⌊P/η⌋ (not 1) candidates of each reach full fidelity at N = 4, 8
FIDELITY_PEERS.add(
    "sh-evogm-wide", FidelityPeer(lambda d, s, b, f: SuccessiveHalving("evogm", d, s, b, f, wider=f.eta))
)
# research: successive halving's share rounded up (⌈n/η⌉: 16 → 6 → 2 at N = 8)
FIDELITY_PEERS.add("sh-evogm-ceil", FidelityPeer(_research("CeilingScheduler")))
# research: successive halving after the informed start (the first generation) measured in full
FIDELITY_PEERS.add("sh-evogm-full-start", FidelityPeer(_research("FullStartScheduler")))
# research: successive halving's share, ranked by the prefix's value shrunk toward a GP's prediction (a GP fit per
# generation: seconds per run, so slow)
FIDELITY_PEERS.add("shrink-evogm", FidelityPeer(_research("ShrinkageScheduler"), slow=True))
