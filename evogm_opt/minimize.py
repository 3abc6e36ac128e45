"""``minimize(f, dim, budget)``: the whole ask/tell loop in one call, for when you just have a function.

Checkpointing is built in: with ``checkpoint=PATH`` the optimizer is saved atomically after every ``tell`` and a
later call with the same path resumes exactly where the last one stopped (after a crash, or with a larger
budget), so an expensive objective is never evaluated twice for the same step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evogm_opt import registry
from evogm_opt.base import Best, Optimizer
from evogm_opt.bounds import BoundsLike
from evogm_opt.loop import optimize
from evogm_opt.resume import setup_mismatch
from evogm_opt.stopping import StoppingMonitor, StoppingRules


@dataclass(frozen=True)
class MinimizeResult:
    x: np.ndarray  # the recommended point (``optimizer.recommend()``)
    y: float  # its observed value
    n_evals: int
    stop_reason: str | None
    optimizer: Optimizer  # for history, checkpoints, or more ask/tell


def minimize(
    f: Callable[[np.ndarray], float] | Callable[[np.ndarray], Sequence[float]],
    dim: int,
    budget: int,
    bounds: BoundsLike = (-1.0, 1.0),
    *,
    optimizer: str | Optimizer = "evogm",
    maximize: bool = False,
    batch: bool = False,
    seed: int | None = None,
    checkpoint: str | Path | None = None,
    callback: Callable[[Optimizer], Any] | None = None,
    max_seconds: float | None = None,
    patience: int | None = None,
    min_improvement: float = 0.0,
    log_every: int | None = None,
    **options: Any,
) -> MinimizeResult:
    """Minimise (or maximise) ``f`` over the box with at most ``budget`` evaluations.

    Args:
        f: ``f(x) -> float`` for one point, or with ``batch=True`` ``f(X) -> values`` for a whole generation
            (evaluate it in parallel however you like). A non-finite value or an exception-free ``None`` counts
            as a failed evaluation. Without ``batch`` the budget is passed on as ``max_evals``, so ``"evogm"``
            follows its rule (one point per ask at dim <= 4 with a budget <= 20·dim); with ``batch=True`` it
            asks generations of 2·dim (its population shape).
        optimizer: a name from ``evogm_opt.registry.names()`` or a ready :class:`Optimizer` (then dim, bounds and
            seed must match it).
        checkpoint: save after every tell; resume from it if the file exists.
        callback: called with the optimizer after every tell; return ``True`` to stop early.
        max_seconds: stop after this much wall-clock time in this call (checked after each generation).
        log_every: print one progress line every this many generations (evaluations, best value, the
            optimizer's repr); for logging instead, the ``evogm_opt`` logger reports at INFO level.
        patience / min_improvement: stop when the best value has not improved by more than ``min_improvement``
            for ``patience`` generations (``evogm_opt.stopping``).
        options: further keyword arguments for the named optimizer (e.g. ``popsize``, ``preset``, ``config``).
    """
    if not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be a positive integer, got {budget!r}")
    path = None if checkpoint is None else Path(checkpoint)
    if isinstance(optimizer, Optimizer):
        opt = optimizer
        if opt.dim != dim:
            raise ValueError(f"optimizer has dim {opt.dim}, not {dim}")
    else:
        # the budget as max_evals: "evogm"'s rule reads it (sequential at dim <= 4 with a budget <= 20·dim), and the
        # sequential shape sizes its start design by it; the loop stops at the budget either way. Not with
        # batch=True: whoever evaluates whole generations in parallel gets generations (the population shape)
        if not batch:
            options = {"max_evals": budget, **options}
        opt = registry.create(optimizer, dim, bounds=bounds, seed=seed, maximize=maximize, **options)
    if path is not None and path.exists():

        def built_as(name: str, settings: dict[str, Any]) -> Optimizer:
            return registry.create(name, dim, bounds=bounds, seed=seed, maximize=maximize, **settings)

        same_shape = None if isinstance(optimizer, Optimizer) or optimizer != "evogm" else (built_as, options)
        opt = _resumed(path, opt, seed_given=seed is not None or isinstance(optimizer, Optimizer), shape=same_shape)
        if not isinstance(optimizer, Optimizer) and "max_evals" in options:  # a resumed budget: its stop follows
            opt.max_evals = options["max_evals"]
    monitor = StoppingMonitor(StoppingRules(budget, max_seconds, patience, min_improvement), maximize=opt.maximize)

    def evaluate(x: np.ndarray) -> list[Any]:
        values = f(x) if batch else [f(row) for row in x]
        return [np.nan if v is None else v for v in values]

    if log_every is not None and (isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1):
        raise ValueError(f"log_every must be a positive integer or None, got {log_every!r}")
    generations = 0

    def after_tell(o: Optimizer) -> bool:
        nonlocal generations
        generations += 1
        if log_every is not None and generations % log_every == 0:
            print(f"minimize: generation {generations}: {o!r}", flush=True)
        return callback is not None and callback(o) is True

    reason = optimize(opt, evaluate, budget=budget, monitor=monitor, checkpoint=path, after_tell=after_tell)
    reco: Best | None = opt.recommend()
    if reco is None:
        raise RuntimeError("every evaluation failed; nothing to recommend")
    return MinimizeResult(x=reco.x, y=reco.y, n_evals=opt.n_evals, stop_reason=reason, optimizer=opt)


def _resumed(
    path: Path,
    expected: Optimizer,
    seed_given: bool,
    shape: tuple[Callable[[str, dict[str, Any]], Optimizer], dict[str, Any]] | None = None,
) -> Optimizer:
    """The checkpoint at ``path`` if it is this call's own run (same optimizer and settings but the budget, and
    the seed when none was given); a ``ValueError`` naming the first difference otherwise. ``shape``: for
    ``"evogm"``, how to build it and its options, so a run continues in the shape its checkpoint holds."""
    loaded = Optimizer.load(path)
    if shape is not None and loaded.name != expected.name:
        from evogm_opt.evogm import shape as evogm_shape  # here: importing the evogm package loads torch

        built_as, options = shape
        other = evogm_shape.as_checkpointed(loaded.name, options)
        if other is not None:
            expected = built_as(*other)
    if loaded.dim != expected.dim:
        raise ValueError(f"checkpoint {path} is for dim {loaded.dim}, not {expected.dim}")
    mismatch = setup_mismatch(loaded, expected, ignore=frozenset() if seed_given else frozenset({"seed"}))
    if mismatch is not None:
        raise ValueError(
            f"checkpoint {path} belongs to another run ({mismatch}); give another checkpoint path, or move that "
            "file away to start afresh"
        )
    return loaded
