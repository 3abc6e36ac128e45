"""A checkpoint proves which run it belongs to: ``save(path, owner=...)`` and ``load(path, owner=...)``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evogm_opt import CMAES, GenerativeOptimizer, RandomSearch
from evogm_opt import base as base_module
from evogm_opt._state import checkpoint_owner


def _told(opt):
    x = opt.ask()
    opt.tell(x, [float(np.sum(r**2)) for r in x])
    return opt


def test_the_owner_is_stored_and_read_back(tmp_path: Path):
    path = tmp_path / "run.ckpt"
    _told(RandomSearch(2, seed=0)).save(path, owner="run-fingerprint-1")
    assert checkpoint_owner(path) == "run-fingerprint-1"
    assert RandomSearch.load(path, owner="run-fingerprint-1").n_evals == 4
    assert base_module.load(path, owner="run-fingerprint-1").n_evals == 4
    assert RandomSearch.load(path).n_evals == 4  # no owner asked for: no check


def test_a_checkpoint_of_another_run_is_refused_in_one_line(tmp_path: Path):
    path = tmp_path / "run.ckpt"
    _told(CMAES(4, seed=0)).save(path, owner="della-cma")
    for load in (CMAES.load, GenerativeOptimizer.load, base_module.load):
        with pytest.raises(ValueError) as info:
            load(path, owner="evogm-ta")
        assert str(info.value) == f"{path} belongs to 'della-cma', not 'evogm-ta'"


def test_a_checkpoint_without_an_owner_cannot_prove_it_belongs(tmp_path: Path):
    path = tmp_path / "run.ckpt"
    _told(RandomSearch(2, seed=0)).save(path)
    assert checkpoint_owner(path) is None
    with pytest.raises(ValueError, match=r"run\.ckpt was written without an owner") as info:
        base_module.load(path, owner="mine")
    assert "\n" not in str(info.value)


def test_an_edited_owner_fails_the_checksum(tmp_path: Path):
    path = tmp_path / "run.ckpt"
    _told(RandomSearch(2, seed=0)).save(path, owner="aaaa")
    data = path.read_bytes()
    assert data.count(b'"owner":"aaaa"') == 1
    path.write_bytes(data.replace(b'"owner":"aaaa"', b'"owner":"bbbb"'))  # same length: the zip stays valid
    with pytest.raises(ValueError, match="corrupt"):
        checkpoint_owner(path)


def test_the_owner_must_be_a_string(tmp_path: Path):
    with pytest.raises(TypeError, match="owner must be a string"):
        RandomSearch(2, seed=0).save(tmp_path / "run.ckpt", owner=17)  # type: ignore[arg-type]


def test_load_checkpoint_gives_the_optimizer_and_its_owner_from_one_read(tmp_path: Path, monkeypatch):
    from evogm_opt import _state
    from evogm_opt.resume import load_checkpoint

    path = tmp_path / "run.ckpt"
    saved = _told(CMAES(3, seed=4))
    saved.save(path, owner="run-fingerprint-1")
    reads = []
    real_read = _state._read
    monkeypatch.setattr(_state, "_read", lambda source: reads.append(source) or real_read(source))
    opt, owner = load_checkpoint(path)
    assert reads == [path] and owner == "run-fingerprint-1"
    assert isinstance(opt, CMAES) and opt.n_evals == saved.n_evals
    np.testing.assert_array_equal(opt.ask(), saved.ask())
    _told(RandomSearch(2, seed=0)).save(path)
    assert load_checkpoint(path)[1] is None


def _same_refusal(path: Path) -> str:
    """``load_checkpoint`` refuses ``path`` with exactly the one line ``Optimizer.load`` gives."""
    from evogm_opt import Optimizer
    from evogm_opt.resume import load_checkpoint

    with pytest.raises(ValueError) as by_load:
        Optimizer.load(path)
    with pytest.raises(ValueError) as by_resume:
        load_checkpoint(path)
    assert str(by_resume.value) == str(by_load.value)
    assert "\n" not in str(by_load.value) and str(path) in str(by_load.value)
    return str(by_resume.value)


def test_load_checkpoint_refuses_damage_and_impossible_states_as_load_does(tmp_path: Path):
    from evogm_opt._state import load_state, save_state

    path = tmp_path / "run.ckpt"
    _told(RandomSearch(2, seed=0)).save(path, owner="mine")
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    assert "is corrupt or not an evogm-opt checkpoint" in _same_refusal(path)

    path.write_bytes(good)
    state = load_state(path)
    state["core"]["n_evals"] = -1  # resaved: a valid checksum over an impossible state
    save_state(path, state, owner="mine")
    assert _same_refusal(path) == f"{path}: checkpoint field core.n_evals is -1; it must be an integer >= 0"

    state["core"]["n_evals"] = 4
    state["config"]["bounds"] = "nonsense"  # a constructor that refuses: the path prefixed, as load does
    save_state(path, state, owner="mine")
    assert _same_refusal(path).startswith(f"{path}: ")
