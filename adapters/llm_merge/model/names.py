"""The model settings' names and the base's class (causal or seq2seq), torch-free: the config schema checks them
before anything loads, and ``loading`` / ``experts`` use them when it does."""

from __future__ import annotations

DTYPE_NAMES = ("float32", "bfloat16", "float16")
# model_type: which transformers class loads the base (the config's own model_type, "t5" or "llama", is another thing)
MODEL_TYPES = ("auto", "causal", "seq2seq")
AUTO_CLASSES = {"causal": "AutoModelForCausalLM", "seq2seq": "AutoModelForSeq2SeqLM"}
ON_OTHER_BASE = ("warn", "error", "ignore")
# how the coefficients are laid over the model (``layouts.make_layout``; the config's ``layout.name``)
LAYOUTS = ("per_expert", "per_layer_group", "per_module_type")


class BaseModelTypeError(ValueError):
    """``model_type`` says causal or seq2seq, the base's config says the other."""


def base_model_type(is_encoder_decoder: bool, model_type: str = "auto", source: str = "the base") -> str:
    """``"seq2seq"`` or ``"causal"``: what the base's config says, which an explicit ``model_type`` must agree with."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {', '.join(MODEL_TYPES)}, got {model_type!r}")
    found = "seq2seq" if is_encoder_decoder else "causal"
    if model_type not in ("auto", found):
        what = "an encoder–decoder" if is_encoder_decoder else "a decoder-only model"
        raise BaseModelTypeError(
            f"model_type is {model_type!r}, but {source} is {what} (config is_encoder_decoder: "
            f"{bool(is_encoder_decoder)}), which loads with {AUTO_CLASSES[found]}; set model_type: {found} or auto"
        )
    return found
