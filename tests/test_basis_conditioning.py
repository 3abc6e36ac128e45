"""The basis shift with ``shift_min_residual``: new experts must add a direction, so the basis stays invertible."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from evogm_opt import GenerativeOptimizer
from evogm_opt.evogm.basis import spread_rows
from evogm_opt.evogm.config import PRESETS, EvoGMConfig


def _run(tau: float, seed: int) -> GenerativeOptimizer:
    config = dataclasses.replace(PRESETS["default"], shift_min_residual=tau)
    opt = GenerativeOptimizer(6, seed=seed, config=config, max_evals=120)
    while not opt.stop():
        x = opt.ask()
        opt.tell(x, np.sum((x - 0.3) ** 2, axis=1))  # converging: the round's top points cluster
    return opt


def test_spread_experts_keep_the_basis_well_conditioned():
    plain = [np.linalg.cond(_run(0.0, s).basis.matrix) for s in range(3)]
    spread = [np.linalg.cond(_run(0.3, s).basis.matrix) for s in range(3)]
    assert max(plain) > 100  # top-N of a converging search: near-singular
    assert max(spread) < 100
    assert _run(0.3, 0).basis_version >= 2


def test_spread_rows_follow_rank_order_and_skip_rows_in_the_span():
    u = np.array([[1.0, 0, 0], [0.9, 0.1, 0], [0, 1.0, 0], [0, 0, 0], [0, 0, 1.0]])
    rows = spread_rows(u, np.arange(5), 0.5, limit=3)
    assert rows.tolist() == [0, 2, 4]  # row 1 is nearly row 0; row 3 has no direction


def test_shift_min_residual_is_validated_off_in_the_paper_presets_and_on_in_the_default():
    assert all(PRESETS[name].shift_min_residual == 0.0 for name in PRESETS if name.startswith("paper"))
    assert PRESETS["default"].shift_min_residual == 0.3
    with pytest.raises(ValueError, match="shift_min_residual"):
        EvoGMConfig(shift_min_residual=1.0)
