"""Checkpoints of earlier versions still load and resume exactly; settings removed in 0.2.0 are accepted at their
neutral value and refused at any other, in one line naming the setting and the commit where its code lives.

The files in tests/data were written by evogm-opt 0.1.0 (state version 2) before the settings were removed, with
the asks that code made next (``evogm-0.1.0-next-asks.json``): a resumed run must ask those — exactly on the machine
that wrote them, and to float32's last bits on another: the generators run in float32, whose matrix kernels round
differently on other CPUs (an AMD EPYC with AVX-512 differs by 1.2e-7 from the fixtures). A wrong or partly lost state
moves the asks by far more (the first ask after a changed generator or step differs in the first digits); exact
resume on one machine is what the resume tests check, against an uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import evogm_opt
from evogm_opt import PRESETS, GenerativeOptimizer, Optimizer, _state
from evogm_opt.evogm.config import REMOVED_AT, REMOVED_SETTINGS, EvoGMConfig

DATA = Path(__file__).parent / "data"
NEXT = json.loads((DATA / "evogm-0.1.0-next-asks.json").read_text())


def assert_asks(actual: np.ndarray, expected: list) -> None:
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)  # float32 rounding across CPUs, nothing more


def sphere(x: np.ndarray) -> float:
    return float(np.sum((x - 0.3) ** 2))  # what the fixtures were told


@pytest.mark.parametrize("preset", ["default", "paper"])
def test_a_0_1_checkpoint_resumes_with_the_asks_0_1_made(preset):
    opt = evogm_opt.load(DATA / f"evogm-0.1.0-{preset}.ckpt")
    assert isinstance(opt, GenerativeOptimizer) and opt.config == PRESETS[preset] and opt.preset == preset
    x = opt.ask()
    assert_asks(x, NEXT[preset]["next_ask"])
    opt.tell(x, [sphere(row) for row in x])
    assert_asks(opt.ask(), NEXT[preset]["then"])


def _old_state(preset: str) -> dict:
    """The state exactly as 0.1.0 wrote it: removed settings in the config, ``final_phase_from`` in the algorithm."""
    return _state.load_state(DATA / f"evogm-0.1.0-{preset}.ckpt")


def test_the_fixtures_carry_every_removed_setting_at_its_neutral_value():
    recorded = _old_state("default")["config"]["config"]
    assert set(REMOVED_SETTINGS) | {"recommend_top_fraction", "screening_refine_scale"} <= set(recorded)
    assert _old_state("default")["algorithm"]["final_phase_from"] == -1
    assert EvoGMConfig.from_dict(recorded) == PRESETS["default"]


def test_a_format_1_record_of_0_1_still_loads():
    state = _old_state("default")
    state["optimizer"] = "GenerativeOptimizer"  # format 1 named the class and had no state_version
    del state["state_version"]
    resumed = Optimizer.from_state_dict(state)
    assert_asks(resumed.ask(), NEXT["default"]["next_ask"])


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("recommendation", "posterior"),
        ("use_generator", False),
        ("screening_refine", 32),
        ("surrogate_noise_floor", 0.03),
        ("screening_scales", [1.0, 0.25]),
        ("final_replicates_per_dim", 1.0),
        ("binomial_trials", 200),
        ("success_target", 0.4),
        ("boundary", "mixed"),  # a value removed from a setting that stays
    ],
)
def test_a_record_that_turned_a_removed_setting_on_is_refused_in_one_line(setting, value):
    state = _old_state("default")
    state["config"]["config"][setting] = value
    with pytest.raises(ValueError) as refused:
        Optimizer.from_state_dict(state)
    message = str(refused.value)
    assert "\n" not in message and f"{setting}=" in message and f"git checkout {REMOVED_AT}" in message


def test_a_removed_setting_in_a_users_dict_names_where_its_code_lives():
    with pytest.raises(ValueError, match=rf"recommendation was removed in evogm-opt 0\.2\.0.*{REMOVED_AT}"):
        GenerativeOptimizer(3, config={"recommendation": "best"})
    with pytest.raises(ValueError, match="evogm-no-generator"):
        GenerativeOptimizer(3, config={"use_generator": False})
    with pytest.raises(TypeError):
        EvoGMConfig(use_generator=True)  # gone from the dataclass too


def test_a_0_1_algorithm_state_in_its_final_phase_is_refused():
    state = _old_state("default")
    state["algorithm"]["final_phase_from"] = 3
    with pytest.raises(ValueError, match="final_phase_from"):
        Optimizer.from_state_dict(state)
