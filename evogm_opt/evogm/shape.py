"""Which shape ``"evogm"`` takes: the rule on the dimension and the budget (docs/research.md, ablation 33).

Why a rule and not one shape: at four coefficients and a budget of 10–20 evaluations per coordinate the
sequential shape (``sequential.py``: one point per ask by LogEI) is ahead of the population shape and of the Bayesian
optimisers it is measured against, while at 8 coordinates and more, and for long budgets, the population shape is
measured best and cheaper per point. The rule stops about where the measurements stop — N = 4, runs of 20·N (and of
10·N): at N = 8 the sequential shape is behind (6 of 20 cells, 15 seeds) and larger budgets were not run. Below that
it extrapolates (N = 1–3 and budgets under 10·N were not run; ablations 33 and 35).

The rule needs the budget: without ``max_evals`` the shape is the population (a tuning study or an open-ended
loop has no budget to size the start design by). Options that only the population shape has (``preset``,
``config``, ``popsize``, ``on_basis_shift``) ask for it by name. ``"evogm-sequential"`` asks for the sequential
shape at any size.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

# the largest dimension and budget per coordinate at which "evogm" is sequential (what ablation 33 measured)
SEQUENTIAL_MAX_DIM = 4
SEQUENTIAL_MAX_EVALS_PER_DIM = 20
# options of the population shape alone: giving one asks for it
POPULATION_OPTIONS = frozenset({"preset", "config", "popsize", "on_basis_shift"})

RULE = (
    f"sequential when dim <= {SEQUENTIAL_MAX_DIM} and max_evals <= {SEQUENTIAL_MAX_EVALS_PER_DIM}*dim, else population"
)


def choose(dim: Any, options: Mapping[str, Any]) -> str:
    """``"sequential"`` or ``"population"`` for ``"evogm"`` at ``dim`` coordinates with these constructor options
    (a value of the wrong type goes to the population shape, whose constructor names it in its error)."""
    if POPULATION_OPTIONS & set(options):
        return "population"
    max_evals = options.get("max_evals")
    whole = (numbers.Integral,)
    if not isinstance(dim, whole) or not isinstance(max_evals, whole) or isinstance(max_evals, bool):
        return "population"
    if isinstance(dim, bool) or not 1 <= dim <= SEQUENTIAL_MAX_DIM:
        return "population"
    return "sequential" if 1 <= max_evals <= SEQUENTIAL_MAX_EVALS_PER_DIM * dim else "population"


def as_checkpointed(checkpoint_name: str, options: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """How to build ``"evogm"`` in the shape a checkpoint of it holds — a run keeps the shape it began with, whatever
    the rule says for the budget it is resumed with, or said in an older version: the registry name and options,
    or ``None`` where the checkpoint holds neither shape (or the sequential one while the options ask for the
    population shape by name)."""
    if checkpoint_name == "evogm":
        return "evogm", {"preset": "default", **options}
    if checkpoint_name == "evogm-sequential" and not POPULATION_OPTIONS & set(options):
        return "evogm-sequential", dict(options)
    return None
