"""A cheap content identity of a merge run's inputs, so that a resume (or ``--rebuild``) never mixes weights.

The run's fingerprint covers the config, i.e. paths; an expert replaced in place between a kill and the resume
(same path, other weights) would otherwise score the same λ differently from one evaluation to the next. What
is read, per input:

- a folder (the base, each expert, a tokenizer folder): the top-level files that define the model, by name and
  size (:func:`defines_model`: weights, their index, the model, generation and adapter configs, the tokenizer);
  a trainer's leftovers (``trainer_state.json``, ``training_args.bin``, ``optimizer.pt``, ``rng_state.pth``,
  ``scheduler.pt``), READMEs and images are left out: editing them changes no weight. Files up to
  :data:`SMALL` bytes are hashed whole — configs, tokenizers and LoRA adapters (a LoRA expert's weights are
  small, so its identity is exact). A larger ``.safetensors`` file is identified by its JSON header (every
  tensor's name, dtype, shape and offsets) and a sample of *every* tensor's bytes (the first, middle and last
  :data:`SAMPLE` bytes): a fine-tune changes essentially every element of a tensor it trains, so a retrained
  expert of the same shape differs in its samples even where only one layer was trained, while reading a
  7B-parameter model costs a few MB instead of 15 GB. Other large files: size and their first and last MB.
  The modification time is deliberately *not* part of it: a file restored from a backup or copied back
  (``cp`` without ``-p``) is the same input, and the resume should accept it;
- a hub id (the base named as ``org/model``, not a folder): the id itself, nothing to read;
- a task file (JSONL, small): hashed whole; an lm-evaluation-harness task name: the name.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SMALL = 64 * 1024 * 1024  # bytes: hashed whole below this (configs, tokenizers, LoRA adapters)
SAMPLE = 4096  # bytes sampled at the start, middle and end of each tensor of a large safetensors file
_EDGE = 1024 * 1024  # bytes hashed at each end of a large file that is not safetensors
# the files of a model folder that define the model (anything else, e.g. a trainer's state, is not an input)
_MODEL_FILES = frozenset(
    {
        "config.json",
        "generation_config.json",
        "adapter_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.json",
        "vocab.txt",
        "merges.txt",
        "spiece.model",
        "sentencepiece.bpe.model",
        "chat_template.jinja",
        "chat_template.json",
    }
)
_WEIGHT_BIN = re.compile(r"(pytorch_|adapter_)?model(-\d+-of-\d+)?\.bin")  # not training_args.bin
GONE = "no longer there"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:32]


def _safetensors_identity(path: Path, size: int) -> dict[str, Any]:
    """Header hash and per-tensor samples of a large safetensors file (its layout: 8-byte header length, JSON
    header, then the tensors' bytes at the header's offsets)."""
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return {"size": size, "sha256": _hash_file(path)}
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, 100 * 1024 * 1024):
            return {"size": size, "edges": _edges(path, size)}  # not a safetensors file after all
        header = fh.read(n)
        try:
            tensors = json.loads(header)
        except ValueError:
            return {"size": size, "edges": _edges(path, size)}
        digest = hashlib.sha256()
        start = 8 + n
        for name in sorted(k for k in tensors if k != "__metadata__"):
            offsets = tensors[name].get("data_offsets") if isinstance(tensors[name], dict) else None
            if not (isinstance(offsets, list) and len(offsets) == 2):
                continue
            lo, hi = (start + int(o) for o in offsets)
            for at in sorted({lo, max(lo, (lo + hi) // 2 - SAMPLE // 2), max(lo, hi - SAMPLE)}):
                fh.seek(at)
                digest.update(fh.read(min(SAMPLE, hi - at)))
    return {"size": size, "header": _sha(header), "samples": digest.hexdigest()[:32]}


def _edges(path: Path, size: int) -> str:
    with open(path, "rb") as fh:
        first = fh.read(_EDGE)
        fh.seek(max(0, size - _EDGE))
        return _sha(first + fh.read(_EDGE))


def file_identity(path: Path) -> dict[str, Any]:
    """One file: its size and a hash of all of it (small) or of its header and samples (large)."""
    size = path.stat().st_size
    if size <= SMALL:
        return {"size": size, "sha256": _hash_file(path)}
    if path.suffix == ".safetensors":
        return _safetensors_identity(path, size)
    return {"size": size, "edges": _edges(path, size)}


def defines_model(name: str) -> bool:
    """Whether a model folder's file of this name is part of the model: weights (``*.safetensors``, the
    ``pytorch_model*.bin``/``adapter_model.bin`` shards), their index, ``config.json``,
    ``generation_config.json``, ``adapter_config.json`` and the tokenizer's files."""
    if name.startswith("."):
        return False
    return (
        name in _MODEL_FILES
        or name.startswith("tokenizer")  # tokenizer.json, tokenizer_config.json, tokenizer.model
        or name.endswith((".safetensors", ".index.json", ".tiktoken"))
        or _WEIGHT_BIN.fullmatch(name) is not None
    )


def input_identity(source: str) -> dict[str, Any]:
    """The identity of a base, expert or tokenizer: a folder's model files, a file's hash, or a hub id."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if defines_model(p.name) and p.is_file())
        return {"files": {p.name: file_identity(p) for p in files}}
    if path.is_file():
        return {"file": file_identity(path)}
    return {"hub": source}


def input_change(source: str, identity: dict[str, Any]) -> str | None:
    """Why the input at ``source`` is no longer the one ``identity`` records, in a few words — :data:`GONE` where
    nothing is there any more; ``None``: present and unchanged (a hub id: nothing to check)."""
    if "hub" in identity:
        return None
    if not Path(source).exists():
        return GONE
    return what_changed(identity, input_identity(source))


def task_splits(cfg: Any) -> Iterator[tuple[Any, str, str]]:
    """Every task split of a config as ``(spec, "val" or "test", source)``, seen tasks first."""
    for spec in (*cfg.seen, *cfg.unseen):
        for split in ("val", "test"):
            source = getattr(spec, split)
            if source is not None:
                yield spec, split, source


def run_inputs(cfg: Any) -> dict[str, Any]:
    """What ``run.json`` records of a config's inputs (``cfg``: a ``MergeRunConfig``)."""
    tasks = {
        f"{spec.name}/{split}": {"lm_eval": source} if spec.lm_eval is not None else input_identity(source)
        for spec, split, source in task_splits(cfg)
    }
    inputs: dict[str, Any] = {
        "base": input_identity(cfg.base),
        "experts": {e.name: input_identity(e.path) for e in cfg.experts},
        "tasks": tasks,
    }
    if cfg.tokenizer is not None:
        inputs["tokenizer"] = input_identity(cfg.tokenizer)
    return inputs


def what_changed(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """Why two identities of one input differ, in a few words (``None``: the same)."""
    if old == new:
        return None
    if "hub" in new and "hub" not in old:
        return GONE
    if "files" in old and "files" in new:  # recorded before defines_model: its other files are not compared
        a, b = ({k: v for k, v in d["files"].items() if defines_model(k)} for d in (old, new))
        if a == b:
            return None
        gone, added = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        if gone:
            return f"{', '.join(gone)} missing"
        if added:
            return f"{', '.join(added)} added"
        for name in sorted(a):
            if a[name] != b[name]:
                return f"{name}: {_file_change(a[name], b[name])}"
    if "file" in old and "file" in new:
        return _file_change(old["file"], new["file"])
    kind = {"files": "a folder", "file": "a file", "hub": "a hub id"}
    return f"was {kind.get(next(iter(old), ''), 'other')}, now {kind.get(next(iter(new), ''), 'other')}"


def _file_change(a: dict[str, Any], b: dict[str, Any]) -> str:
    if a.get("size") != b.get("size"):
        return f"size {a.get('size')} -> {b.get('size')} bytes"
    if a.get("header") is not None and a.get("header") != b.get("header"):
        return "tensor layout (safetensors header)"
    return "content"


def compare_inputs(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The first input of ``new`` that differs from ``old``, as ``"expert 'x' changed (a.safetensors: content)"``."""
    labels: list[tuple[str, Any, Any]] = [("the base", old.get("base"), new.get("base"))]
    if "tokenizer" in old or "tokenizer" in new:
        labels.append(("the tokenizer", old.get("tokenizer"), new.get("tokenizer")))
    for group, what in (("experts", "expert"), ("tasks", "task file")):
        a, b = old.get(group, {}), new.get(group, {})
        for name in sorted(set(a) | set(b)):
            labels.append((f"{what} '{name}'", a.get(name), b.get(name)))
    for label, a, b in labels:
        if a is None or b is None:
            if a != b:
                return f"{label} ({'not recorded' if a is None else 'no longer in the config'})"
            continue
        why = what_changed(a, b)
        if why is not None:
            return f"{label} changed ({why})"
    return None
