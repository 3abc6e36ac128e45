"""The one table of optimizer names: a public name ("evogm", "cmaes", …) → a factory.

Checkpoints, :func:`evogm_opt.minimize`, the merge YAML (``optimizer.name``), the bench and the overhead scripts all
build optimizers through :func:`create`, so a name means the same optimizer everywhere. Registering a name twice is
an error, as in mergekit's method registry: a plugin cannot silently replace a built-in.

Adding an optimizer: write it in one file under ``evogm_opt/optimizers/`` (a subclass of :class:`Optimizer` with
``name = "my-name"``), then add one :func:`register` line to :func:`_register_builtins` below
(docs/architecture.md walks through it).
"""

from __future__ import annotations

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


_ENTRIES: dict[str, OptimizerEntry] = {}
# checkpoints of format 1 named the class, not the public name
_LEGACY_CHECKPOINT_NAMES: dict[str, str] = {}
_builtins_loaded = False


def register(
    name: str,
    factory: Callable[..., Optimizer],
    *,
    cls: type[Optimizer],
    summary: str,
    legacy_names: tuple[str, ...] = (),
) -> None:
    """Add ``name``. ``factory(dim, **kwargs)`` builds the optimizer; ``cls`` is what its checkpoints load as."""
    _ensure_builtins()
    _add(OptimizerEntry(name, factory, cls, summary), legacy_names)


def _add(entry: OptimizerEntry, legacy_names: tuple[str, ...]) -> None:
    if not entry.name or entry.name != entry.name.strip() or "+" in entry.name or "@" in entry.name:
        raise ValueError(f"optimizer name {entry.name!r} must be non-empty, without spaces at the ends, '+' or '@'")
    if entry.name in _ENTRIES:
        raise ValueError(f"optimizer {entry.name!r} is already registered (by {_ENTRIES[entry.name].cls.__name__})")
    for old in legacy_names:
        if old in _LEGACY_CHECKPOINT_NAMES:
            raise ValueError(f"legacy checkpoint name {old!r} is already mapped to {_LEGACY_CHECKPOINT_NAMES[old]!r}")
    _ENTRIES[entry.name] = entry
    _LEGACY_CHECKPOINT_NAMES.update(dict.fromkeys(legacy_names, entry.name))


def names() -> list[str]:
    """Every registered name, in registration order (built-ins first)."""
    _ensure_builtins()
    return list(_ENTRIES)


def get(name: str) -> OptimizerEntry:
    """The entry for ``name``; a ValueError listing the known names otherwise."""
    _ensure_builtins()
    if not isinstance(name, str) or name not in _ENTRIES:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(_ENTRIES)}")
    return _ENTRIES[name]


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
    return _ENTRIES[key].cls


def _ensure_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        _register_builtins()


def _evogm(preset: str) -> Callable[..., Optimizer]:
    from evogm_opt.evogm import GenerativeOptimizer

    def build(dim: int, **kwargs: Any) -> Optimizer:
        return GenerativeOptimizer(dim, **{"preset": preset, **kwargs})

    return build


def _sep_cmaes(dim: int, **kwargs: Any) -> Optimizer:
    """sep-CMA-ES (Ros & Hansen 2008): a diagonal covariance, O(dim) per sample, for high dimensions."""
    from evogm_opt.optimizers import CMAES

    options = {**dict(kwargs.pop("cma_options", None) or {}), "CMA_diagonal": True}
    return CMAES(dim, cma_options=options, **kwargs)


def _register_builtins() -> None:
    # imported here, not at the top: the optimizers import evogm_opt.base, which reads this registry
    from evogm_opt.evogm import GenerativeOptimizer
    from evogm_opt.optimizers import CMAES, ModelSwarms, PSOMerging, RandomSearch

    evogm_legacy = ("GenerativeOptimizer",)
    for entry, legacy in [
        (OptimizerEntry("evogm", _evogm("default"), GenerativeOptimizer, "EvoGM, our default preset"), evogm_legacy),
        (OptimizerEntry("evogm-paper", _evogm("paper"), GenerativeOptimizer, "EvoGM, the reference's choices"), ()),
        (
            OptimizerEntry(
                "evogm-paper-single-generator",
                _evogm("paper-single-generator"),
                GenerativeOptimizer,
                "paper ablation: no cycle (G_lw alone)",
            ),
            (),
        ),
        (
            OptimizerEntry(
                "evogm-paper-no-rounds", _evogm("paper-no-rounds"), GenerativeOptimizer, "paper ablation: one round"
            ),
            (),
        ),
        (OptimizerEntry("cmaes", CMAES, CMAES, "CMA-ES (pycma), optional IPOP restarts"), ("CMAES",)),
        (OptimizerEntry("sep-cmaes", _sep_cmaes, CMAES, "sep-CMA-ES (pycma, diagonal covariance)"), ()),
        (OptimizerEntry("pso-merging", PSOMerging, PSOMerging, "PSO-Merging"), ("PSOMerging",)),
        (OptimizerEntry("model-swarms", ModelSwarms, ModelSwarms, "Model Swarms"), ("ModelSwarms",)),
        (OptimizerEntry("random", RandomSearch, RandomSearch, "uniform random search"), ("RandomSearch",)),
    ]:
        _add(entry, legacy)
