"""Loading what a merge run names: the base model and tokenizer, and experts from folders.

The base is a causal LM (``AutoModelForCausalLM``) or an encoder–decoder (``AutoModelForSeq2SeqLM``: T5,
FLAN-T5, BART, …), chosen from its config's ``is_encoder_decoder`` (``model_type: auto``) or asserted by the
config key ``model_type: causal | seq2seq``. Weights that a model ties (T5's and BART's ``shared`` embedding, which
``encoder.embed_tokens``, ``decoder.embed_tokens`` and often ``lm_head`` are) are one tensor here, named as the
model's ``named_parameters`` names it, whichever alias a checkpoint stored.

An expert folder is either a peft LoRA adapter (``adapter_config.json``) or a full fine-tuned checkpoint
(``config.json`` + safetensors, sharded or not). Anything that would merge silently wrong is refused here, with
the folder in the message: another architecture, resized embeddings, a tokenizer whose vocabulary differs
from the base's, pickle-only checkpoints (not read: arbitrary code), missing or corrupt files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from llm_merge.model.experts import Expert, ExpertError, _read_safetensors, dense_expert, load_lora_expert
from llm_merge.model.names import AUTO_CLASSES, DTYPE_NAMES, base_model_type

DTYPES = dict(zip(DTYPE_NAMES, (torch.float32, torch.bfloat16, torch.float16)))
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
    # encoder–decoder configs name their sizes otherwise (T5: d_model, …; BART: encoder_layers, …)
    "is_encoder_decoder",
    "d_model",
    "d_ff",
    "d_kv",
    "num_layers",
    "num_decoder_layers",
    "num_heads",
    "feed_forward_proj",
    "encoder_layers",
    "decoder_layers",
    "encoder_attention_heads",
    "decoder_attention_heads",
    "encoder_ffn_dim",
    "decoder_ffn_dim",
)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but torch sees no CUDA device")
    return device


def load_base(source: str, dtype: str, device: str, tokenizer: str | None = None, model_type: str = "auto"):
    """The base model (eval mode, on ``device``) and its tokenizer (from ``tokenizer`` or the base): a causal LM,
    or with a config that says ``is_encoder_decoder`` a seq2seq LM (``model_type``: ``auto``, or ``causal`` /
    ``seq2seq`` to insist, refused with :class:`BaseModelTypeError` where the config says otherwise)."""
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    config = AutoConfig.from_pretrained(source)
    kind = base_model_type(getattr(config, "is_encoder_decoder", False), model_type, repr(source))
    auto_class = getattr(transformers, AUTO_CLASSES[kind])
    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"  # renamed in transformers 4.56
    model = auto_class.from_pretrained(source, config=config, **{key: DTYPES[dtype]})
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


def tied_names(model) -> dict[str, str]:
    """Every state-dict name -> the name of its tensor in the model's ``named_parameters`` (first alias): tied
    weights (T5's ``shared`` = ``encoder.embed_tokens`` = ``decoder.embed_tokens``, often ``lm_head`` too) map to
    one name, as ``MergeFitness`` and ``save_pretrained`` see them."""
    first: dict[object, str] = {}
    names: dict[str, str] = {}
    tensors = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    for name, t in tensors:
        key = (t.data_ptr(), tuple(t.shape), t.stride(), t.dtype, str(t.device)) if t.numel() else id(t)
        names[name] = first.setdefault(key, name)
    return names


def _canonical_checkpoint(folder: Path, model, state: dict[str, torch.Tensor], names: dict[str, str]):
    """The checkpoint keyed by the base's canonical names: an alias of a tied weight counts once (all stored
    aliases must agree: one that differs was fine-tuned untied), keys the model drops on load are dropped."""
    ignored = [re.compile(p) for p in (getattr(model, "_keys_to_ignore_on_load_unexpected", None) or [])]
    out: dict[str, torch.Tensor] = {}
    stored_as: dict[str, str] = {}
    for key, value in state.items():
        if key not in names and any(p.search(key) for p in ignored):
            continue  # e.g. the relative attention bias old T5 checkpoints carry in decoder block 0's cross-attention
        canonical = names.get(key, key)
        if canonical in out and not torch.equal(out[canonical], value):
            raise ExpertError(
                f"{folder}: {stored_as[canonical]} and {key} differ in the checkpoint, but the base model ties them "
                f"(one tensor, {canonical}): the expert was fine-tuned with them untied, so no task vector of the "
                "base's shape holds it"
            )
        out[canonical] = value
        stored_as.setdefault(canonical, key)
    return out


def load_dense_expert(folder: Path, model, name: str) -> Expert:
    """θ_i − θ_pre of a full fine-tuned checkpoint, after checking that it is the base's architecture. Tied weights
    are compared once, under the base's name for them, whichever alias the checkpoint stored."""
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
    names = tied_names(model)
    state = model.state_dict()
    base_state = {k: state[k].detach().cpu() for k in dict.fromkeys(names.values()) if k in state}
    expert_state = _canonical_checkpoint(folder, model, _read_checkpoint(folder), names)
    return dense_expert(name, base_state, expert_state)


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
        expert = load_lora_expert(folder, shapes, name=name, base_name=base_name, on_other_base=on_other_base)
        return _canonical_lora_names(folder, expert, tied_names(model))
    return load_dense_expert(folder, model, name)


def _canonical_lora_names(folder: Path, expert, names: dict[str, str]):
    """A LoRA expert whose target is an alias of a tied weight (``lm_head`` tied to the embeddings) adds its ΔW to
    the one tensor, as peft's ``merge_and_unload`` does: keyed by the base's name for it."""
    factors = {}
    for param, f in expert.factors.items():
        canonical = names.get(param, param)
        if canonical in factors:
            raise ExpertError(f"{folder}: targets {param} and another alias of the tied weight {canonical}")
        factors[canonical] = f
    expert.factors = factors
    return expert
