"""A fixed number of torch threads for a block of work, restored afterwards.

Why: EvoGM's networks are tiny (a few thousand weights), so torch's intra-op threads cost more in
synchronisation than they save; on a machine where other work also runs, the default two or more threads made
one ``ask`` 15× slower than one thread (docs/performance.md). A fixed count also makes the floats — and so
resume — independent of the caller's thread settings. The caller's own setting is restored on exit, so a user's
torch configuration is never changed behind their back.

``torch.set_num_threads`` is process-wide: a block here briefly changes it for other threads of the process too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def check_thread_count(threads: int, what: str = "threads") -> int:
    """``threads`` as a positive int, or a ValueError naming ``what``."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"{what} must be a positive integer, got {threads!r}")
    return threads


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``torch.get_num_threads() == threads``; put the caller's count back afterwards."""
    check_thread_count(threads)
    before = torch.get_num_threads()
    if before == threads:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
