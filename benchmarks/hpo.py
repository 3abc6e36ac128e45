"""A real, offline tuning benchmark through Optuna: GenerativeSampler against Optuna's own samplers on an HPO space
(an SVM) and a NAS-style space (an MLP), scored by cross-validated error, reported on a held-out test set.

    python -m evogm_bench.hpo --out results/hpo                       # the full grid (docs/hpo.md)
    python -m evogm_bench.hpo --out /tmp/hpo --seeds 0 --trials 8     # a smoke run

Data ship with scikit-learn (the digits), so nothing is downloaded. A *seed* is one instance: it fixes the
train/test split (50/50, stratified), the 3-fold CV split of the training half, the MLP's initialisation and every
sampler's seed. Each study runs ``--trials`` trials; the record keeps every trial, so the 30/60/100 budgets are read
from one study (no sampler here looks at the budget). The recommended configuration at budget b is the best
trial by CV error among the first b (ties: the earliest); its test error is that of the model refitted on the whole
training half.

Cache: within one (space, seed) job, every distinct configuration is evaluated once and shared by the samplers
of that seed — a configuration's CV error is a deterministic function of (configuration, seed), so a sampler sees
exactly what it would have computed itself, and only the time it would have spent differs. The cache is kept in
the job's record file, so a rerun (another sampler, a changed default) evaluates only what is new.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BUDGETS = (30, 60, 100)
SAMPLERS = ("evogm", "tpe", "gp", "cmaes", "random")
REFERENCE = "evogm"
LABELS = {
    "evogm": "GenerativeSampler",
    "tpe": "TPE (multivariate)",
    "gp": "GPSampler",
    "cmaes": "CMA-ES (with margin)",
    "random": "Random",
}


# ---------------------------------------------------------------------- the two spaces
def svm_space(trial: Any) -> dict[str, Any]:
    """HPO: an RBF/poly/sigmoid/linear SVM. Log-scale C and gamma, an int degree and a float coef0 that exist only
    for the kernels that use them (conditional), a categorical kernel and class weighting (with ``None``)."""
    params: dict[str, Any] = {
        "C": trial.suggest_float("C", 1e-2, 1e3, log=True),
        "kernel": trial.suggest_categorical("kernel", ["rbf", "poly", "sigmoid", "linear"]),
        "class_weight": trial.suggest_categorical("class_weight", [None, "balanced"]),
    }
    if params["kernel"] != "linear":
        params["gamma"] = trial.suggest_float("gamma", 1e-5, 1.0, log=True)
    if params["kernel"] == "poly":
        params["degree"] = trial.suggest_int("degree", 2, 5)
    if params["kernel"] in ("poly", "sigmoid"):
        params["coef0"] = trial.suggest_float("coef0", -1.0, 1.0)
    return params


def mlp_space(trial: Any) -> dict[str, Any]:
    """NAS-style: an MLP whose depth, per-layer widths (conditional on the depth), activation and optimiser are
    choices; the optimiser's learning rate exists only for the gradient-descent solvers."""
    depth = trial.suggest_int("depth", 1, 3)
    params: dict[str, Any] = {"depth": depth}
    for layer in range(depth):
        params[f"width{layer + 1}"] = trial.suggest_int(f"width{layer + 1}", 16, 128, step=16)
    params["activation"] = trial.suggest_categorical("activation", ["identity", "logistic", "tanh", "relu"])
    params["solver"] = trial.suggest_categorical("solver", ["lbfgs", "sgd", "adam"])
    if params["solver"] != "lbfgs":
        params["learning_rate_init"] = trial.suggest_float("learning_rate_init", 1e-4, 1e-1, log=True)
    return params


def build_svm(params: dict[str, Any], seed: int) -> Any:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    svc = SVC(
        C=params["C"],
        kernel=params["kernel"],
        gamma=params.get("gamma", "scale"),
        degree=params.get("degree", 3),
        coef0=params.get("coef0", 0.0),
        class_weight=params["class_weight"],
        max_iter=5_000,  # a diverging kernel stops here instead of running for minutes
        random_state=seed,
    )
    return make_pipeline(StandardScaler(), svc)


MLP_EPOCHS = 10  # "trained briefly": 10 epochs (adam/sgd) or 10 L-BFGS iterations


def build_mlp(params: dict[str, Any], seed: int) -> Any:
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    widths = tuple(params[f"width{i + 1}"] for i in range(params["depth"]))
    mlp = MLPClassifier(
        hidden_layer_sizes=widths,
        activation=params["activation"],
        solver=params["solver"],
        learning_rate_init=params.get("learning_rate_init", 1e-3),
        max_iter=MLP_EPOCHS,
        random_state=seed,
    )
    return make_pipeline(StandardScaler(), mlp)


@dataclass(frozen=True)
class Task:
    name: str
    kind: str
    suggest: Callable[[Any], dict[str, Any]]
    build: Callable[[dict[str, Any], int], Any]


TASKS = {
    "svm": Task("svm", "HPO: SVC on digits", svm_space, build_svm),
    "mlp": Task("mlp", "NAS: MLPClassifier on digits", mlp_space, build_mlp),
}


# ---------------------------------------------------------------------- evaluation
@dataclass
class Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]


def load_data(seed: int, max_rows: int | None = None) -> Data:
    """The digits (1797 images, 10 classes), split 50/50 by ``seed``; 3 stratified CV folds of the training half."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import StratifiedKFold, train_test_split

    x, y = load_digits(return_X_y=True)
    if max_rows is not None:  # tests: a small slice, same code path
        x, y = x[:max_rows], y[:max_rows]
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.5, stratify=y, random_state=seed)
    folds = list(StratifiedKFold(3, shuffle=True, random_state=seed).split(x_tr, y_tr))
    return Data(x_tr, y_tr, x_te, y_te, folds)


def _quiet_fit(model: Any, x: np.ndarray, y: np.ndarray) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: brief training is the point
        return model.fit(x, y)


def cv_error(task: Task, params: dict[str, Any], data: Data, seed: int) -> float:
    errors = []
    for train, valid in data.folds:
        model = _quiet_fit(task.build(params, seed), data.x_train[train], data.y_train[train])
        errors.append(1.0 - float(np.mean(model.predict(data.x_train[valid]) == data.y_train[valid])))
    return float(np.mean(errors))


def test_error(task: Task, params: dict[str, Any], data: Data, seed: int) -> float:
    model = _quiet_fit(task.build(params, seed), data.x_train, data.y_train)
    return 1.0 - float(np.mean(model.predict(data.x_test) == data.y_test))


def config_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


# ---------------------------------------------------------------------- samplers
def make_sampler(name: str, seed: int) -> Any:
    import optuna

    from evogm_opt.integrations.optuna import GenerativeSampler

    if name == "evogm":  # EVOGM_HPO_KWARGS: research runs of non-default settings (docs/hpo.md); unset for the table
        kwargs = json.loads(os.environ.get("EVOGM_HPO_KWARGS", "{}"))
        if "config" in kwargs:  # EvoGM settings over the default preset, e.g. {"config": {"n_rounds": 1}}
            kwargs["optimizer_factory"] = _evogm_factory(kwargs.pop("config"), kwargs.pop("popsize", None))
        return GenerativeSampler(seed=seed, **kwargs)
    if name == "tpe":
        return optuna.samplers.TPESampler(multivariate=True, seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "cmaes":
        return _CmaEsWithMargin(with_margin=True, seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")


def _evogm_factory(overrides: dict[str, Any], popsize: int | None) -> Callable[[int, int | None, bool], Any]:
    import dataclasses

    from evogm_opt import PRESETS, GenerativeOptimizer

    config = dataclasses.replace(PRESETS["default"], **overrides)

    def factory(dim: int, seed: int | None, maximize: bool) -> Any:
        size = popsize or max(2, min(10, 2 * dim))
        return GenerativeOptimizer(dim, seed=seed, maximize=maximize, popsize=size, config=config)

    return factory


def _cma_class() -> type:
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

    return CmaEsWithMargin


def _CmaEsWithMargin(**kwargs: Any) -> Any:  # a class, built lazily so that optuna stays optional
    return _cma_class()(**kwargs)


def run_study(
    task: Task, sampler_name: str, seed: int, n_trials: int, data: Data, cv_cache: dict[str, float]
) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    eval_seconds = 0.0
    new_evals = 0

    def objective(trial: optuna.Trial) -> float:
        nonlocal eval_seconds, new_evals
        params = task.suggest(trial)
        key = config_key(params)
        if key not in cv_cache:
            start = time.perf_counter()
            cv_cache[key] = cv_error(task, params, data, seed)
            eval_seconds += time.perf_counter() - start
            new_evals += 1
        return cv_cache[key]

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-API and independent-sampling notices of the peers
        study = optuna.create_study(sampler=make_sampler(sampler_name, seed))
        study.optimize(objective, n_trials=n_trials)
    total = time.perf_counter() - start
    trials = [{"params": t.params, "cv_error": t.value} for t in study.trials]
    return {
        "space": task.name,
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


def _canonical(task: Task, params: dict[str, Any]) -> dict[str, Any]:
    """Optuna's params as the space function would return them (inactive ones absent, as in the cache keys)."""
    import optuna

    return task.suggest(optuna.trial.FixedTrial(params))


def run_job(
    space: str,
    seed: int,
    samplers: Sequence[str],
    n_trials: int,
    out_dir: str,
    max_rows: int | None = None,
    rerun: Sequence[str] = (),
    budgets: Sequence[int] = BUDGETS,
) -> str:
    """One (space, seed): every sampler's study, sharing one cache, then test errors of the recommendations."""
    _limit_threads()
    task = TASKS[space]
    path = Path(out_dir) / f"{space}-seed{seed}.json"
    previous = json.loads(path.read_text()) if path.exists() else {"records": {}, "cv_cache": {}, "test_cache": {}}
    cv_cache, test_cache = previous["cv_cache"], previous["test_cache"]
    data = load_data(seed, max_rows)
    records = previous["records"]
    for name in samplers:
        if name in records and records[name]["n_trials"] >= n_trials and name not in rerun:
            continue
        record = run_study(task, name, seed, n_trials, data, cv_cache)
        record["test_error"], record["recommended"] = {}, {}
        for budget in budgets:
            if budget > n_trials:
                continue
            params, cv = recommended(record, budget)
            key = config_key(_canonical(task, params))
            if key not in test_cache:
                test_cache[key] = test_error(task, _canonical(task, params), data, seed)
            record["test_error"][str(budget)] = test_cache[key]
            record["recommended"][str(budget)] = {"params": params, "cv_error": cv}
        records[name] = record
        _atomic_json(path, {"records": records, "cv_cache": cv_cache, "test_cache": test_cache})
    return str(path)


def _atomic_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)


def _limit_threads() -> None:
    """One core per job: BLAS, OpenMP and torch threads would fight over the machine's few cores."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    import torch

    torch.set_num_threads(1)


# ---------------------------------------------------------------------- report
def load_records(out_dir: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted(out_dir.glob("*-seed*.json")):
        records.extend(json.loads(path.read_text())["records"].values())
    return records


def cells(records: Sequence[dict[str, Any]], key: str = "test_error") -> dict[tuple[str, int], dict[str, dict]]:
    """(space, budget) -> sampler -> seed -> value (test error, or the recommended configuration's CV error)."""
    out: dict[tuple[str, int], dict[str, dict[int, float]]] = {}
    for r in records:
        for budget in sorted(int(b) for b in r.get("test_error", {})):
            value = r["test_error"][str(budget)] if key == "test_error" else r["recommended"][str(budget)]["cv_error"]
            out.setdefault((r["space"], budget), {}).setdefault(r["sampler"], {})[r["seed"]] = value
    return out


def compare(table: dict[tuple[str, int], dict[str, dict]], reference: str = REFERENCE) -> dict[tuple, dict]:
    """The reference against every peer in every cell: A12 (P(ours lower)), Mann–Whitney U, Wilcoxon paired by
    seed; Holm over all of them (the bench's convention, evogm_bench.report.compare)."""
    from evogm_bench import stats

    out: dict[tuple, dict[str, float]] = {}
    for cell, by_sampler in table.items():
        if reference not in by_sampler:
            continue
        ours = by_sampler[reference]
        for name, theirs in by_sampler.items():
            if name == reference:
                continue
            shared = sorted(set(ours) & set(theirs))
            x, y = [ours[s] for s in shared], [theirs[s] for s in shared]
            out[(cell, name)] = {
                "a12": stats.a12(x, y),
                "p_mw": stats.mann_whitney(x, y),
                "p_wilcoxon": stats.wilcoxon_paired(x, y),
            }
    keys = list(out)
    for key, p in zip(keys, stats.holm([out[k]["p_mw"] for k in keys])):
        out[key]["p_holm"] = float(p)
    return out


def _median(values: dict[int, float]) -> float:
    return float(np.median(list(values.values())))


def goal(table: dict, comparisons: dict, reference: str = REFERENCE) -> list[str]:
    """The issue's goal, cell by cell: a lower median test error than TPE and random at 60 and 100 trials, and
    not significantly worse (Holm-adjusted Mann–Whitney p < 0.05 with A12 < 0.5) than the best peer anywhere."""
    lines = []
    for (space, budget), by_sampler in sorted(table.items()):
        if reference not in by_sampler:
            continue
        ours = _median(by_sampler[reference])
        peers = {n: _median(v) for n, v in by_sampler.items() if n != reference}
        best = min(peers, key=peers.get)
        comp = comparisons.get(((space, budget), best), {})
        worse = comp.get("p_holm", 1.0) < 0.05 and comp.get("a12", 0.5) < 0.5
        checks = []
        if budget in (60, 100):
            for peer in ("tpe", "random"):
                if peer in peers:
                    ok = ours < peers[peer]
                    checks.append(
                        f"{'✓' if ok else '✗'} median below {peer} ({100 * ours:.2f} vs {100 * peers[peer]:.2f} %)"
                    )
        checks.append(f"{'✗' if worse else '✓'} not significantly worse than the best peer ({best})")
        lines.append(f"- {space}, {budget} trials: " + "; ".join(checks))
    return lines


def markdown(records: Sequence[dict[str, Any]], samplers: Sequence[str]) -> str:
    test, cv = cells(records), cells(records, "cv_error")
    comparisons = compare(test)
    n_seeds = len({r["seed"] for r in records})
    lines = [
        f"Median test error in % [IQR] over {n_seeds} seeds of the configuration each sampler recommends (best CV "
        "error so far); below it the median CV error of that configuration. ▲/▼: GenerativeSampler significantly "
        "better/worse than that peer (Mann–Whitney, Holm over all cells and peers, p < 0.05); A12 = P(ours lower). "
        "**Bold**: the lowest median in the cell.",
        "",
    ]
    header = "| space | trials | " + " | ".join(LABELS.get(s, s) for s in samplers) + " |"
    lines += [header, "|" + "---|" * (len(samplers) + 2)]
    for (space, budget), by_sampler in sorted(test.items()):
        meds = {s: _median(v) for s, v in by_sampler.items() if s in samplers}
        low = min(meds.values())
        row = [space, str(budget)]
        for s in samplers:
            if s not in by_sampler:
                row.append("—")
                continue
            q1, med, q3 = np.percentile(list(by_sampler[s].values()), [25, 50, 75]) * 100
            text = f"{med:.2f} [{q1:.2f}, {q3:.2f}]"
            if meds[s] <= low + 1e-12:
                text = f"**{text}**"
            comp = comparisons.get(((space, budget), s))
            if comp is not None:
                mark = "" if comp["p_holm"] >= 0.05 else ("▲" if comp["a12"] > 0.5 else "▼")
                text += f" {mark}A12={comp['a12']:.2f}"
            cv_med = _median(cv[(space, budget)][s]) * 100
            row.append(f"{text}<br>CV {cv_med:.2f}")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Effect sizes against GenerativeSampler (A12, Holm-adjusted Mann–Whitney p, paired Wilcoxon p):", ""]
    lines += ["| space | trials | peer | A12 | p (Holm) | p (Wilcoxon) |", "|---|---|---|---|---|---|"]
    for ((space, budget), peer), comp in sorted(comparisons.items()):
        lines.append(
            f"| {space} | {budget} | {LABELS.get(peer, peer)} | {comp['a12']:.2f} | {comp['p_holm']:.2g} | "
            f"{comp['p_wilcoxon']:.2g} |"
        )
    lines += [
        "",
        "Goal (issue 17): lower median test error than TPE and random at 60 and 100 trials; never "
        "significantly worse than the best peer.",
        "",
    ]
    lines += goal(test, comparisons)
    seconds: dict[str, list[float]] = {}
    evals: dict[str, list[int]] = {}
    for r in records:
        seconds.setdefault(r["sampler"], []).append(r["sampler_seconds"] / max(1, len(r["trials"])))
        evals.setdefault(r["space"], []).append(r["new_evaluations"])
    lines += [
        "",
        "Sampler overhead, median seconds per trial (evaluation excluded): "
        + ", ".join(f"{LABELS.get(s, s)} {np.median(seconds[s]):.3f}" for s in samplers if s in seconds)
        + ".",
    ]
    lines += [
        "Distinct configurations evaluated (the cache's size), per space: "
        + ", ".join(f"{space} {sum(v)}" for space, v in sorted(evals.items()))
        + "."
    ]
    return "\n".join(lines) + "\n"


def plots(records: Sequence[dict[str, Any]], out_dir: Path, samplers: Sequence[str]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    spaces = sorted({r["space"] for r in records})
    colors = dict(zip(SAMPLERS, ["tab:red", "tab:blue", "tab:green", "tab:purple", "tab:gray"]))
    fig, axes = plt.subplots(1, len(spaces), figsize=(6.5 * len(spaces), 4.5), squeeze=False)
    for ax, space in zip(axes[0], spaces):
        for s in samplers:
            runs = [r for r in records if r["space"] == space and r["sampler"] == s]
            if not runs:
                continue
            n = min(len(r["trials"]) for r in runs)
            best = np.array([np.minimum.accumulate([t["cv_error"] for t in r["trials"][:n]]) for r in runs]) * 100
            q1, med, q3 = np.percentile(best, [25, 50, 75], axis=0)
            x = np.arange(1, n + 1)
            ax.plot(x, med, label=LABELS.get(s, s), color=colors.get(s), lw=2 if s == REFERENCE else 1.3)
            ax.fill_between(x, q1, q3, color=colors.get(s), alpha=0.12)
        ax.set_title(f"{TASKS[space].kind}: best CV error so far")
        ax.set_xlabel("trials")
        ax.set_ylabel("CV error (%), median and IQR over seeds")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "hpo-convergence.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    test = cells(records)
    budgets = sorted({budget for _, budget in test})
    fig, axes = plt.subplots(1, len(spaces), figsize=(6.5 * len(spaces), 4.5), squeeze=False)
    for ax, space in zip(axes[0], spaces):
        positions, data, tick = [], [], []
        for j, budget in enumerate(budgets):
            for k, s in enumerate(samplers):
                values = test.get((space, budget), {}).get(s)
                if values:
                    positions.append(j * (len(samplers) + 1) + k)
                    data.append(np.array(list(values.values())) * 100)
                    tick.append(s)
        box = ax.boxplot(data, positions=positions, widths=0.8, patch_artist=True)
        for patch, s in zip(box["boxes"], tick):
            patch.set_facecolor(colors.get(s))
            patch.set_alpha(0.6)
        ax.set_xticks([j * (len(samplers) + 1) + (len(samplers) - 1) / 2 for j in range(len(budgets))])
        ax.set_xticklabels([f"{b} trials" for b in budgets])
        ax.set_title(f"{TASKS[space].kind}: test error of the recommendation")
        ax.set_ylabel("test error (%)")
        ax.grid(alpha=0.3, axis="y")
        handles = [plt.Rectangle((0, 0), 1, 1, color=colors[s], alpha=0.6) for s in samplers]
        ax.legend(handles, [LABELS.get(s, s) for s in samplers], fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "hpo-test-error.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


# ---------------------------------------------------------------------- command line
def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evogm_bench.hpo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for records, report.md and plots")
    parser.add_argument("--spaces", default="svm,mlp", help="comma-separated: svm, mlp (default both)")
    parser.add_argument("--samplers", default=",".join(SAMPLERS), help=f"default {','.join(SAMPLERS)}")
    parser.add_argument("--seeds", default="0-9", help="e.g. 0-9 or 0,3,5 (default 0-9)")
    parser.add_argument("--trials", type=int, default=max(BUDGETS), help="trials per study (default 100)")
    parser.add_argument("--budgets", default=",".join(map(str, BUDGETS)), help="trial counts reported (30,60,100)")
    parser.add_argument("--workers", type=int, default=2, help="parallel (space, seed) jobs, one core each")
    parser.add_argument("--rerun", default="", help="samplers to run again although recorded (e.g. evogm)")
    parser.add_argument("--report-only", action="store_true", help="re-render report.md and plots from the records")
    parser.add_argument("--max-rows", type=int, default=None, help=argparse.SUPPRESS)  # tests: a slice of the data
    args = parser.parse_args(argv)
    spaces = [s for s in args.spaces.split(",") if s]
    samplers = [s for s in args.samplers.split(",") if s]
    budgets = [int(b) for b in args.budgets.split(",") if b]
    bad = [s for s in spaces if s not in TASKS] + [s for s in samplers if s not in SAMPLERS]
    if bad or args.trials < 1 or args.workers < 1:
        parser.error(f"unknown or invalid: {bad or 'trials/workers must be >= 1'}")
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
        jobs = [(space, seed) for seed in _seeds(args.seeds) for space in spaces]
        start = time.perf_counter()
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            futures = {
                pool.submit(
                    run_job,
                    space,
                    seed,
                    samplers,
                    args.trials,
                    str(args.out),
                    args.max_rows,
                    args.rerun.split(","),
                    budgets,
                ): (space, seed)
                for space, seed in jobs
            }
            for done, future in enumerate(as_completed(futures), 1):
                future.result()
                space, seed = futures[future]
                print(f"[{done}/{len(jobs)}] {space} seed {seed} ({time.perf_counter() - start:.0f} s)", flush=True)
        print(f"wall time {time.perf_counter() - start:.0f} s", flush=True)
    records = [r for r in load_records(args.out) if r["sampler"] in samplers and r["space"] in spaces]
    report = markdown(records, [s for s in SAMPLERS if s in samplers])
    (args.out / "report.md").write_text(report)
    plots(records, args.out, [s for s in SAMPLERS if s in samplers])
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
