"""Experts as exact task vectors: LoRA adapter folders (peft format) and full fine-tuned checkpoints.

A LoRA task vector is ΔW = s·B·A in fp32 from the factors, by peft's own rules: s = α/r, or α/√r with
``use_rslora``; per-module r and α from ``rank_pattern``/``alpha_pattern``, whose keys are regular expressions
matched against the end of the module name (peft's ``get_pattern_key``, called when peft is installed). It is kept
*factored*: merges and the in-place rebuild use the factors, and ``delta()`` materialises ΔW only when a nonlinear
merge (TIES, DARE) needs the dense tensor. Summing A's and B's separately is never done (it creates cross terms
between experts).

Everything that would silently produce a wrong merge is refused with a message: another base (shapes), DoRA,
``modules_to_save`` (full copies of modules, not deltas), ``lora_bias``, resized embeddings, missing or corrupt
safetensors. An adapter whose ``base_model_name_or_path`` names another model than the base (but whose shapes fit)
gives a :class:`BaseModelMismatchWarning`, or is refused with ``on_other_base="error"``.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from llm_merge.model.names import ON_OTHER_BASE


class ExpertError(ValueError):
    """An expert that cannot be merged correctly with this base."""


class BaseModelMismatchWarning(UserWarning):
    """An adapter names another base model than the one being merged (its shapes fit, so nothing else stops it)."""


@dataclass(frozen=True)
class LoraFactors:
    a: torch.Tensor  # (r, in_features), fp32
    b: torch.Tensor  # (out_features, r), fp32
    scaling: float
    fan_in_fan_out: bool = False  # GPT-2 Conv1D layout: the base weight is (in, out)

    def delta(self) -> torch.Tensor:
        """ΔW = s·B·A in the base weight's layout (fp32)."""
        d = self.scaling * (self.b @ self.a)
        return d.T if self.fan_in_fan_out else d


@dataclass
class LoraExpert:
    name: str
    factors: dict[str, LoraFactors]  # base parameter name ("model.layers.0.self_attn.q_proj.weight") -> factors

    def delta(self, param: str) -> torch.Tensor | None:
        f = self.factors.get(param)
        return None if f is None else f.delta()

    @property
    def params(self) -> set[str]:
        return set(self.factors)


@dataclass
class DenseExpert:
    name: str
    deltas: dict[str, torch.Tensor]  # parameter name -> θ_i − θ_pre (fp32), only where they differ

    def delta(self, param: str) -> torch.Tensor | None:
        return self.deltas.get(param)

    @property
    def params(self) -> set[str]:
        return set(self.deltas)


Expert = LoraExpert | DenseExpert


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise ExpertError(f"{path}: missing (expected a safetensors file)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise ExpertError(f"{path}: corrupt or unreadable safetensors ({exc})") from exc


def _peft_pattern_key(keys: Iterable[str], module: str) -> str:
    """peft 0.21's ``get_pattern_key``, used only where peft is not installed: the first key that, as a regular
    expression, matches the end of the module name at a ``.`` boundary; the module name itself otherwise."""
    for key in keys:
        if re.match(rf"(.*\.)?({key})$", module):
            return key
    return module


def _pattern_value(pattern: dict[str, float], module: str, default: float) -> float:
    """peft's rank/alpha lookup: ``pattern.get(get_pattern_key(pattern.keys(), module), default)``."""
    if not pattern:
        return float(default)
    try:
        from peft.utils.other import get_pattern_key
    except ImportError:  # the llm extra brings peft; without it, the same rule as peft 0.21
        get_pattern_key = _peft_pattern_key
    return float(pattern.get(get_pattern_key(pattern.keys(), module), default))


def _model_name(name: str) -> str:
    """What a hub id or a model folder is called: the last path component, or a hub-cache folder's repo name."""
    parts = [p for p in re.split(r"[/\\]+", name.strip()) if p and p != "."] or [name]
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        return parts[-3].split("--", 2)[-1].lower()
    return (parts[-1].split("--", 2)[-1] if parts and parts[-1].startswith("models--") else parts[-1]).lower()


def same_base_model(adapter_base: str, base: str) -> bool:
    """Whether an adapter's ``base_model_name_or_path`` and the base being merged name the same model: the same
    string or folder, or the same model name (``Qwen/Qwen2.5-0.5B`` and ``/models/Qwen2.5-0.5B`` agree; a hub-cache
    snapshot folder is named by its repo). A name check only: shapes are checked separately."""
    a, b = adapter_base.strip().rstrip("/\\"), base.strip().rstrip("/\\")
    if a == b:
        return True
    try:
        if os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return bool(a and b) and _model_name(a) == _model_name(b)


def check_base_model(folder: Path, adapter_base: str | None, base: str | None, on_other_base: str = "warn") -> None:
    """Warn (or with ``on_other_base="error"`` refuse) when an adapter was trained on another model than ``base``.
    Either name unknown (peft writes none for a model built from a config) means nothing to compare."""
    if on_other_base not in ON_OTHER_BASE:
        raise ValueError(f"on_other_base must be one of {', '.join(ON_OTHER_BASE)}, got {on_other_base!r}")
    if on_other_base == "ignore" or not adapter_base or not base or same_base_model(adapter_base, base):
        return
    message = (
        f"{folder}: the adapter was trained on base_model_name_or_path {adapter_base!r}, but the base being merged "
        f"is {base!r}; its shapes fit, so a merge would run on weights it was not trained against"
    )
    if on_other_base == "error":
        raise ExpertError(message + " (refused: on_other_base is 'error')")
    warnings.warn(
        message + " (on_other_base: error refuses it, ignore silences this)", BaseModelMismatchWarning, stacklevel=3
    )


def load_lora_expert(
    folder: str | Path,
    base_shapes: dict[str, tuple[int, ...]],
    name: str | None = None,
    base_name: str | None = None,
    on_other_base: str = "warn",
) -> LoraExpert:
    """Read a peft LoRA folder (``adapter_config.json`` + ``adapter_model.safetensors``) against the base's
    parameter shapes (``{name: tuple(shape)}`` of the base model's state dict).

    ``base_name`` (the base's hub id or folder) is compared with the adapter's ``base_model_name_or_path``:
    ``on_other_base`` is ``"warn"`` (a :class:`BaseModelMismatchWarning` naming both), ``"error"`` (refused with
    :class:`ExpertError`) or ``"ignore"``."""
    folder = Path(folder)
    cfg = _adapter_config(folder)
    check_base_model(folder, cfg.get("base_model_name_or_path"), base_name, on_other_base)
    tensors = _read_safetensors(folder / "adapter_model.safetensors")
    factors: dict[str, LoraFactors] = {}
    for key in sorted(tensors):
        if ".lora_A." not in key:
            if ".lora_B." not in key:
                raise ExpertError(f"{folder}: unexpected tensor {key!r} (only LoRA factors are supported)")
            continue
        param, lora = _module_factors(folder, cfg, tensors, key, base_shapes)
        factors[param] = lora
    if not factors:
        raise ExpertError(f"{folder}: no LoRA factors found")
    return LoraExpert(name or folder.name, factors)


def _adapter_config(folder: Path) -> dict:
    """``adapter_config.json``, refusing what is not a plain LoRA task vector s·B·A."""
    cfg_path = folder / "adapter_config.json"
    if not cfg_path.is_file():
        raise ExpertError(f"{folder}: no adapter_config.json (not a peft adapter folder)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ExpertError(f"{cfg_path}: invalid JSON ({exc})") from exc
    if str(cfg.get("peft_type", "LORA")).upper() != "LORA":
        raise ExpertError(f"{folder}: peft_type {cfg.get('peft_type')!r} is not LoRA")
    if cfg.get("use_dora"):
        raise ExpertError(f"{folder}: DoRA adapters are not task vectors s·B·A (magnitude vectors); not supported")
    if cfg.get("modules_to_save"):
        raise ExpertError(
            f"{folder}: modules_to_save={cfg['modules_to_save']} stores full module copies, not deltas; "
            "merging them as task vectors would be wrong — retrain without modules_to_save or merge densely"
        )
    if cfg.get("lora_bias"):
        raise ExpertError(
            f"{folder}: lora_bias adapters also change the biases (peft adds s·b_B to them); not supported as "
            "task vectors s·B·A"
        )
    return cfg


def _module_factors(
    folder: Path, cfg: dict, tensors: dict[str, torch.Tensor], key: str, base_shapes: dict[str, tuple[int, ...]]
) -> tuple[str, LoraFactors]:
    """One module's A, B and scale (rank and alpha looked up in the patterns as peft does; rsLoRA: α/√r)."""
    module = key.split(".lora_A.")[0].removeprefix("base_model.model.")
    b_key = key.replace(".lora_A.", ".lora_B.")
    if b_key not in tensors:
        raise ExpertError(f"{folder}: {key} has no matching lora_B")
    a, b = tensors[key].float(), tensors[b_key].float()
    param = f"{module}.weight"
    if param not in base_shapes:
        raise ExpertError(f"{folder}: targets {param}, which the base model does not have (another base?)")
    rank = a.shape[0]
    r_cfg = _pattern_value(cfg.get("rank_pattern") or {}, module, cfg.get("r", 8))
    if rank != int(r_cfg) or b.shape[1] != rank:
        raise ExpertError(
            f"{folder}: {module} factors have rank {rank}/{b.shape[1]}, but r / rank_pattern (looked up as peft "
            f"does) give {int(r_cfg)}"
        )
    fan_in_fan_out = bool(cfg.get("fan_in_fan_out"))
    out_in = (b.shape[0], a.shape[1]) if not fan_in_fan_out else (a.shape[1], b.shape[0])
    if tuple(base_shapes[param]) != out_in:
        what = "resized embeddings" if "embed" in module or "lm_head" in module else "another base model"
        raise ExpertError(
            f"{folder}: {param} is {tuple(base_shapes[param])} in the base but the adapter implies {out_in} ({what}?)"
        )
    alpha = _pattern_value(cfg.get("alpha_pattern") or {}, module, cfg.get("lora_alpha", 8))
    scaling = alpha / math.sqrt(rank) if cfg.get("use_rslora") else alpha / rank
    return param, LoraFactors(a.contiguous(), b.contiguous(), float(scaling), fan_in_fan_out)


def dense_expert(name: str, base_state: dict[str, torch.Tensor], expert_state: dict[str, torch.Tensor]) -> DenseExpert:
    """θ_i − θ_pre for every floating parameter; refuses mismatched keys or shapes (another base, resized
    embeddings)."""
    missing = sorted(set(base_state) ^ set(expert_state))
    if missing:
        raise ExpertError(f"{name}: parameters differ from the base ({missing[:3]}…): another architecture?")
    deltas = {}
    for key, base in base_state.items():
        other = expert_state[key]
        if tuple(other.shape) != tuple(base.shape):
            what = "resized embeddings" if "embed" in key or "lm_head" in key else "another base model"
            raise ExpertError(f"{name}: {key} is {tuple(other.shape)}, base has {tuple(base.shape)} ({what}?)")
        if not base.is_floating_point():
            continue
        d = other.float() - base.float()
        if torch.count_nonzero(d):
            deltas[key] = d
    return DenseExpert(name, deltas)
