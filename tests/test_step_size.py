"""The default preset's step size: a length of the whole perturbation, so σ per coordinate shrinks like 1/√dim."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from evogm_opt import GenerativeOptimizer
from evogm_opt.evogm.config import PRESETS, EvoGMConfig
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


def test_success_target_one_fifth_is_the_classic_rule_and_a_higher_one_shrinks_more():
    from evogm_opt.evogm.proposals import adapted_step

    assert adapted_step(0.5, 0.2, 10.0) == pytest.approx(0.5)  # success at the target: σ holds
    assert adapted_step(0.5, 0.4, 10.0) > 0.5
    assert adapted_step(0.5, 0.4, 10.0, target=0.5) < 0.5  # the same success is now short of the target
    assert adapted_step(0.5, 0.5, 10.0, target=0.5) == pytest.approx(0.5)


def test_a_higher_success_target_keeps_the_default_step_below_its_ceiling():
    def steps(target: float) -> list[float]:
        config = dataclasses.replace(PRESETS["default"], success_target=target)
        opt = GenerativeOptimizer(4, seed=0, config=config)
        ceiling = 1.2 / np.sqrt(4)
        out = []
        for _ in range(10):
            x = opt.ask()
            opt.tell(x, [sphere(r) for r in x])
            out.append(opt.noise / ceiling)
        return out

    classic, strict = steps(0.2), steps(0.9)
    assert max(classic) == pytest.approx(1.0)  # the 1/5th rule reaches the ceiling on the sphere
    # a target few generations reach shrinks σ instead (a round's end raises it back to σ₀, half the ceiling)
    assert np.mean(strict) < 0.5 * np.mean(classic)
    assert min(strict) < 0.1


def test_success_target_outside_the_open_unit_interval_is_refused():
    with pytest.raises(ValueError, match="success_target"):
        EvoGMConfig(success_target=0.0)
    with pytest.raises(ValueError, match="success_target"):
        GenerativeOptimizer(4, config={"success_target": 1.5})
