"""What the tuning benchmark tunes: each space is a function that asks an Optuna trial for its parameters and a
builder of the scikit-learn model those parameters describe, registered by name in :data:`SPACES`.

The two spaces cover what an Optuna user's spaces contain: floats, log-scale floats, ints, categoricals (one with
``None`` as a choice) and parameters that exist only for some values of another (conditional).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from evogm_bench.registry import Registry

MLP_EPOCHS = 10  # "trained briefly": 10 epochs (adam/sgd) or 10 L-BFGS iterations


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
class Space:
    """A tuning task: its name, one line saying what it is, the trial → parameters function and the model
    builder (parameters, seed) → an unfitted scikit-learn estimator."""

    name: str
    kind: str
    suggest: Callable[[Any], dict[str, Any]]
    build: Callable[[dict[str, Any], int], Any]

    def canonical(self, params: dict[str, Any]) -> dict[str, Any]:
        """Optuna's params as the space function returns them (inactive ones absent): the cache's key."""
        import optuna

        return self.suggest(optuna.trial.FixedTrial(params))


SPACES: Registry[Space] = Registry("space")
SPACES.add("svm", Space("svm", "HPO: SVC on digits", svm_space, build_svm))
SPACES.add("mlp", Space("mlp", "NAS: MLPClassifier on digits", mlp_space, build_mlp))
