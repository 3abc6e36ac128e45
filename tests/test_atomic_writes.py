"""Atomic writes honour the umask (a teammate can read a checkpoint under umask 022), and a damaged checkpoint is
refused without ever suggesting pickle."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from evogm_opt import GenerativeOptimizer, RandomSearch
from evogm_opt.atomic import atomic_path, atomic_write, default_file_mode

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")


@pytest.fixture
def umask():
    """Set the process umask for one test and put the old one back."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_checkpoints_get_the_mode_the_umask_gives_new_files(tmp_path: Path, umask, mask: int, expected: int):
    umask(mask)
    opt = RandomSearch(2, seed=0)
    opt.save(tmp_path / "run.ckpt")
    assert mode(tmp_path / "run.ckpt") == expected


def test_rewriting_an_owner_only_checkpoint_gives_it_the_umask_mode(tmp_path: Path, umask):
    umask(0o022)
    path = tmp_path / "checkpoint.evogm"
    opt = GenerativeOptimizer(2, seed=0)
    opt.save(path)
    os.chmod(path, 0o600)  # what earlier versions wrote
    opt.save(path)
    assert mode(path) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.evogm"]  # no temporary file left behind


def test_atomic_write_takes_text_and_bytes(tmp_path: Path, umask):
    umask(0o027)
    assert atomic_write(tmp_path / "a.txt", "λ = 0.5\n").read_text(encoding="utf-8") == "λ = 0.5\n"
    atomic_write(tmp_path / "a.txt", b"\x00\x01")
    assert (tmp_path / "a.txt").read_bytes() == b"\x00\x01"
    assert mode(tmp_path / "a.txt") == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_path_fixes_the_mode_of_writers_that_ignore_the_umask(tmp_path: Path, umask):
    umask(0o022)
    target = tmp_path / "model.safetensors"

    def owner_only_writer(path: Path) -> None:  # like safetensors.save_file: its own temp file, 0600, renamed
        side = path.with_name("side")
        side.write_bytes(b"weights")
        os.chmod(side, 0o600)
        os.replace(side, path)

    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".safetensors" and tmp.name.startswith(".")
        owner_only_writer(tmp)
    assert target.read_bytes() == b"weights" and mode(target) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path):
    target = atomic_write(tmp_path / "keep.bin", b"old")
    with pytest.raises(RuntimeError, match="writer died"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer died")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.bin"]


def test_default_file_mode_reads_the_umask_without_changing_it(tmp_path: Path, umask):
    umask(0o027)
    assert default_file_mode(tmp_path) == 0o640
    assert os.umask(0o027) == 0o027  # still what the test set
    assert list(tmp_path.iterdir()) == []


def _messages(exc: BaseException | None) -> str:
    """The message of ``exc`` and of every cause or context a traceback of it would print."""
    lines = []
    while exc is not None:
        lines.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return "\n".join(lines)


@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated", "object entry"])
def test_a_damaged_checkpoint_is_refused_without_suggesting_pickle(tmp_path: Path, damage: str):
    path = tmp_path / "run.ckpt"
    RandomSearch(2, seed=0).save(path)
    good = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"garbage" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    else:
        with path.open("wb") as fh:
            np.savez(fh, __meta__=np.zeros(1, np.uint8), a0=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="corrupt or not an evogm-opt checkpoint") as info:
        RandomSearch.load(path)
    assert "pickle" not in _messages(info.value).lower()
