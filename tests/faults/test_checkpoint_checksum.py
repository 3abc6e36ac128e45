"""The checksum of a checkpoint is a fixed function of its state: a file saved by an earlier evogm-opt of the same
format version still verifies. Computing it copies no array, and saving serialises the state's JSON once."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np

from evogm_opt import _state

# The stored sha256 of _state_with_every_kind_of_entry() saved with owner "run-fp-abc" by evogm-opt as of commit
# 3a894dd (before the checksum stopped copying arrays and the state was serialised once): files written then must
# verify now, so the value may never change for format version 2.
SHA256_BEFORE = "ca95cc9a20b0b636d667a4ea3e3a4d43c06e9e3e188140ec65a7f5cbf62a67e7"


def _state_with_every_kind_of_entry() -> dict:
    a = np.arange(24, dtype=np.float64).reshape(4, 6)
    return {
        "n": 3,
        "name": "x",
        "flag": True,
        "none": None,
        "f": 0.5,
        "nan": float("nan"),
        "c": a,
        "f_order": np.asfortranarray(a),
        "view": a[:, ::2],
        "i32": np.arange(5, dtype=np.int32),
        "empty": np.zeros((0, 3)),
        "scalar": np.array(2.5),
        "u8": np.frombuffer(b"abc", dtype=np.uint8),
        "nested": {"list": [1, np.int64(2), np.float32(1.5), {"arr": np.ones(3, dtype=">f4")}]},
        "b": np.array([True, False]),
    }


def _stored_meta(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return json.loads(npz["__meta__"].tobytes())


def test_the_checksum_of_a_state_is_the_one_earlier_versions_stored(tmp_path: Path):
    path = tmp_path / "run.ckpt"
    _state.save_state(path, _state_with_every_kind_of_entry(), owner="run-fp-abc")
    assert _stored_meta(path)["sha256"] == SHA256_BEFORE
    checkpoint = _state.read_checkpoint(path)
    assert checkpoint.owner == "run-fp-abc" and checkpoint.version == 2
    np.testing.assert_array_equal(checkpoint.state["view"], np.arange(24.0).reshape(4, 6)[:, ::2])
    assert checkpoint.state["nested"]["list"][3]["arr"].dtype == np.dtype(">f4")


def test_a_file_in_the_earlier_layout_verifies(tmp_path: Path):
    """Earlier versions stored the metadata with insertion-ordered keys and spaces, the checksum last; the
    checksum covers the canonical form, so the layout of the stored JSON does not matter."""
    arrays: dict[str, np.ndarray] = {}
    state = _state._split_arrays(_state_with_every_kind_of_entry(), arrays, "state")
    meta = {"format": "evogm-opt-checkpoint", "version": 2, "owner": "run-fp-abc", "state": state}
    meta["sha256"] = SHA256_BEFORE
    path = tmp_path / "earlier.ckpt"
    with path.open("wb") as fh:
        np.savez(fh, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    assert _state.read_checkpoint(path).owner == "run-fp-abc"


def test_hashing_copies_no_array():
    big = np.arange(2_000_000, dtype=np.float64)  # 16 MB
    tracemalloc.start()
    try:
        _state._checksum("owner", {"x": {"__ndarray__": "a0"}}, {"a0": big})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < big.nbytes // 8, f"hashing allocated {peak} bytes for a {big.nbytes}-byte array"


def test_save_serialises_the_state_once(tmp_path: Path, monkeypatch):
    state = _state_with_every_kind_of_entry()
    calls = []
    real_dumps = json.dumps

    def counting_dumps(obj, *args, **kwargs):
        text = real_dumps(obj, *args, **kwargs)
        calls.append(text)
        return text

    monkeypatch.setattr(_state.json, "dumps", counting_dumps)
    _state.save_state(tmp_path / "run.ckpt", state, owner="run-fp-abc")
    assert sum('"__ndarray__"' in text for text in calls) == 1, calls
    monkeypatch.undo()
    assert _stored_meta(tmp_path / "run.ckpt")["sha256"] == SHA256_BEFORE
