"""Loading what a merge run names: the base model and tokenizer, and experts from folders.

An expert folder is either a peft LoRA adapter (``adapter_config.json``) or a full fine-tuned checkpoint
(``config.json`` + safetensors, sharded or not). Anything that would merge silently wrong is refused here, with
the folder in the message: another architecture, resized embeddings, a tokenizer whose vocabulary differs
from the base's, pickle-only checkpoints (not read: arbitrary code), missing or corrupt files.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from llm_merge.experts import Expert, ExpertError, _read_safetensors, dense_expert, load_lora_expert

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
# config fields that must agree between a full fine-tuned expert and the base (others, e.g. dropout, may differ)
ARCHITECTURE_FIELDS = (
    "model_type",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but torch sees no CUDA device")
    return device


def load_base(source: str, dtype: str, device: str, tokenizer: str | None = None):
    """The base causal LM (eval mode, on ``device``) and its tokenizer (from ``tokenizer`` or the base)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    import transformers

    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"  # renamed in transformers 4.56
    model = AutoModelForCausalLM.from_pretrained(source, **{key: DTYPES[dtype]})
    model = model.to(resolve_device(device)).eval()
    tok = AutoTokenizer.from_pretrained(tokenizer or source)
    if tok.pad_token is None:  # batched scoring pads; many base tokenizers ship without a pad token
        tok.pad_token = tok.eos_token
    return model, tok


def check_tokenizer(folder: Path, base_tokenizer) -> None:
    """Refuse an expert trained with another vocabulary (its token ids would mean other tokens)."""
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        return  # most adapters ship no tokenizer: nothing to compare
    from transformers import AutoTokenizer

    try:
        theirs = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise ExpertError(f"{folder}: tokenizer files present but unreadable ({exc})") from exc
    mine, other = base_tokenizer.get_vocab(), theirs.get_vocab()
    if mine != other:
        extra = sorted(set(other) - set(mine))[:5]
        moved = sorted(t for t in set(mine) & set(other) if mine[t] != other[t])[:5]
        raise ExpertError(
            f"{folder}: tokenizer differs from the base's ({len(other)} vs {len(mine)} tokens; "
            f"new tokens {extra}, remapped {moved}): its weights index other tokens"
        )


def _read_checkpoint(folder: Path) -> dict[str, torch.Tensor]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError) as exc:
            raise ExpertError(f"{index}: invalid shard index ({exc})") from exc
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(_read_safetensors(folder / shard))
        return state
    single = folder / "model.safetensors"
    if not single.is_file() and any(folder.glob("*.bin")):
        raise ExpertError(f"{folder}: only pickle (.bin) weights; convert to safetensors (pickles can run code)")
    return _read_safetensors(single)


def load_dense_expert(folder: Path, model, name: str) -> Expert:
    """θ_i − θ_pre of a full fine-tuned checkpoint, after checking that it is the base's architecture."""
    cfg_path = folder / "config.json"
    try:
        theirs = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ExpertError(f"{folder}: no readable config.json ({exc})") from exc
    mine = model.config.to_dict()
    for key in ARCHITECTURE_FIELDS:
        if key in mine and theirs.get(key, mine[key]) != mine[key]:
            what = "resized embeddings" if key == "vocab_size" else "another base model"
            raise ExpertError(f"{folder}: {key} is {theirs.get(key)!r}, base has {mine[key]!r} ({what})")
    expert_state = _read_checkpoint(folder)
    base_state = {k: v.detach() for k, v in model.state_dict().items()}
    # tied weights (lm_head = embed_tokens) are saved once; compare the copy that is on disk
    tied = {
        k
        for k in set(base_state) - set(expert_state)
        if any(base_state[k].data_ptr() == base_state[j].data_ptr() for j in expert_state if j in base_state)
    }
    base_state = {k: v for k, v in base_state.items() if k not in tied}
    return dense_expert(name, {k: v.cpu() for k, v in base_state.items()}, expert_state)


def load_expert(
    path: str | Path, model, tokenizer, name: str | None = None, kind: str = "auto", on_other_base: str = "warn"
) -> Expert:
    """One expert folder as a task vector against ``model`` (kind: ``auto``, ``lora`` or ``dense``).

    A LoRA adapter whose ``base_model_name_or_path`` names another model than ``model``'s ``name_or_path`` gives a
    warning naming both (``on_other_base="warn"``), is refused (``"error"``) or passes (``"ignore"``)."""
    folder = Path(path)
    if not folder.is_dir():
        raise ExpertError(f"{folder}: no such expert folder")
    if kind == "auto":
        kind = "lora" if (folder / "adapter_config.json").is_file() else "dense"
    if kind not in ("lora", "dense"):
        raise ValueError(f"expert kind must be auto, lora or dense, got {kind!r}")
    check_tokenizer(folder, tokenizer)
    name = name or folder.name
    if kind == "lora":
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        base_name = getattr(model, "name_or_path", None) or getattr(model.config, "_name_or_path", None)
        return load_lora_expert(folder, shapes, name=name, base_name=base_name, on_other_base=on_other_base)
    return load_dense_expert(folder, model, name)
