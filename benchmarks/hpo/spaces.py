"""What the tuning benchmark tunes: each space is a function that asks an Optuna trial for its parameters, a
builder of the scikit-learn model those parameters describe, the dataset it learns and the error it is scored by,
registered by name in :data:`SPACES`.

The spaces cover what an Optuna user's spaces contain: floats, log-scale floats, stepped floats, ints, categoricals
(one with ``None`` as a choice) and parameters that exist only for some values of another (conditional). ``svm``
and ``mlp`` classify the digits; ``hgb`` — gradient-boosted trees on a regression task — is *held out*: it was
added before the round-three design so that a design tuned on the first two is judged on a task it never saw, and
it is not in the command's default ``--spaces``. ``rf`` — a random forest on a binary task — is the second held-out
space, added on 2026-12-07 before the tuning sampler's shape was chosen (docs/research.md, ablation 36) and run once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from evogm_bench.registry import Registry

MLP_EPOCHS = 10  # "trained briefly": 10 epochs (adam/sgd) or 10 L-BFGS iterations
RF_TREES = 50  # a trial costs about 0.2 s (3 folds of 50 trees, one core)
HGB_ITERATIONS = 100  # boosting rounds, fixed: a trial costs about 0.1 s (3 folds, one core; most 0.04–0.2, ≤ 0.5 s)


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


def hgb_space(trial: Any) -> dict[str, Any]:
    """Held-out HPO: gradient-boosted trees as a user would tune them. A log-scale learning rate and L2 penalty, a
    log-scale int leaf size, a categorical loss, a stepped float feature fraction, and the tree's size limited
    either by its leaves or by its depth (a categorical whose choice decides which int exists: conditional)."""
    params: dict[str, Any] = {
        "learning_rate": trial.suggest_float("learning_rate", 1e-3, 0.5, log=True),
        "loss": trial.suggest_categorical("loss", ["squared_error", "absolute_error", "poisson"]),
        "tree_limit": trial.suggest_categorical("tree_limit", ["leaves", "depth"]),
    }
    if params["tree_limit"] == "leaves":
        params["max_leaf_nodes"] = trial.suggest_int("max_leaf_nodes", 4, 64, log=True)
    else:
        params["max_depth"] = trial.suggest_int("max_depth", 1, 6)
    params["min_samples_leaf"] = trial.suggest_int("min_samples_leaf", 1, 50, log=True)
    params["l2_regularization"] = trial.suggest_float("l2_regularization", 1e-4, 10.0, log=True)
    params["max_features"] = trial.suggest_float("max_features", 0.3, 1.0, step=0.1)
    return params


def rf_space(trial: Any) -> dict[str, Any]:
    """Held-out HPO (the second): a random forest as a user would tune it. A split criterion and class weighting
    (with ``None``) as categoricals, a float feature fraction, log-scale int split and leaf sizes, a depth limit that
    exists only when chosen, and the bootstrap's sample fraction only when bootstrapping (both conditional)."""
    params: dict[str, Any] = {
        "criterion": trial.suggest_categorical("criterion", ["gini", "entropy"]),
        "max_features": trial.suggest_float("max_features", 0.05, 1.0),
        "min_samples_split": trial.suggest_int("min_samples_split", 2, 32, log=True),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 16, log=True),
        "class_weight": trial.suggest_categorical("class_weight", [None, "balanced", "balanced_subsample"]),
        "depth_limit": trial.suggest_categorical("depth_limit", [False, True]),
        "bootstrap": trial.suggest_categorical("bootstrap", [True, False]),
    }
    if params["depth_limit"]:
        params["max_depth"] = trial.suggest_int("max_depth", 2, 16)
    if params["bootstrap"]:
        params["max_samples"] = trial.suggest_float("max_samples", 0.2, 1.0)
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


def build_hgb(params: dict[str, Any], seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(
        learning_rate=params["learning_rate"],
        loss=params["loss"],
        max_leaf_nodes=params.get("max_leaf_nodes"),  # None: the depth limits the tree
        max_depth=params.get("max_depth"),
        min_samples_leaf=params["min_samples_leaf"],
        l2_regularization=params["l2_regularization"],
        max_features=params["max_features"],
        max_iter=HGB_ITERATIONS,
        early_stopping=False,  # its inner split would make the score depend on more than (configuration, seed)
        random_state=seed,  # max_features' column sampling
    )


def build_rf(params: dict[str, Any], seed: int) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(
        n_estimators=RF_TREES,
        criterion=params["criterion"],
        max_features=params["max_features"],
        min_samples_split=params["min_samples_split"],
        min_samples_leaf=params["min_samples_leaf"],
        class_weight=params["class_weight"],
        max_depth=params.get("max_depth"),  # None: grown until the leaf and split sizes stop it
        bootstrap=params["bootstrap"],
        max_samples=params.get("max_samples"),
        n_jobs=1,
        random_state=seed,
    )


def misclassification(y_true: Any, y_pred: Any) -> float:
    """The fraction of wrong labels."""
    return 1.0 - float(np.mean(np.asarray(y_pred) == np.asarray(y_true)))


def unexplained_variance(y_true: Any, y_pred: Any) -> float:
    """1 − R²: the squared error relative to predicting the mean, a unit-free regression error (0 is perfect, 1 is
    no better than the mean), so it reads like a classification error in the report's tables."""
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    return float(np.sum((y_true - y_pred) ** 2) / np.sum((y_true - y_true.mean()) ** 2))


@dataclass(frozen=True)
class Space:
    """A tuning task: its name, one line saying what it is, the trial → parameters function, the model builder
    (parameters, seed) → an unfitted scikit-learn estimator, the dataset (a name ``run.load_data`` knows) and the
    error (y_true, y_pred) → float that CV and the test half score, with the words the report uses for it."""

    name: str
    kind: str
    suggest: Callable[[Any], dict[str, Any]]
    build: Callable[[dict[str, Any], int], Any]
    dataset: str = "digits"
    error: Callable[[Any, Any], float] = misclassification
    error_name: str = "classification error"

    def canonical(self, params: dict[str, Any]) -> dict[str, Any]:
        """Optuna's params as the space function returns them (inactive ones absent): the cache's key."""
        import optuna

        return self.suggest(optuna.trial.FixedTrial(params))


SPACES: Registry[Space] = Registry("space")
SPACES.add("svm", Space("svm", "HPO: SVC on digits", svm_space, build_svm))
SPACES.add("mlp", Space("mlp", "NAS: MLPClassifier on digits", mlp_space, build_mlp))
SPACES.add(
    "hgb",
    Space(
        "hgb",
        "held-out HPO: HistGradientBoostingRegressor on diabetes",
        hgb_space,
        build_hgb,
        dataset="diabetes",
        error=unexplained_variance,
        error_name="1 − R² (unexplained variance)",
    ),
)
SPACES.add(
    "rf",
    Space(
        "rf",
        "held-out HPO (2nd): RandomForestClassifier on breast cancer",
        rf_space,
        build_rf,
        dataset="breast_cancer",
    ),
)
