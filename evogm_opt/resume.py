"""Does a checkpoint belong to this run? The constructor settings of a loaded optimizer against a fresh one.

Why: a checkpoint file found at a run's path is resumed only if it is the run's own. One copied there from
another run (another optimizer, seed, preset or box) would otherwise continue with a foreign state while every
report names the optimizer the caller asked for. The budget (``max_evals``) is not part of the comparison:
raising it is how a finished run is continued.
"""

from __future__ import annotations

import json
import os
from typing import Any

from evogm_opt import _state
from evogm_opt.base import Optimizer

__all__ = ["checkpoint_owner", "load_checkpoint", "setup_mismatch"]

_NOT_COMPARED = frozenset({"max_evals"})


def setup_mismatch(loaded: Optimizer, expected: Optimizer, *, ignore: frozenset[str] = frozenset()) -> str | None:
    """``None`` if ``loaded`` was built as ``expected`` was (same optimizer, same constructor settings but the
    budget and ``ignore``); otherwise the first difference in words, e.g. ``"optimizer is 'cmaes', not 'evogm'"``."""
    if loaded.name != expected.name:
        return f"optimizer is {loaded.name!r}, not {expected.name!r}"
    theirs, ours = _plain(loaded._config()), _plain(expected._config())
    for key in sorted(set(theirs) | set(ours)):
        if key in _NOT_COMPARED or key in ignore:
            continue
        if theirs.get(key) != ours.get(key):
            return f"{key} is {_short(theirs.get(key))}, not {_short(ours.get(key))}"
    return None


def load_checkpoint(path: str | os.PathLike[str], **runtime: Any) -> tuple[Optimizer, str | None]:
    """The optimizer a checkpoint holds and the owner it was saved with (``None``: without one), from one read of
    the file: to resume a run and tell "another run's" from "damaged". ``runtime``: as for ``Optimizer.load``.

    Refused exactly as ``Optimizer.load(path)`` refuses (``ValueError``, one line naming the file): a damaged,
    edited or foreign file, a state no run could have written. Comparing the owner is the caller's to do.
    """
    checkpoint = _state.read_checkpoint(path)
    return Optimizer._from_checkpoint(path, checkpoint.state, **runtime), checkpoint.owner


def checkpoint_owner(path: str | os.PathLike[str]) -> str | None:
    """The owner string a checkpoint was saved with (``Optimizer.save(path, owner=...)``; ``None``: without one),
    after the file is read and verified like any load: to tell "another run's" from "damaged" in one message.
    To resume as well, :func:`load_checkpoint` gives the optimizer and its owner from one read."""
    return _state.checkpoint_owner(path)


def _plain(config: dict[str, Any]) -> dict[str, Any]:
    """The config as JSON values (numpy arrays and scalars as lists and numbers), so ``==`` compares contents."""
    return json.loads(json.dumps(config, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"
