"""``evogm_opt.registry``: one name → factory table that every entry point reads."""

from __future__ import annotations

import numpy as np
import pytest

from evogm_opt import GenerativeOptimizer, Optimizer, RandomSearch, load, minimize, registry
from evogm_opt.base import STATE_VERSION


def test_every_builtin_name_builds_an_optimizer_of_its_class_and_its_checkpoint_names_the_family(tmp_path):
    for name in registry.names():
        entry = registry.get(name)
        opt = registry.create(name, 3, seed=0)
        assert isinstance(opt, entry.cls)
        opt.tell(opt.ask(), np.zeros(opt.popsize))
        opt.save(tmp_path / f"{name}.ckpt")
        state = opt.state_dict()
        assert state["state_version"] == STATE_VERSION
        assert registry.get(state["optimizer"]).cls is entry.cls
        assert type(load(tmp_path / f"{name}.ckpt")) is entry.cls


def test_registering_a_name_twice_is_an_error_and_changes_nothing():
    before = registry.get("random")
    with pytest.raises(ValueError, match="'random' is already registered"):
        registry.register("random", RandomSearch, cls=RandomSearch, summary="again")
    assert registry.get("random") is before


def test_an_unknown_name_lists_the_known_ones_everywhere_it_is_read():
    with pytest.raises(ValueError, match="unknown optimizer 'cma-es'; choose one of evogm, evogm-paper"):
        registry.create("cma-es", 3)
    with pytest.raises(ValueError, match="unknown optimizer 'cma-es'"):
        minimize(lambda x: 0.0, dim=2, budget=4, optimizer="cma-es")


def test_the_paper_name_is_the_paper_preset():
    opt = registry.create("evogm-paper", 4, seed=0)
    assert isinstance(opt, GenerativeOptimizer) and opt.config == registry.create("evogm", 4, preset="paper").config


def test_a_format_1_checkpoint_that_names_the_class_still_loads():
    opt = registry.create("evogm", 3, seed=1)
    opt.tell(opt.ask(), np.arange(opt.popsize, dtype=float))
    state = opt.state_dict()
    state["optimizer"] = "GenerativeOptimizer"  # what version 0.1 wrote
    del state["state_version"]
    resumed = Optimizer.from_state_dict(state)
    assert isinstance(resumed, GenerativeOptimizer)
    np.testing.assert_array_equal(resumed.ask(), opt.ask())


def test_loading_another_optimizers_checkpoint_names_the_class_that_loads_it(tmp_path):
    registry.create("cmaes", 3, seed=0).save(tmp_path / "cma.ckpt")
    with pytest.raises(TypeError, match=r"written by 'cmaes'.*CMAES\.load\(path\) or evogm_opt\.load\(path\)"):
        GenerativeOptimizer.load(tmp_path / "cma.ckpt")


def test_the_bench_the_merge_config_and_minimize_read_the_same_names():
    from evogm_bench.peers import PEERS

    assert set(registry.names()) <= set(PEERS)
