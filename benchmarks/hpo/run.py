"""Running the tuning benchmark: the data, the samplers, one Optuna study per sampler, and one job file per
(space, seed) that keeps the studies and a cache of evaluated configurations.

A *seed* is one instance: it fixes the train/test split of the space's dataset (50/50, stratified for a
classification), the 3-fold CV split of the training half, the models' initialisation and every sampler's seed.
Each study runs ``trials`` trials; the record keeps every trial, so the 30/60/100 budgets are read from one study
(no sampler here looks at the budget). A trial's value is the mean of the space's error (``Space.error``) over the
folds; the recommended configuration at budget b is the best trial by CV error among the first b (ties: the
earliest); its test error is that of the model refitted on the whole training half.

Cache: within one job, every distinct configuration is evaluated once and shared by the samplers of that seed — a
configuration's CV error is a deterministic function of (configuration, seed), so a sampler sees exactly what it
would have computed itself, and only the time it would have spent differs. The cache is kept in the job's file, so
a rerun (another sampler, a changed default) evaluates only what is new.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from evogm_bench.hpo.spaces import SPACES, Space
from evogm_bench.registry import Registry
from evogm_bench.runner import in_parallel, one_thread

from evogm_opt.atomic import atomic_write

BUDGETS = (30, 60, 100)
REFERENCE = "evogm"


# ---------------------------------------------------------------------- data and evaluation
@dataclass
class Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]


DATASETS = {
    "digits": ("load_digits", True),
    "diabetes": ("load_diabetes", False),
    "breast_cancer": ("load_breast_cancer", True),
}
"""Datasets that ship with scikit-learn (nothing is downloaded): name → (its loader, whether the splits are
stratified, as they are for a classification). digits: 1797 8×8 images, 10 classes; diabetes: 442 patients, 10
features, a disease-progression score to regress; breast_cancer: 569 tumours, 30 features, malignant or benign."""


def load_data(seed: int, max_rows: int | None = None, dataset: str = "digits") -> Data:
    """``dataset`` split 50/50 by ``seed``; 3 CV folds of the training half (stratified for a classification)."""
    import sklearn.datasets
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    loader, stratified = DATASETS[dataset]
    x, y = getattr(sklearn.datasets, loader)(return_X_y=True)
    if max_rows is not None:  # tests: a small slice, same code path
        x, y = x[:max_rows], y[:max_rows]
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=0.5, stratify=y if stratified else None, random_state=seed
    )
    splitter = StratifiedKFold if stratified else KFold
    folds = list(splitter(3, shuffle=True, random_state=seed).split(x_tr, y_tr))
    return Data(x_tr, y_tr, x_te, y_te, folds)


def _quiet_fit(model: Any, x: np.ndarray, y: np.ndarray) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: brief training is the point
        return model.fit(x, y)


def cv_error(space: Space, params: dict[str, Any], data: Data, seed: int) -> float:
    """The mean over the 3 folds of the space's error on the validation fold."""
    errors = []
    for train, valid in data.folds:
        model = _quiet_fit(space.build(params, seed), data.x_train[train], data.y_train[train])
        errors.append(space.error(data.y_train[valid], model.predict(data.x_train[valid])))
    return float(np.mean(errors))


def test_error(space: Space, params: dict[str, Any], data: Data, seed: int) -> float:
    """The space's error on the test half of the model refitted on the whole training half."""
    model = _quiet_fit(space.build(params, seed), data.x_train, data.y_train)
    return space.error(data.y_test, model.predict(data.x_test))


test_error.__test__ = False  # type: ignore[attr-defined]  # a function of the benchmark, not a pytest test


def config_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


# ---------------------------------------------------------------------- samplers
SamplerFactory = Callable[[int], Any]
SAMPLERS: Registry[SamplerFactory] = Registry("sampler")
"""seed → an Optuna sampler; the summary is the report's column label."""


def _generative(seed: int) -> Any:
    from evogm_opt.integrations.optuna import GenerativeSampler

    # EVOGM_HPO_KWARGS: research runs of non-default settings (docs/hpo.md); unset for the table
    kwargs = json.loads(os.environ.get("EVOGM_HPO_KWARGS", "{}"))
    if "config" in kwargs:  # EvoGM settings over the default preset, e.g. {"config": {"n_rounds": 1}}
        kwargs["optimizer_factory"] = _evogm_factory(kwargs.pop("config"), kwargs.pop("popsize", None))
    return GenerativeSampler(seed=seed, **kwargs)


def _evogm_factory(overrides: dict[str, Any], popsize: int | None) -> Callable[[int, int | None, bool], Any]:
    from evogm_opt import PRESETS, GenerativeOptimizer

    config = PRESETS["default"].with_settings(overrides)  # a removed setting is refused, naming its commit

    def factory(dim: int, seed: int | None, maximize: bool) -> Any:
        size = popsize or max(2, min(10, 2 * dim))
        return GenerativeOptimizer(dim, seed=seed, maximize=maximize, popsize=size, config=config)

    return factory


def _sequential(fast: bool = False) -> SamplerFactory:
    """Research round three (docs/research.md): GenerativeSampler over the sequential variant — its 10 random
    startup trials are the design, then one trial per ask by LogEI, G_lw's proposals among the starts; ``fast``:
    with ablation 29's cheaper fit and climb."""

    def build(seed: int) -> Any:
        from evogm_bench.research.sequential import SequentialEvoGM, variant
        from evogm_bench.research.variants import FAST

        from evogm_opt.integrations.optuna import GenerativeSampler

        config = variant(initial_points=0, informed_start=False, **(FAST if fast else {}))

        def factory(dim: int, seed: int | None, maximize: bool) -> Any:
            return SequentialEvoGM(dim, seed=seed, maximize=maximize, config=config)

        return GenerativeSampler(seed=seed, optimizer_factory=factory)

    return build


def _mixed(conditional: bool = False) -> SamplerFactory:
    """Ablation 30 (docs/research.md): the fast sequential sampler with each categorical one variable;
    ``conditional`` (ablation 31): and the coordinates of parameters a configuration does not use at 0."""

    def build(seed: int) -> Any:
        from evogm_bench.research.mixed import sampler_factory
        from evogm_bench.research.sequential import variant
        from evogm_bench.research.variants import FAST

        return sampler_factory(variant(initial_points=0, informed_start=False, **FAST), conditional)(seed)

    return build


def _optuna(name: str, **settings: Any) -> SamplerFactory:
    def build(seed: int) -> Any:
        import optuna

        return getattr(optuna.samplers, name)(seed=seed, **settings)

    return build


def _cmaes_with_margin(seed: int) -> Any:
    import optuna

    class CmaEsWithMargin(optuna.samplers.CmaEsSampler):
        """Optuna's ``CmaEsSampler(with_margin=True)``, with one fix for conditional spaces (Optuna 5.0): when the
        float/int intersection space changes, the new CMA-ES starts again at generation 0 and was handed the old
        optimizer's generation-0 trials, whose ``x_for_tell`` has the old dimension (numpy then refuses the tell).
        Only trials whose ``x_for_tell`` has the current dimension are told; nothing else changes."""

        _dim = -1

        def sample_relative(self, study: Any, trial: Any, search_space: dict) -> dict:
            self._dim = len(search_space)  # CMAwM: one coordinate per float/int parameter
            return super().sample_relative(study, trial, search_space)

        def _get_solution_trials(self, trials: list, generation: int) -> list:
            chosen = super()._get_solution_trials(trials, generation)
            return [t for t in chosen if len(t.system_attrs.get("x_for_tell", ())) == self._dim]

    return CmaEsWithMargin(with_margin=True, seed=seed)


SAMPLERS.add("evogm", _generative, "GenerativeSampler")
SAMPLERS.add("evogm-seq", _sequential(), "GenerativeSampler, sequential (research)")
SAMPLERS.add("evogm-seq-fast", _sequential(fast=True), "sequential, warm fits (research)")
SAMPLERS.add("evogm-seq-mixed", _mixed(), "sequential, categoricals as one variable (research)")
SAMPLERS.add("evogm-seq-cond", _mixed(conditional=True), "sequential, unused parameters at 0 (research)")
SAMPLERS.add("tpe", _optuna("TPESampler", multivariate=True), "TPE (multivariate)")
SAMPLERS.add("gp", _optuna("GPSampler"), "GPSampler")
SAMPLERS.add("cmaes", _cmaes_with_margin, "CMA-ES (with margin)")
SAMPLERS.add("random", _optuna("RandomSampler"), "Random")


# ---------------------------------------------------------------------- one study, one job
def run_study(
    space: Space, sampler_name: str, seed: int, n_trials: int, data: Data, cv_cache: dict[str, float]
) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    eval_seconds = 0.0
    new_evals = 0

    def objective(trial: optuna.Trial) -> float:
        nonlocal eval_seconds, new_evals
        params = space.suggest(trial)
        key = config_key(params)
        if key not in cv_cache:
            start = time.perf_counter()
            cv_cache[key] = cv_error(space, params, data, seed)
            eval_seconds += time.perf_counter() - start
            new_evals += 1
        return cv_cache[key]

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-API and independent-sampling notices of the peers
        study = optuna.create_study(sampler=SAMPLERS.resolve(sampler_name)(seed))
        study.optimize(objective, n_trials=n_trials)
    total = time.perf_counter() - start
    trials = [{"params": t.params, "cv_error": t.value} for t in study.trials]
    return {
        "space": space.name,
        "sampler": sampler_name,
        "seed": seed,
        "n_trials": n_trials,
        "trials": trials,
        "new_evaluations": new_evals,
        "eval_seconds": eval_seconds,
        "sampler_seconds": total - eval_seconds,
    }


def recommended(record: dict[str, Any], budget: int) -> tuple[dict[str, Any], float]:
    """The best trial by CV error among the first ``budget`` (ties: the earliest) and its CV error."""
    trials = record["trials"][:budget]
    best = min(range(len(trials)), key=lambda i: (trials[i]["cv_error"], i))
    return trials[best]["params"], trials[best]["cv_error"]


@dataclass(frozen=True)
class Job:
    """One (space, seed): every sampler's study on one shared cache, written to ``out_dir/<space>-seed<seed>.json``."""

    space: str
    seed: int
    samplers: tuple[str, ...]
    n_trials: int
    out_dir: str
    max_rows: int | None = None
    rerun: tuple[str, ...] = ()
    budgets: tuple[int, ...] = BUDGETS

    @property
    def path(self) -> Path:
        return Path(self.out_dir) / f"{self.space}-seed{self.seed}.json"


def run_job(job: Job) -> str:
    """Every sampler's study of one (space, seed), sharing one cache, then the test errors of the recommendations;
    the job file is rewritten (atomically) after each study, so an interrupted job keeps what it finished."""
    with one_thread():
        return _run_job(job)


def _run_job(job: Job) -> str:
    space, path = SPACES[job.space], job.path
    previous = json.loads(path.read_text()) if path.exists() else {"records": {}, "cv_cache": {}, "test_cache": {}}
    cv_cache, test_cache = previous["cv_cache"], previous["test_cache"]
    data = load_data(job.seed, job.max_rows, space.dataset)
    records = previous["records"]
    for name in job.samplers:
        if name in records and records[name]["n_trials"] >= job.n_trials and name not in job.rerun:
            continue
        record = run_study(space, name, job.seed, job.n_trials, data, cv_cache)
        record["test_error"], record["recommended"] = {}, {}
        for budget in job.budgets:
            if budget > job.n_trials:
                continue
            params, cv = recommended(record, budget)
            key = config_key(space.canonical(params))
            if key not in test_cache:
                test_cache[key] = test_error(space, space.canonical(params), data, job.seed)
            record["test_error"][str(budget)] = test_cache[key]
            record["recommended"][str(budget)] = {"params": params, "cv_error": cv}
        records[name] = record
        atomic_write(path, json.dumps({"records": records, "cv_cache": cv_cache, "test_cache": test_cache}))
    return str(path)


def run_jobs(jobs: Sequence[Job], workers: int) -> Iterator[Job]:
    """Run the jobs over ``workers`` processes (one core each); yield each as it finishes. A job that fails stops
    the grid with its error (the job files of finished studies stay)."""
    for job, result in in_parallel(run_job, jobs, workers):
        if isinstance(result, BaseException):
            raise result
        yield job


def load_records(out_dir: Path) -> list[dict[str, Any]]:
    """Every study recorded in the job files of ``out_dir`` (one record per space, seed and sampler)."""
    return [
        r for path in sorted(out_dir.glob("*-seed*.json")) for r in json.loads(path.read_text())["records"].values()
    ]
