"""Every kind of damage to a checkpoint file is one line: corrupt, edited, or not a checkpoint — never a traceback
from zipfile or json, never a hint at allow_pickle. Version 1 files (no checksum) still load."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from evogm_opt import CMAES, GenerativeOptimizer, Optimizer, RandomSearch, _state
from tests.test_atomic_writes import _messages


def _drive(opt: Optimizer, generations: int = 2) -> Optimizer:
    for _ in range(generations):
        x = opt.ask()
        opt.tell(x, [float(np.sum((r - 0.3) ** 2)) for r in x])
    return opt


def _read_raw(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(npz["__meta__"].tobytes())
        arrays = {k: npz[k] for k in npz.files if k != "__meta__"}
    return meta, arrays


def _write_raw(path: Path, meta, arrays: dict[str, np.ndarray]) -> None:
    """A well-formed zip of whatever metadata and arrays (the way an editor would rewrite a checkpoint)."""
    text = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    with path.open("wb") as fh:
        np.savez(fh, __meta__=np.frombuffer(text, dtype=np.uint8), **arrays)


def _refused(path: Path, match: str) -> str:
    with pytest.raises(ValueError, match=match) as info:
        Optimizer.load(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "pickle" not in _messages(info.value).lower()
    return message


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "run.ckpt"
    _drive(GenerativeOptimizer(3, seed=0)).save(path)
    return path


def test_an_edited_state_fails_the_checksum(saved: Path):
    meta, arrays = _read_raw(saved)
    assert meta["version"] == 2 and len(meta["sha256"]) == 64
    meta["state"]["core"]["n_evals"] += 1
    _write_raw(saved, meta, arrays)
    assert _refused(saved, "checksum mismatch") == f"{saved} is corrupt or was edited: checksum mismatch"


def test_an_edited_array_fails_the_checksum(saved: Path):
    meta, arrays = _read_raw(saved)
    key = next(k for k, v in arrays.items() if v.dtype == float and v.size)
    arrays[key] = arrays[key].copy()
    arrays[key].flat[0] = np.nextafter(arrays[key].flat[0], np.inf)  # one bit
    _write_raw(saved, meta, arrays)
    _refused(saved, "is corrupt or was edited: checksum mismatch")


def test_a_removed_checksum_is_refused(saved: Path):
    meta, arrays = _read_raw(saved)
    del meta["sha256"]
    _write_raw(saved, meta, arrays)
    _refused(saved, "is corrupt or was edited")


def test_a_flipped_bit_in_the_file_is_refused(saved: Path):
    data = bytearray(saved.read_bytes())
    data[len(data) // 3] ^= 0x10
    saved.write_bytes(bytes(data))
    _refused(saved, "is corrupt")


def _write_version_1(path: Path, opt: Optimizer) -> None:
    """The layout evogm-opt wrote before checksums: format version 1, the state, no owner and no sha256."""
    arrays: dict[str, np.ndarray] = {}
    state = _state._split_arrays(opt.state_dict(), arrays, "state")
    _write_raw(path, {"format": "evogm-opt-checkpoint", "version": 1, "state": state}, arrays)


@pytest.mark.parametrize("make", [lambda: GenerativeOptimizer(3, seed=2), lambda: CMAES(3, seed=2)])
def test_a_version_1_checkpoint_still_loads_and_resumes_exactly(tmp_path: Path, make):
    opt = _drive(make())
    path = tmp_path / "old.ckpt"
    _write_version_1(path, opt)
    resumed = Optimizer.load(path)
    assert _state.checkpoint_owner(path) is None
    np.testing.assert_array_equal(resumed.ask(), opt.ask())


@pytest.mark.parametrize("drop", [(), ("sha256",)], ids=["checksum-kept", "checksum-dropped"])
def test_a_version_2_file_edited_to_say_version_1_is_refused(saved: Path, drop: tuple[str, ...]):
    """Saying version 1 would skip the checksum; a real version 1 file has neither a checksum nor an owner."""
    meta, arrays = _read_raw(saved)
    meta["version"] = 1
    meta["state"]["core"]["n_evals"] += 1  # the edit the downgrade would hide
    for key in drop:
        del meta[key]
    _write_raw(saved, meta, arrays)
    what = "an owner" if drop else "a checksum"
    message = _refused(saved, f"claims format version 1 but carries {what}")
    assert message.startswith(f"{saved} is corrupt or was edited: ")


@pytest.mark.parametrize("version", [0, 3, "2", True, None])
def test_an_unknown_version_says_which_versions_are_read(saved: Path, version):
    meta, arrays = _read_raw(saved)
    meta["version"] = version
    _write_raw(saved, meta, arrays)
    message = _refused(saved, "reads versions 1 and 2")
    assert message == f"{saved} has checkpoint format version {version!r}; this evogm-opt reads versions 1 and 2"


def _central_header_offsets(data: bytes) -> list[int]:
    return [i for i in range(len(data)) if data.startswith(b"PK\x01\x02", i)]


@pytest.mark.parametrize(
    "field, value",
    [
        (8, 0x0001),  # general purpose flags: encrypted → RuntimeError "... is encrypted, password required"
        (6, 0x00FF),  # version needed to extract 25.5 → NotImplementedError "zip file version 25.5"
        (10, 0x0063),  # compression method 99 → NotImplementedError (zipfile does not know it)
    ],
    ids=["encrypted", "version-needed", "compression-method"],
)
def test_zip_header_damage_is_one_line(saved: Path, field: int, value: int):
    data = bytearray(saved.read_bytes())
    for offset in _central_header_offsets(bytes(data)):
        struct.pack_into("<H", data, offset + field, value)
    saved.write_bytes(bytes(data))
    _refused(saved, "is corrupt or not an evogm-opt checkpoint")


@pytest.mark.parametrize(
    "meta",
    [b"[1, 2, 3]", b'"a string"', b"\xff\xfe\xfd not utf-8", b"{not json", b"42"],
    ids=["json-list", "json-string", "not-utf8", "not-json", "json-number"],
)
def test_metadata_that_is_not_an_object_is_one_line(tmp_path: Path, meta: bytes):
    path = tmp_path / "run.ckpt"
    _write_raw(path, meta, {})
    _refused(path, "is corrupt or not an evogm-opt checkpoint")


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_a_truncated_checkpoint_is_one_line(saved: Path, keep: float):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * keep)])
    _refused(saved, "is corrupt or not an evogm-opt checkpoint")


def test_an_array_the_state_references_but_lacks_is_refused(tmp_path: Path):
    path = tmp_path / "run.ckpt"
    _drive(RandomSearch(2, seed=0)).save(path)
    meta, arrays = _read_raw(path)
    arrays.pop(sorted(arrays)[0])
    meta["sha256"] = _state._checksum(meta["owner"], meta["state"], arrays)  # a consistent file, minus an entry
    _write_raw(path, meta, arrays)
    _refused(path, "is corrupt or not an evogm-opt checkpoint: .*referenced but missing")
