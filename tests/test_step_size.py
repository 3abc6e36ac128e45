"""The default preset's step size: a length of the whole perturbation, so σ per coordinate shrinks like 1/√dim."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from evogm_opt import GenerativeOptimizer
from evogm_opt.config import PRESETS, EvoGMConfig
from tests.conftest import sphere


@pytest.mark.parametrize("dim", [4, 16])
def test_default_step_starts_at_0_6_and_is_capped_at_1_2_perturbation_lengths(dim):
    opt = GenerativeOptimizer(dim, seed=0)
    assert opt.noise == pytest.approx(0.6 / np.sqrt(dim))
    lengths = []
    for _ in range(8):
        x = opt.ask()
        opt.tell(x, [sphere(r) for r in x])
        lengths.append(opt.noise * np.sqrt(dim))
    assert max(lengths) <= 1.2 + 1e-12
    assert max(lengths) > 0.6  # the 1/5th rule does move it (screened proposals succeed often)


def test_per_coordinate_noise_when_not_scaled_by_dimension():
    config = dataclasses.replace(
        PRESETS["default"], noise_per_sqrt_dim=False, proposal_noise=0.2, max_proposal_noise=0.3
    )
    opt = GenerativeOptimizer(9, seed=0, config=config)
    assert opt.noise == pytest.approx(0.2)
    for _ in range(6):
        x = opt.ask()
        opt.tell(x, [sphere(r) for r in x])
        assert opt.noise <= 0.3 + 1e-12


def test_non_positive_noise_cap_is_refused():
    with pytest.raises(ValueError, match="max_proposal_noise"):
        EvoGMConfig(max_proposal_noise=0.0)
