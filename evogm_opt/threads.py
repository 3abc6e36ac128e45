"""A fixed number of torch threads — and BLAS threads — for a block of work, restored afterwards.

Why: EvoGM's networks are tiny (a few thousand weights), so torch's intra-op threads cost more in
synchronisation than they save; on a machine where other work also runs, the default two or more threads made
one ``ask`` 15× slower than one thread (docs/performance.md). A fixed count also makes the floats — and so
resume — independent of the caller's thread settings. The caller's own setting is restored on exit, so a user's
torch configuration is never changed behind their back.

The sequential shape's GP runs in NumPy/SciPy (closed-form gradients, research ablation 37), whose BLAS
(OpenBLAS or MKL) starts one thread per core by default: at n ≤ 80 points two threads made its fit and its climb
1.2–2.3× slower than one. :func:`numeric_threads` sets both pools.

``torch.set_num_threads`` and the BLAS limits are process-wide: a block here briefly changes them for other
threads of the process too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import torch
from threadpoolctl import ThreadpoolController


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


@lru_cache(maxsize=1)
def _blas_pools() -> ThreadpoolController:
    """The BLAS libraries loaded in this process, found once (about 4 ms; a limit on them then costs ~20 µs).
    Built at the first use, after NumPy and SciPy have loaded theirs."""
    return ThreadpoolController()


@contextmanager
def blas_threads(threads: int) -> Iterator[None]:
    """Run the block with NumPy's and SciPy's BLAS limited to ``threads``; their previous limits come back after."""
    check_thread_count(threads)
    with _blas_pools().limit(limits=threads, user_api="blas"):
        yield


@contextmanager
def numeric_threads(threads: int) -> Iterator[None]:
    """:func:`torch_threads` and :func:`blas_threads` together: the thread count of every numeric pool a block of
    the optimizer uses."""
    with torch_threads(threads), blas_threads(threads):
        yield
