"""Plain-data checkpoints: nested dicts of JSON scalars and numpy arrays in one atomic ``.npz`` file.

Why not pickle: a checkpoint is something users copy between machines and library versions; loading one must
never execute code, and a corrupt or foreign file must fail with a message rather than a traceback from zipfile.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from evogm_opt.atomic import atomic_path

FORMAT_NAME = "evogm-opt-checkpoint"
FORMAT_VERSION = 1
_META_KEY = "__meta__"
_ARRAY_TAG = "__ndarray__"


def _split_arrays(obj: Any, arrays: dict[str, np.ndarray], path: str) -> Any:
    """Replace every array in ``obj`` by a reference so the rest can be written as JSON."""
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError(f"state entry {path!r} is an object array; only numeric arrays can be saved")
        key = f"a{len(arrays)}"
        arrays[key] = obj
        return {_ARRAY_TAG: key}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"state keys must be strings, got {k!r} under {path!r}")
            out[k] = _split_arrays(v, arrays, f"{path}.{k}")
        return out
    if isinstance(obj, (list, tuple)):
        return [_split_arrays(v, arrays, f"{path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"state entry {path!r} has unsupported type {type(obj).__name__}")


def _join_arrays(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_ARRAY_TAG}:
            key = obj[_ARRAY_TAG]
            if key not in arrays:
                raise ValueError(f"corrupt checkpoint: array {key!r} is referenced but missing")
            return arrays[key]
        return {k: _join_arrays(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_arrays(v, arrays) for v in obj]
    return obj


def save_state(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically: a crash leaves either the old file or the new one, never half.
    The file gets the mode any new file gets (the umask is honoured: ``0644`` under ``umask 022``)."""
    target = Path(path)
    arrays: dict[str, np.ndarray] = {}
    meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "state": _split_arrays(state, arrays, "state")}
    payload = np.frombuffer(json.dumps(meta, allow_nan=True).encode("utf-8"), dtype=np.uint8)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **{_META_KEY: payload}, **arrays)
    return target


_ZIP_MAGIC = b"PK\x03\x04"  # every .npz starts so (np.savez writes a zip archive)
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_state`; raise ``ValueError`` for anything else."""
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"no checkpoint at {source}")
    raw = source.read_bytes()
    if not raw.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
        what = "the file is empty" if not raw else f"not a zip archive as .npz checkpoints are (it starts {raw[:8]!r})"
        raise ValueError(f"{source} is corrupt or not an evogm-opt checkpoint: {what}")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            files = list(npz.files)
            meta_bytes = npz[_META_KEY].tobytes() if _META_KEY in files else None
            arrays = {}
            for key in files:
                if key != _META_KEY:
                    arrays[key] = _entry(npz, key)
        meta = None if meta_bytes is None else json.loads(meta_bytes.decode("utf-8"))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, UnicodeDecodeError, AttributeError) as exc:
        # BadZipFile/EOFError for truncated files, ValueError for damaged entries or metadata. numpy's own text
        # may advise allow_pickle=True, which would let a file run code on load: never pass that on, not even as
        # the chained cause a traceback prints.
        reason = str(exc) or type(exc).__name__
        prefix = f"{source} is corrupt or not an evogm-opt checkpoint"
        if "pickle" in reason.lower():
            raise ValueError(f"{prefix}: an entry is not a numeric array") from None
        if isinstance(exc, (zipfile.BadZipFile, EOFError)):
            reason = f"truncated or damaged zip archive ({reason})"
        raise ValueError(f"{prefix}: {reason}") from exc
    if meta is None:
        raise ValueError(f"{source} is not an evogm-opt checkpoint (no metadata entry)")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{source} is not an evogm-opt checkpoint (format tag {meta.get('format')!r})")
    version = meta.get("version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{source} has checkpoint format version {version!r}; this evogm-opt reads version {FORMAT_VERSION}"
        )
    return _upgrade(_join_arrays(meta["state"], arrays))


def _upgrade(obj: Any) -> Any:
    """Read older layouts of the same format version as today's.

    Optimizer configs (wherever they sit: a Ray searcher nests one) stored ``bounds`` as one (lo, hi) pair per
    coordinate until evogm-opt wrote ``{"lower": [...], "upper": [...]}``; at dim 2 a pair list is also a valid
    (lower, upper) and would be refused as ambiguous, so it is converted here, where its meaning is known.
    """
    if isinstance(obj, dict):
        config = obj.get("config")
        if "optimizer" in obj and isinstance(config, dict) and _is_pair_list(config.get("bounds")):
            pairs = config["bounds"]
            config["bounds"] = {"lower": [p[0] for p in pairs], "upper": [p[1] for p in pairs]}
        for value in obj.values():
            _upgrade(value)
    elif isinstance(obj, list):
        for value in obj:
            _upgrade(value)
    return obj


def _is_pair_list(bounds: Any) -> bool:
    return isinstance(bounds, list) and bool(bounds) and all(isinstance(p, list) and len(p) == 2 for p in bounds)


def _entry(npz: Any, key: str) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as exc:
        if "pickle" not in str(exc).lower():
            raise
        raise ValueError(
            f"entry {key!r} holds Python objects, which evogm-opt checkpoints never contain; it was not loaded"
        ) from None


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The bit generator state as plain data (PCG64 state is a pair of 128-bit ints: JSON keeps them exact)."""
    return dict(rng.bit_generator.state)


def rng_from_state(state: dict[str, Any]) -> np.random.Generator:
    name = state.get("bit_generator")
    bit_generator_cls = getattr(np.random, str(name), None)
    if bit_generator_cls is None or not isinstance(bit_generator_cls, type):
        raise ValueError(f"checkpoint names an unknown bit generator {name!r}")
    bit_generator = bit_generator_cls()
    bit_generator.state = state
    return np.random.Generator(bit_generator)
