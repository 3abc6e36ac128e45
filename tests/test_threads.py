"""The optimizer's own torch work runs on a fixed thread count: the caller's setting is untouched and the
results do not depend on it (so a resume is exact whatever the caller's threads)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evogm_opt import GenerativeOptimizer
from evogm_opt.threads import torch_threads


def run(threads_of_caller: int, **kwargs) -> np.ndarray:
    before = torch.get_num_threads()
    torch.set_num_threads(threads_of_caller)
    try:
        opt = GenerativeOptimizer(4, seed=3, **kwargs)
        asked = []
        for _ in range(5):
            x = opt.ask()
            seen = torch.get_num_threads()
            assert seen == threads_of_caller  # restored after every call
            opt.tell(x, np.sum((x - 0.3) ** 2, axis=1))
            asked.append(x)
        return np.concatenate(asked)
    finally:
        torch.set_num_threads(before)


def test_asks_are_the_same_whatever_the_callers_torch_threads_and_the_callers_setting_is_restored():
    np.testing.assert_array_equal(run(1), run(2))


def test_the_networks_run_on_the_configured_count_inside_a_call(monkeypatch):
    seen = []
    original = GenerativeOptimizer._propose_rows

    def spy(self, n):
        seen.append(torch.get_num_threads())
        return original(self, n)

    monkeypatch.setattr(GenerativeOptimizer, "_propose_rows", spy)
    run(2, torch_threads=1)
    assert set(seen) == {1}


def test_torch_threads_is_checked_and_kept_in_checkpoints(tmp_path):
    with pytest.raises(ValueError, match="torch_threads must be a positive integer, got 0"):
        GenerativeOptimizer(3, torch_threads=0)
    opt = GenerativeOptimizer(3, seed=0, torch_threads=2)
    opt.save(tmp_path / "c.ckpt")
    assert GenerativeOptimizer.load(tmp_path / "c.ckpt").torch_threads == 2


def test_the_context_restores_the_count_after_an_error():
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with pytest.raises(RuntimeError), torch_threads(target):
        assert torch.get_num_threads() == target
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
