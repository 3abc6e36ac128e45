"""The one table of optimizer names: a public name ("evogm", "cmaes", …) → a factory.

Checkpoints, :func:`evogm_opt.minimize`, the merge YAML (``optimizer.name``), the bench and the overhead scripts all
build optimizers through :func:`create`, so a name means the same optimizer everywhere. Registering a name twice is
an error, as in mergekit's method registry: a plugin cannot silently replace a built-in.

Adding an optimizer: write it in one file under ``evogm_opt/optimizers/`` (a subclass of :class:`Optimizer` with
``name = "my-name"``), then add one ``_Builtin(name, module, class name, summary)`` line to
:func:`_register_builtins` below (docs/architecture.md walks through it). Built-ins are named, not imported, until
one is asked for: reading the table must not load torch or cma (``evogm-opt merge`` checks a config's
``optimizer.name`` before anything heavy loads).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evogm_opt.base import Optimizer


@dataclass(frozen=True)
class OptimizerEntry:
    """One registered name: how to build it, which class its checkpoints belong to, and one line for ``--help``."""

    name: str
    factory: Callable[..., Optimizer]  # factory(dim, **keyword arguments of the class) -> Optimizer
    cls: type[Optimizer]
    summary: str


@dataclass(frozen=True)
class _Builtin:
    """A built-in name before its module is imported: the class is named, not loaded, so that reading the table
    (``names()``, a config's ``optimizer.name``) does not pull in torch or cma (about 2 s) before any optimizer is
    built."""

    name: str
    module: str  # where ``cls_name`` lives
    cls_name: str
    summary: str
    factory: Callable[[type[Optimizer]], Callable[..., Optimizer]] | None = None  # None: the class is the factory

    def resolve(self) -> OptimizerEntry:
        cls = getattr(importlib.import_module(self.module), self.cls_name)
        return OptimizerEntry(self.name, cls if self.factory is None else self.factory(cls), cls, self.summary)


_ENTRIES: dict[str, OptimizerEntry | _Builtin] = {}
# checkpoints of format 1 named the class, not the public name: the built-ins' class names (_register_builtins)
_LEGACY_CHECKPOINT_NAMES: dict[str, str] = {}
_builtins_loaded = False


def register(
    name: str,
    factory: Callable[..., Optimizer],
    *,
    cls: type[Optimizer],
    summary: str,
) -> None:
    """Add ``name``. ``factory(dim, **kwargs)`` builds the optimizer; ``cls`` is what its checkpoints load as."""
    _ensure_builtins()
    _add(OptimizerEntry(name, factory, cls, summary))


def _add(entry: OptimizerEntry | _Builtin) -> None:
    if not entry.name or entry.name != entry.name.strip() or "+" in entry.name or "@" in entry.name:
        raise ValueError(f"optimizer name {entry.name!r} must be non-empty, without spaces at the ends, '+' or '@'")
    if entry.name in _ENTRIES:
        raise ValueError(f"optimizer {entry.name!r} is already registered (by {_class_name(_ENTRIES[entry.name])})")
    _ENTRIES[entry.name] = entry


def names() -> list[str]:
    """Every registered name, in registration order (built-ins first)."""
    _ensure_builtins()
    return list(_ENTRIES)


def get(name: str) -> OptimizerEntry:
    """The entry for ``name``; a ValueError listing the known names otherwise."""
    _ensure_builtins()
    if not isinstance(name, str) or name not in _ENTRIES:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(_ENTRIES)}")
    entry = _ENTRIES[name]
    if isinstance(entry, _Builtin):
        entry = _ENTRIES[name] = entry.resolve()  # same position: names() keeps its order
    return entry


def _class_name(entry: OptimizerEntry | _Builtin) -> str:
    return entry.cls_name if isinstance(entry, _Builtin) else entry.cls.__name__


def create(name: str, dim: int, **kwargs: Any) -> Optimizer:
    """Build the optimizer registered as ``name`` (``kwargs``: ``bounds``, ``seed``, ``maximize``, … of its class)."""
    return get(name).factory(dim, **kwargs)


def class_for_checkpoint(name: str) -> type[Optimizer]:
    """The class a checkpoint's ``optimizer`` entry names (a public name, or a class name of format 1).

    An optimizer of your own loads through ``MyOptimizer.load(path)`` always, and through ``evogm_opt.load(path)``
    once it is registered under its ``name``.
    """
    _ensure_builtins()
    key = _LEGACY_CHECKPOINT_NAMES.get(name, name)
    if key not in _ENTRIES:
        raise ValueError(f"the checkpoint is for an unknown optimizer {name!r}; known: {', '.join(_ENTRIES)}")
    return get(key).cls


def _ensure_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        _register_builtins()


def _evogm(preset: str) -> Callable[[type[Optimizer]], Callable[..., Optimizer]]:
    def factory(cls: type[Optimizer]) -> Callable[..., Optimizer]:
        def build(dim: int, **kwargs: Any) -> Optimizer:
            return cls(dim, **{"preset": preset, **kwargs})

        return build

    return factory


def _by_rule(module: str, function: str) -> Callable[[type[Optimizer]], Callable[..., Optimizer]]:
    """A factory that is a function of another module, looked up by name when the entry resolves (as the class is):
    ``"evogm"``'s rule (``evogm_opt.evogm.pick.build``) builds one of two classes."""

    def factory(cls: type[Optimizer]) -> Callable[..., Optimizer]:
        del cls  # the checkpoint class of the entry; the rule picks the class it builds
        return getattr(importlib.import_module(module), function)

    return factory


def _sep_cmaes(cls: type[Optimizer]) -> Callable[..., Optimizer]:
    def build(dim: int, **kwargs: Any) -> Optimizer:
        """sep-CMA-ES (Ros & Hansen 2008): a diagonal covariance, O(dim) per sample, for high dimensions."""
        options = {**dict(kwargs.pop("cma_options", None) or {}), "CMA_diagonal": True}
        return cls(dim, cma_options=options, **kwargs)

    return build


def _register_builtins() -> None:
    # named, not imported: the optimizers import evogm_opt.base (which reads this registry) and torch or cma
    evogm, opts = ("evogm_opt.evogm", "GenerativeOptimizer"), ("evogm_opt.optimizers",)
    for entry in [
        _Builtin(
            "evogm",
            *evogm,
            "EvoGM, our default: sequential at dim <= 4 with max_evals <= 20*dim, else population",
            _by_rule("evogm_opt.evogm.pick", "build"),
        ),
        _Builtin("evogm-paper", *evogm, "EvoGM, the reference's choices", _evogm("paper")),
        _Builtin(
            "evogm-sequential",
            "evogm_opt.evogm.sequential",
            "SequentialOptimizer",
            "EvoGM's sequential shape (one point per ask by LogEI) at any size",
        ),
        _Builtin("cmaes", *opts, "CMAES", "CMA-ES (pycma), optional IPOP restarts"),
        _Builtin("sep-cmaes", *opts, "CMAES", "sep-CMA-ES (pycma, diagonal covariance)", _sep_cmaes),
        _Builtin("pso-merging", *opts, "PSOMerging", "PSO-Merging"),
        _Builtin("model-swarms", *opts, "ModelSwarms", "Model Swarms"),
        _Builtin("random", *opts, "RandomSearch", "uniform random search"),
    ]:
        _add(entry)
    # checkpoints of format 1 named the class: these built-ins' classes, each read as the name it maps to
    _LEGACY_CHECKPOINT_NAMES.update(
        GenerativeOptimizer="evogm",
        CMAES="cmaes",
        PSOMerging="pso-merging",
        ModelSwarms="model-swarms",
        RandomSearch="random",
    )
