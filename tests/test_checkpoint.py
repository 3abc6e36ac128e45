"""Checkpoints: atomic, plain data, versioned, and a resumed run asks exactly what an uninterrupted one asks."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from evogm_opt import CMAES, GenerativeOptimizer, Optimizer, RandomSearch
from evogm_opt._state import load_state, save_state
from tests.conftest import FACTORIES, sphere

K_BEFORE, K_AFTER = 3, 3

# Each optimizer is driven through a messy but deterministic protocol: partial tells, a failed evaluation and an
# external row, so that the checkpoint has pending asks and buffers to carry.
DRIVER = textwrap.dedent(
    """
    import numpy as np

    def drive(opt, generations, start=0):
        asks = []
        for g in range(start, start + generations):
            x = opt.ask()
            asks.append(x)
            y = [float(np.sum((r - 0.3) ** 2)) for r in x]
            if g == 1:
                y[0] = float("nan")
            half = len(x) // 2
            opt.tell(x[half:], y[half:])
            opt.tell(np.concatenate([x[:half], np.full((1, x.shape[1]), 0.1)]), y[:half] + [0.05])
        return asks
    """
)
namespace: dict = {}
exec(DRIVER, namespace)
drive = namespace["drive"]

PAPER_NAMES = ["evogm-paper"]


def build(name: str, dim: int = 3) -> Optimizer:
    if name == "evogm-paper":
        return GenerativeOptimizer(dim, preset="paper", seed=11, popsize=4)
    return FACTORIES[name](dim, seed=11)


@pytest.mark.parametrize("name", sorted(FACTORIES) + PAPER_NAMES)
def test_resume_in_fresh_process_is_bit_identical(tmp_path: Path, name: str):
    uninterrupted = build(name)
    expected = drive(uninterrupted, K_BEFORE + K_AFTER)[K_BEFORE:]

    first = build(name)
    drive(first, K_BEFORE)
    ckpt = tmp_path / "run.ckpt"
    first.save(ckpt)

    script = DRIVER + textwrap.dedent(
        f"""
        import torch
        torch.set_num_threads({torch.get_num_threads()})  # MKL's float sums depend on the thread count
        from evogm_opt import Optimizer
        opt = Optimizer.load({str(ckpt)!r})
        asks = drive(opt, {K_AFTER}, start={K_BEFORE})
        np.save({str(tmp_path / "asks.npy")!r}, np.stack(asks))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[1])
    resumed = np.load(tmp_path / "asks.npy")
    assert resumed.shape == np.stack(expected).shape
    assert np.array_equal(resumed, np.stack(expected)), "resumed asks differ from the uninterrupted run"


def test_state_dict_roundtrip_keeps_best_and_counters():
    opt = GenerativeOptimizer(3, seed=1)
    drive(opt, 2)
    clone = GenerativeOptimizer.from_state_dict(opt.state_dict())
    assert clone.n_evals == opt.n_evals and clone.n_failed == opt.n_failed
    np.testing.assert_array_equal(clone.best.x, opt.best.x)
    np.testing.assert_array_equal(clone.ask(), opt.ask())


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path, monkeypatch):
    opt = RandomSearch(2, seed=0)
    drive(opt, 1)
    target = tmp_path / "c.ckpt"
    opt.save(target)
    good = target.read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", explode)
    with pytest.raises(OSError, match="disk full"):
        opt.save(target)
    assert target.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["c.ckpt"]


def test_checkpoint_has_no_pickle_and_is_versioned(tmp_path: Path):
    opt = GenerativeOptimizer(3, seed=0)
    drive(opt, 2)
    opt.save(tmp_path / "c.ckpt")
    with np.load(tmp_path / "c.ckpt", allow_pickle=False) as npz:
        meta = json.loads(npz["__meta__"].tobytes())
        assert all(npz[k].dtype != object for k in npz.files)
    assert meta["format"] == "evogm-opt-checkpoint" and meta["version"] == 2
    assert meta["state"]["optimizer"] == "evogm" and meta["state"]["state_version"] == 2  # the registry's name


def test_corrupt_checkpoint_is_refused(tmp_path: Path):
    path = tmp_path / "c.ckpt"
    GenerativeOptimizer(3, seed=0).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or not an evogm-opt checkpoint"):
        GenerativeOptimizer.load(path)
    path.write_bytes(b"hello")
    with pytest.raises(ValueError, match="corrupt or not an evogm-opt checkpoint"):
        GenerativeOptimizer.load(path)


def test_foreign_npz_and_future_version_are_refused(tmp_path: Path):
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.zeros(3))
    with pytest.raises(ValueError, match="not an evogm-opt checkpoint"):
        Optimizer.load(foreign)
    future = tmp_path / "future.ckpt"
    save_state(future, {"optimizer": "RandomSearch"})
    with zipfile.ZipFile(future) as zf:
        meta = json.loads(np.load(zf.open("__meta__.npy")).tobytes())
    meta["version"] = 99
    with future.open("wb") as fh:
        np.savez(fh, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    with pytest.raises(ValueError, match="format version 99"):
        load_state(future)


def test_checkpoint_of_another_optimizer_is_refused(tmp_path: Path):
    path = tmp_path / "cma.ckpt"
    opt = CMAES(3, seed=0)
    drive(opt, 1)
    opt.save(path)
    with pytest.raises(TypeError, match=r"written by 'cmaes', not 'evogm': load it with CMAES\.load\(path\)"):
        GenerativeOptimizer.load(path)
    assert isinstance(Optimizer.load(path), CMAES)


def test_mismatched_state_is_refused():
    state = GenerativeOptimizer(3, seed=0).state_dict()
    del state["algorithm"]["hist_y"]
    with pytest.raises(ValueError, match="incomplete or malformed"):
        GenerativeOptimizer.from_state_dict(state)
    with pytest.raises(ValueError, match="not an evogm-opt optimizer state"):
        GenerativeOptimizer.from_state_dict({"weights": [1, 2]})
    opt = GenerativeOptimizer(3, seed=0, preset="paper", popsize=4)
    drive(opt, 2)
    state = opt.state_dict()
    state["algorithm"]["generators"]["weights"] = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match="architecture"):
        GenerativeOptimizer.from_state_dict(state)


def test_basis_hook_is_reattached_at_load(tmp_path: Path):
    seen = []
    opt = GenerativeOptimizer(2, seed=0, preset="paper", popsize=4)
    drive(opt, 2)
    opt.save(tmp_path / "c.ckpt")
    resumed = GenerativeOptimizer.load(tmp_path / "c.ckpt", on_basis_shift=seen.append)
    drive(resumed, 4)
    assert len(seen) == 1 and np.asarray(seen[0]).shape == (2, 2) and seen[0].version == 1
    assert sphere(np.zeros(2)) > 0  # keeps the import honest
