"""The merge methods computed here, by name: a table built once from the classes below, as mergekit's
``merge_methods/registry.py`` lists its own; :func:`register` adds one more and refuses a name twice.

The method modules do not import this one (a method does not know its registry), so the table and the methods
never import each other.

A plain dict, not the bench's ``Registry`` (``benchmarks/registry.py``): ``llm_merge`` never imports the bench
(tests/test_architecture.py), and the one thing that class adds, families of parametric names, no method needs.
"""

from __future__ import annotations

from llm_merge.merges.base import MergeMethod
from llm_merge.merges.dare import DareLinear, DareTies
from llm_merge.merges.task_arithmetic import TaskArithmetic
from llm_merge.merges.ties import Ties

MERGE_METHODS: dict[str, type[MergeMethod]] = {}


def register(cls: type[MergeMethod]) -> type[MergeMethod]:
    """Add ``cls`` under its ``name`` (usable as a class decorator); a name already taken is a ``ValueError``."""
    if cls.name in MERGE_METHODS:
        raise ValueError(f"merge method {cls.name!r} registered twice")
    MERGE_METHODS[cls.name] = cls
    return cls


for _method in (TaskArithmetic, Ties, DareLinear, DareTies):
    register(_method)
