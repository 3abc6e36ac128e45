"""The default preset's step size: a length of the whole perturbation, so σ per coordinate shrinks like 1/√dim."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from evogm_opt import GenerativeOptimizer
from evogm_opt.evogm.config import PRESETS, REMOVED_AT, EvoGMConfig
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


def test_the_step_rule_is_the_one_fifth_success_rule_kept_in_its_range():
    from evogm_opt.evogm.proposals import adapted_step

    assert adapted_step(0.5, 0.2, 10.0) == pytest.approx(0.5)  # a fifth of the results succeed: σ holds
    assert adapted_step(0.5, 0.4, 10.0) > 0.5 and adapted_step(0.5, 0.1, 10.0) < 0.5
    assert adapted_step(0.5, 1.0, 0.6) == 0.6 and adapted_step(1.1e-3, 0.0, 10.0) == 1e-3


def test_success_target_was_removed_and_is_refused_naming_where_its_code_lives():
    """Ablation 17 measured higher targets and rejected them: 1/5 is the rule's constant now."""
    with pytest.raises(ValueError, match=rf"success_target was removed in evogm-opt 0\.2\.0.*{REMOVED_AT}"):
        GenerativeOptimizer(4, config={"success_target": 0.4})
    with pytest.raises(ValueError, match=rf"success_target=0\.4 was removed.*{REMOVED_AT}"):
        EvoGMConfig.from_dict({**PRESETS["default"].to_dict(), "success_target": 0.4})
    assert EvoGMConfig.from_dict({**PRESETS["default"].to_dict(), "success_target": 0.2}) == PRESETS["default"]
    with pytest.raises(TypeError):
        EvoGMConfig(success_target=0.2)  # type: ignore[call-arg]
