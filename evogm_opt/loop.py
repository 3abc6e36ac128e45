"""The one ask → evaluate → tell → checkpoint → stop driver (after pycma's ``OOOptimizer.optimize``).

:func:`evogm_opt.minimize`, the merge search (``llm_merge``) and the bench runner (``evogm_bench``) are thin
callers of :func:`optimize`: what differs between them (how a batch is scored, what is journalled before a
tell, what is recorded after it) comes in as callables, so the order of the steps — and with it exact resume —
is written once.

One step: ``X = opt.ask(min(popsize, budget − n_evals))``; ``values = evaluate(X)``; ``before_tell(X, values)``
(e.g. append the journal, so a crash before the checkpoint re-runs the step); ``opt.tell(X, values)``;
``opt.save(checkpoint)``; the stopping rules; ``after_tell(opt)`` (``True`` stops).

An optimizer that asks with fidelity (:class:`evogm_opt.fidelity.FidelityScheduler`) returns a batch with the rows
and the fidelity to measure each at: ``evaluate`` then receives that batch, and the tell says the fidelities. A
run that a budget, the monitor or ``after_tell`` ends in the middle of such an optimizer's generation warns once:
the candidates measured so far are not told to the wrapped optimizer until a later run finishes the generation.
"""

from __future__ import annotations

import inspect
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from evogm_opt.base import Optimizer
from evogm_opt.stopping import StoppingMonitor, budget_reason

if TYPE_CHECKING:
    from evogm_opt.fidelity import FidelityBatch


class AskTell(Protocol):
    """What the loop needs: ``ask(n)`` returning at most ``n`` rows and ``tell(X, values)``.

    Optional: ``popsize`` (rows per ask; default: whatever budget is left), ``n_evals`` (default: counted by the
    loop), ``stop()``, ``stop_reason``, ``best`` (for the stopping monitor) and ``save(path)`` (checkpoints).
    """

    def ask(self, n: int) -> np.ndarray: ...

    def tell(self, x: np.ndarray, y: Any) -> None: ...


class AsksWithFidelity(Protocol):
    """An :class:`AskTell` whose ``ask`` returns a batch with ``x`` and ``fidelity`` (a
    :class:`evogm_opt.fidelity.FidelityBatch`) instead of an array, told ``tell(x, values, fidelity=...)``;
    optional as there, and ``in_flight`` (candidates of an unfinished generation, for the warning)."""

    def ask(self, n: int) -> FidelityBatch: ...

    def tell(self, x: np.ndarray, y: Any, fidelity: Any = None) -> None: ...


def optimize(
    opt: AskTell | AsksWithFidelity,
    evaluate: Callable[[Any], Any],
    *,
    budget: int | None = None,
    monitor: StoppingMonitor | None = None,
    checkpoint: str | Path | None = None,
    before_tell: Callable[[np.ndarray, Any], None] | None = None,
    after_tell: Callable[[Any], Any] | None = None,
    elapsed: float = 0.0,
) -> str | None:
    """Run ``opt`` until ``budget`` evaluations, ``opt.stop()``, the monitor or ``after_tell`` ends it.

    Args:
        evaluate: ``evaluate(X) -> values`` for a whole batch: one value per row, or K values per row. For an
            optimizer that asks with fidelity, ``X`` is its batch (``.x``, ``.fidelity``, ``.previous``, …).
        budget: total evaluations (those already told included); ``None``: until something else stops the run.
        monitor: stopping rules checked after each tell with ``(opt.best.y, n_evals, seconds)``.
        checkpoint: ``opt.save(checkpoint)`` after every tell.
        before_tell: called with ``(X, values)`` after evaluation, before the tell.
        after_tell: called with ``opt`` after each step; returning ``True`` stops the run.
        elapsed: seconds already spent (a resumed run), for the monitor's wall-clock rule.

    Returns:
        Why the loop ended (``None`` when it ended only because ``opt.stop()`` or the budget said so and the
        optimizer gives no reason).
    """
    start = time.perf_counter() - elapsed
    told = int(getattr(opt, "n_evals", 0))
    reason = _budget_reason(told, budget)
    while reason is None and not _stopped(opt, default_rules=budget is None):
        left = None if budget is None else budget - told
        popsize = getattr(opt, "popsize", None)
        n = left if popsize is None else popsize if left is None else min(popsize, left)
        if n is None:
            raise ValueError("an optimizer without popsize needs a budget")
        asked = opt.ask(n)
        if len(asked) == 0:
            raise RuntimeError(f"{type(opt).__name__} proposed no points with {left} evaluations left")
        values = evaluate(asked)
        fidelity = getattr(asked, "fidelity", None)  # an array has none: a plain optimizer's step is unchanged
        x = asked if fidelity is None else cast("FidelityBatch", asked).x
        if before_tell is not None:
            before_tell(x, values)
        if fidelity is None:
            opt.tell(x, values)
        else:
            cast(AsksWithFidelity, opt).tell(x, values, fidelity=fidelity)
        told = int(getattr(opt, "n_evals", told + len(x)))
        if checkpoint is not None:
            opt.save(checkpoint)  # type: ignore[attr-defined]
        if monitor is not None:
            best = getattr(opt, "best", None)
            reason = monitor.update(None if best is None else best.y, told, time.perf_counter() - start)
        reason = reason or _budget_reason(told, budget)
        if after_tell is not None and after_tell(opt) is True:
            reason = "callback asked to stop"
    if reason is None and isinstance(opt, Optimizer):
        reason = opt._stop_reason(default_rules=budget is None)
    reason = reason or getattr(opt, "stop_reason", None)
    in_flight = int(getattr(opt, "in_flight", 0))
    if in_flight:  # a scheduler stops only between generations: the budget, the monitor or after_tell ended it
        warnings.warn(
            f"optimize ended ({reason}) in the middle of a generation: its {in_flight} candidates are not told to "
            "the inner optimizer yet, though their examples are spent; the scheduler (and its checkpoint) keeps "
            "them, and a later optimize with a larger budget finishes the generation. To stop between "
            "generations, give the FidelityScheduler max_examples instead of a loop budget",
            stacklevel=2,
        )
    return reason


def _stopped(opt: AskTell, default_rules: bool) -> bool:
    """``opt.stop()``; the optimizers' default rules apply only when the loop has no budget of its own. Any
    ``stop`` that takes ``default_rules`` (an :class:`Optimizer`, or a wrapper that forwards it) is told so."""
    stop = getattr(opt, "stop", None)
    if not callable(stop):
        return False
    if "default_rules" in inspect.signature(stop).parameters:
        return bool(stop(default_rules=default_rules))
    return bool(stop())


def _budget_reason(n_evals: int, budget: int | None) -> str | None:
    return budget_reason(n_evals, budget) if budget is not None and n_evals >= budget else None
