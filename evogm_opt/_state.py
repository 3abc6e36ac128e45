"""Plain-data checkpoints: nested dicts of JSON scalars and numpy arrays in one atomic ``.npz`` file.

Why not pickle: a checkpoint is something users copy between machines and library versions; loading one must
never execute code, and a corrupt or foreign file must fail with a message rather than a traceback from zipfile.

Format version 2 adds what a file proves about itself: a SHA-256 over the state and every array (so an edited or
bit-flipped file is refused rather than resumed), and an optional ``owner`` (an opaque string such as a run's
fingerprint) that a loader can demand, so a checkpoint copied in from another run is refused. Version 1 files (no
checksum, no owner) still load.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evogm_opt.atomic import atomic_path

FORMAT_NAME = "evogm-opt-checkpoint"
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)  # 1: before checksums and owners
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


def _canonical(owner: str | None, state_json: Any) -> str:
    """The owner and the state's JSON as the checksum covers them: ``{"owner":…,"state":…}``, keys sorted."""
    return json.dumps({"owner": owner, "state": state_json}, sort_keys=True, allow_nan=True, separators=(",", ":"))


def _checksum(owner: str | None, state_json: Any, arrays: dict[str, np.ndarray], *, header: str | None = None) -> str:
    """SHA-256 over the owner, the state's JSON (canonical: sorted keys) and each array's name, dtype, shape and
    bytes, so that any edit or flipped bit in what the loader will use changes it. ``header``: the canonical JSON
    already made (:func:`_canonical`). The bytes are hashed in place; only a non-contiguous array is copied."""
    digest = hashlib.sha256()
    digest.update((_canonical(owner, state_json) if header is None else header).encode("utf-8"))
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])  # ndim >= 1: a 0-d array is hashed with shape (1,), as always
        digest.update(f"\n{name}|{array.dtype.str}|{array.shape}\n".encode())
        if array.dtype.itemsize:  # (a zero-width dtype has no bytes, and no uint8 view)
            digest.update(array.reshape(-1).view(np.uint8))  # the same bytes as tobytes(), without the copy
    return digest.hexdigest()


def save_state(path: str | os.PathLike[str], state: dict[str, Any], *, owner: str | None = None) -> Path:
    """Write ``state`` to ``path`` atomically: a crash leaves either the old file or the new one, never half.
    The file gets the mode any new file gets (the umask is honoured: ``0644`` under ``umask 022``).

    ``owner`` (an opaque string, e.g. a run fingerprint) is stored beside the state, under the checksum, for
    :func:`load_state` to check when asked.
    """
    if owner is not None and not isinstance(owner, str):
        raise TypeError(f"a checkpoint's owner must be a string or None, got {type(owner).__name__}")
    target = Path(path)
    arrays: dict[str, np.ndarray] = {}
    state_json = _split_arrays(state, arrays, "state")
    # The state is serialised once: its canonical JSON is both what the checksum covers and the tail of the stored
    # metadata object, which reads back as {"format", "version", "sha256", "owner", "state"} (state keys sorted).
    header = _canonical(owner, state_json)
    digest = _checksum(owner, state_json, arrays, header=header)
    head = json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION, "sha256": digest}, separators=(",", ":"))
    payload = np.frombuffer(f"{head[:-1]},{header[1:]}".encode(), dtype=np.uint8)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **{_META_KEY: payload}, **arrays)
    return target


_ZIP_MAGIC = b"PK\x03\x04"  # every .npz starts so (np.savez writes a zip archive)
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint file holds once read and verified: the state, its owner (None: written without one, or a
    version 1 file) and the file format version."""

    state: dict[str, Any]
    owner: str | None
    version: int


def _read(source: Path) -> tuple[Any, dict[str, np.ndarray]]:
    """The parsed metadata and the arrays of a checkpoint file; every kind of damage is one ``ValueError`` line."""
    if not source.is_file():
        raise FileNotFoundError(f"no checkpoint at {source}")
    raw = source.read_bytes()
    prefix = f"{source} is corrupt or not an evogm-opt checkpoint"
    if not raw.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
        what = "the file is empty" if not raw else f"not a zip archive as .npz checkpoints are (it starts {raw[:8]!r})"
        raise ValueError(f"{prefix}: {what}")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            files = list(npz.files)
            meta_bytes = npz[_META_KEY].tobytes() if _META_KEY in files else None
            arrays = {key: _entry(npz, key) for key in files if key != _META_KEY}
        meta = None if meta_bytes is None else json.loads(meta_bytes.decode("utf-8"))
    except Exception as exc:  # whatever zipfile, zlib, numpy or json raise here, the file is damaged
        # Truncation (BadZipFile, EOFError), a header flag for encryption (RuntimeError) or an unknown compression
        # method or zip version (NotImplementedError), damaged entries (ValueError), bad UTF-8 or JSON: one line,
        # and no chained traceback — numpy's text may advise allow_pickle=True, which would let a file run code.
        reason = " ".join((str(exc) or type(exc).__name__).split())
        if "pickle" in reason.lower():
            reason = "an entry is not a numeric array"
        elif isinstance(exc, (zipfile.BadZipFile, EOFError)):
            reason = f"truncated or damaged zip archive ({reason})"
        raise ValueError(f"{prefix}: {reason}") from None
    if meta is None:
        raise ValueError(f"{source} is not an evogm-opt checkpoint (no metadata entry)")
    if not isinstance(meta, dict):
        raise ValueError(f"{prefix}: its metadata is a JSON {type(meta).__name__}, not an object")
    if meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{source} is not an evogm-opt checkpoint (format tag {meta.get('format')!r})")
    return meta, arrays


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and verify a checkpoint written by :func:`save_state`; raise ``ValueError`` (one line) for anything
    else: a foreign or damaged file, an unknown version, a checksum that does not match."""
    source = Path(path)
    meta, arrays = _read(source)
    version = meta.get("version")
    if version not in _READABLE_VERSIONS or isinstance(version, bool):
        readable = " and ".join(str(v) for v in _READABLE_VERSIONS)
        raise ValueError(
            f"{source} has checkpoint format version {version!r}; this evogm-opt reads versions {readable}"
        )
    if "state" not in meta:
        raise ValueError(f"{source} is corrupt or not an evogm-opt checkpoint: no 'state' in its metadata")
    owner = meta.get("owner")
    if version >= 2:
        stored = meta.get("sha256")
        if not isinstance(stored, str) or (owner is not None and not isinstance(owner, str)):
            raise ValueError(f"{source} is corrupt or was edited: its checksum or owner entry is missing or malformed")
        if stored != _checksum(owner, meta["state"], arrays):
            raise ValueError(f"{source} is corrupt or was edited: checksum mismatch")
    else:  # version 1 had neither: a file that says 1 but has them is a newer one edited to skip the checksum
        if "sha256" in meta or "owner" in meta:
            what = "a checksum" if "sha256" in meta else "an owner"
            raise ValueError(
                f"{source} is corrupt or was edited: it claims format version 1 but carries {what}, "
                "which version 1 never wrote"
            )
    try:
        state = _join_arrays(meta["state"], arrays)
    except ValueError as exc:
        raise ValueError(f"{source} is corrupt or not an evogm-opt checkpoint: {exc}") from None
    return Checkpoint(state=_upgrade(state), owner=owner, version=int(version))


def check_owner(path: str | os.PathLike[str], theirs: str | None, owner: str | None) -> None:
    """Refuse a checkpoint whose owner is not ``owner`` (no check when ``owner`` is None)."""
    if owner is None or theirs == owner:
        return
    if theirs is None:
        raise ValueError(f"{path} was written without an owner, so it cannot prove it belongs to {owner!r}")
    raise ValueError(f"{path} belongs to {theirs!r}, not {owner!r}")


def checkpoint_owner(path: str | os.PathLike[str]) -> str | None:
    """The owner a checkpoint was saved with (None: without one), after reading and verifying the file."""
    return read_checkpoint(path).owner


def load_state(path: str | os.PathLike[str], *, owner: str | None = None) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_state`; raise ``ValueError`` for anything else, and, when
    ``owner`` is given, for a file whose owner differs."""
    checkpoint = read_checkpoint(path)
    check_owner(path, checkpoint.owner, owner)
    return checkpoint.state


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


# ---------------------------------------------------------------------------------------------------------------
# Load-time invariants: a state no run could have produced is refused in one line naming its field, before an
# optimizer is built on it (a NaN step size or a negative counter otherwise surfaces much later as NaN asks outside
# the bounds, or an ask that runs for minutes).


class InvalidState(ValueError):
    """A state entry that no run of the optimizer could have written; ``field`` is its dotted path in the state."""

    def __init__(self, field: str, what: str) -> None:
        super().__init__(f"state field {field} {what}")
        self.field = field
        self.what = what

    def within(self, prefix: str) -> InvalidState:
        """The same problem, its field named from an enclosing state (``algorithm``, ``algorithm.handoff``);
        a field of the shared ``core.`` an algorithm's check cross-examines keeps its name."""
        return self if self.field.startswith("core.") else InvalidState(f"{prefix}.{self.field}", self.what)

    def at(self, path: str | os.PathLike[str]) -> ValueError:
        """The one-line error for a checkpoint file: the file and the field."""
        return ValueError(f"{path}: checkpoint field {self.field} {self.what}")


def require(condition: Any, field: str, what: str) -> None:
    """Raise :class:`InvalidState` for ``field`` unless ``condition`` holds (``what`` completes "field …")."""
    if not condition:
        raise InvalidState(field, what)


def count(value: Any, field: str, low: int = 0) -> int:
    """An integer counter ``>= low``: an int in the state (a float, bool or string is refused, not rounded)."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value >= low
    require(ok, field, f"is {value!r}; it must be an integer >= {low}")
    return int(value)


def number(value: Any, field: str, *, finite: bool = True, nan: bool = False) -> float:
    """A float from the state: finite unless ``finite=False`` (then ±inf allowed), never NaN unless ``nan``."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    require(ok, field, f"is {value!r}; it must be a number")
    result = float(value)
    if not (nan and np.isnan(result)):
        require(np.isfinite(result) or (not finite and not np.isnan(result)), field, f"is {result}; it must be finite")
    return result


def array(value: Any, field: str, shape: tuple[int | None, ...], *, finite: bool = True, dtype: Any = float) -> Any:
    """An array of exactly ``shape`` (None: any length there) — never reshaped, which would silently turn
    3-column rows into 4-column ones — holding only finite values unless ``finite=False``."""
    try:
        result = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise InvalidState(field, "is not a numeric array") from None
    expected = "(" + ", ".join("n" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
    fits = result.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, result.shape))
    require(fits, field, f"has shape {result.shape}; expected {expected}")
    if finite and result.dtype.kind == "f":
        require(np.isfinite(result).all(), field, "holds NaN or infinite values")
    return result
