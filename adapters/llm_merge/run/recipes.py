"""Recipes that travel: ``merged/mergekit.yml``, the mergekit recipe that makes ``mergekit-yaml`` write ``merged/``
again, or — where mergekit cannot express the merge — a file of comments that says why and what
``evogm_merge.json`` holds instead.

The recipe is mergekit 0.1.5's schema (``mergekit/config.py``): our methods carry mergekit's names, parameters and
defaults (``llm_merge.merges``), so λ_i is model i's ``weight`` (a mergekit-computed method's: its searched
per-model parameter, ``llm_merge.merges.mergekit_methods``). LoRA experts are mergekit's ``BASE+ADAPTER``
model form, full fine-tunes their folders. Arithmetic is fp32 (``dtype: float32``) and, as here, cast once to
the run's dtype (``out_dtype``). ``merged/README.md`` is the model card: what was merged, how, how well, and the
command that made it.

Encoder–decoder bases: mergekit 0.1.5 defines one such architecture, ``T5ForConditionalGeneration`` with T5 v1.1's
gated feed-forward (``DenseReluDense.wi_0``/``wi_1``: FLAN-T5, T5 v1.1; ``mergekit/_data/architectures/t5.json``),
which takes LoRA experts and full fine-tunes alike (tested: ``mergekit-yaml``'s merge equals ``merged/``). For
any other encoder–decoder it infers an architecture from the tensor names, which works for full fine-tunes
(tested on BART) but stops on LoRA experts ("LoRA not merged"); an original T5 (``wi`` without the gate) stops on
the missing ``wi_0``. Those cases get the comments-only file, saying so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llm_merge.merges import get_method
from llm_merge.model.experts import LoraExpert
from llm_merge.model.layouts import CoefficientLayout
from llm_merge.run.config import MergeRunConfig

RECIPE = "mergekit.yml"


def mergekit_command(experts: Sequence[Any], recipe: str = RECIPE) -> str:
    """The ``mergekit-yaml`` command that writes the merge again (OUT: a new folder). With LoRA experts mergekit
    first applies each adapter to the base in a folder of its own, and refuses to run without one ("Need to
    specify cache dir to merge adapters"), so the command names it: LORA_CACHE, any folder (reusable)."""
    command = f"mergekit-yaml {recipe} OUT"
    return command + (" --lora-merge-cache LORA_CACHE" if any(isinstance(e, LoraExpert) for e in experts) else "")


def mergekit_sources(cfg: MergeRunConfig, experts: Sequence[Any]) -> list[str]:
    """Each expert as a mergekit model reference: ``BASE+LORA_FOLDER`` for a LoRA adapter, else its folder."""
    return [
        f"{cfg.base}+{spec.path}" if isinstance(e, LoraExpert) else spec.path for spec, e in zip(cfg.experts, experts)
    ]


def _architecture(base_config: Any) -> str:
    names = getattr(base_config, "architectures", None) or []
    return names[0] if names else type(base_config).__name__.removesuffix("Config")


def _gated_t5(base_config: Any) -> bool:
    gated = getattr(base_config, "is_gated_act", None)
    return bool(gated) if gated is not None else str(getattr(base_config, "feed_forward_proj", "")).startswith("gated")


def _encoder_decoder_gap(base_config: Any, experts: Sequence[Any]) -> str | None:
    """Why mergekit 0.1.5 cannot merge this encoder–decoder base (``None``: it can)."""
    if base_config is None or not getattr(base_config, "is_encoder_decoder", False):
        return None
    arch = _architecture(base_config)
    if arch == "T5ForConditionalGeneration":
        if _gated_t5(base_config):
            return None
        return (
            "mergekit 0.1.5's T5 definition (mergekit/_data/architectures/t5.json) names the gated feed-forward "
            "weights DenseReluDense.wi_0 / wi_1 of T5 v1.1 and FLAN-T5; this T5 (feed_forward_proj: "
            f"{getattr(base_config, 'feed_forward_proj', '?')}) has DenseReluDense.wi instead, so mergekit-yaml stops "
            "with 'Tensor … wi_0.weight required but not present'. evogm_merge.json holds λ per expert."
        )
    if any(isinstance(e, LoraExpert) for e in experts):
        return (
            f"mergekit 0.1.5 has no architecture definition for {arch} (among encoder–decoders only "
            "T5ForConditionalGeneration), and the architecture it infers instead does not take LoRA experts in the "
            "BASE+ADAPTER form (it stops with 'LoRA not merged'). Merged into the base first (peft's "
            "merge_and_unload, saved as full models), the experts are full fine-tunes mergekit can merge; "
            "evogm_merge.json holds λ per expert."
        )
    return None


def why_not_mergekit(
    cfg: MergeRunConfig,
    best: dict[str, Any],
    layout: CoefficientLayout,
    base_config: Any = None,
    experts: Sequence[Any] = (),
) -> str | None:
    """Why no mergekit recipe reproduces this merge (``None``: one does). ``base_config``: the base's transformers
    config, for the architectures mergekit cannot merge (encoder–decoders other than a gated T5)."""
    gap = _encoder_decoder_gap(base_config, experts)
    if gap is not None:
        return gap
    if best.get("basis_version"):
        return (
            f"after {best['basis_version']} EvoGM basis shift(s) the experts of this nonlinear merge ({cfg.method}) "
            "were rebuilt as merges of the original experts, so no weights over the original experts give it; "
            "evogm_merge.json holds the shift rows (shift_rows) and the coordinates over the rebuilt experts "
            "(coordinates) that rebuild it (`evogm-opt merge --rebuild RUN --out OUT`)."
        )
    if len(layout.group_names) != 1:
        return (
            f"the {layout.name} layout gives every expert one λ per group of tensors "
            f"({', '.join(layout.group_names)}), "
            "which this recipe writer does not express as mergekit filters; evogm_merge.json holds λ per group and "
            "expert (coefficients)."
        )
    return None


def best_weights(best: dict[str, Any], layout: CoefficientLayout) -> list[float]:
    """The merge's weight per expert (the simplex's softmax applied), from the coordinates it was evaluated at."""
    flat = best["coordinates"] if best.get("coordinates") is not None else best["lambda"]
    return [float(w) for w in layout.group_weights(np.asarray(flat, dtype=np.float64))[0]]


def mergekit_recipe(cfg: MergeRunConfig, experts: Sequence[Any], weights: Sequence[float]) -> dict[str, Any]:
    """The recipe as a mapping mergekit's ``MergeConfiguration`` validates."""
    method = get_method(cfg.method, **cfg.method_options)
    shared, per_model = method.mergekit_parameters()
    models = [
        {"model": source, "parameters": {method.coefficient: float(w), **per_model}}
        for source, w in zip(mergekit_sources(cfg, experts), weights)
    ]
    recipe: dict[str, Any] = {"merge_method": cfg.method}
    if method.takes_base:  # methods that ignore a base (linear, …) merge the listed models only
        recipe["base_model"] = cfg.base
    recipe.update({"models": models, "parameters": shared, "dtype": "float32"})
    if cfg.dtype != "float32":
        recipe["out_dtype"] = cfg.dtype
    return recipe


def _comments(lines: Sequence[str]) -> str:
    return "".join(f"# {line}\n" if line else "#\n" for line in lines)


def recipe_text(
    cfg: MergeRunConfig,
    experts: Sequence[Any],
    best: dict[str, Any],
    layout: CoefficientLayout,
    base_config: Any = None,
) -> str:
    """The text of ``merged/mergekit.yml``: a recipe with a header, or comments only that say why there is none
    (``base_config``: the base's transformers config; ``None`` is taken for a causal LM)."""
    import yaml

    reason = why_not_mergekit(cfg, best, layout, base_config, experts)
    if reason is not None:
        return _comments(["No mergekit recipe: mergekit cannot reproduce merged/ because", reason])
    method = get_method(cfg.method, **cfg.method_options)
    header = [
        "The mergekit recipe of merged/ (written by evogm-opt merge; evogm_merge.json has the search's record).",
        f"Reproduce it, in this file's folder: {mergekit_command(experts)}",
        f"Each model's {method.coefficient} is the λ the search found; LoRA experts are mergekit's BASE+ADAPTER form.",
    ]
    arch = _architecture(base_config) if base_config is not None else None
    if getattr(base_config, "is_encoder_decoder", False) and arch != "T5ForConditionalGeneration":
        header += [
            f"mergekit 0.1.5 has no architecture definition for {arch}: it infers one from the tensor names, and",
            "logs warnings that it does (tested for BART with full fine-tunes).",
        ]
    if method.stochastic(len(cfg.experts)):
        header += [
            f"{cfg.method}: mergekit draws its own random masks (torch's generator, mergekit-yaml --random-seed), so",
            "OUT is the same merge in distribution, not entry by entry; merged/ drew them with this project's seed",
            f"{method.options.get('seed', 0)}, per tensor (llm_merge.merges.mask_seed).",
        ]
    body = yaml.safe_dump(mergekit_recipe(cfg, experts, best_weights(best, layout)), sort_keys=False)
    return _comments(header) + body


CARD = "README.md"


def _coefficient_table(best: dict[str, Any], expert_names: Sequence[str], layout: CoefficientLayout) -> str:
    """λ per group (rows) and expert (columns); after a basis shift, the coordinates over the rebuilt experts."""
    shifts = best.get("basis_version") or 0
    if shifts:
        return (
            f"After {shifts} EvoGM basis shift(s) the experts were rebuilt as merges of the originals; the merge is at "
            f"coordinates {best['coordinates']} over the rebuilt experts (evogm_merge.json: shift_rows, coordinates)."
        )
    flat = best["coordinates"] if best.get("coordinates") is not None else best["lambda"]
    coefficients = layout.describe(np.asarray(flat, dtype=np.float64), expert_names)
    head = "| group | " + " | ".join(expert_names) + " |\n|---|" + "---|" * len(expert_names) + "\n"
    rows = [f"| {g} | " + " | ".join(f"{w[e]:+.4f}" for e in expert_names) + " |" for g, w in coefficients.items()]
    return head + "\n".join(rows)


def model_card(
    cfg: MergeRunConfig,
    experts: Sequence[Any],
    layout: CoefficientLayout,
    results: dict[str, Any],
    command: str,
) -> str:
    """``merged/README.md``: base, experts, method and parameters, λ, scores against the baselines, the command."""
    best, sources = results["best"], mergekit_sources(cfg, experts)
    kinds = ["LoRA" if isinstance(e, LoraExpert) else "full fine-tune" for e in experts]
    lines = [
        "---",
        f"base_model: {cfg.base}",
        "library_name: transformers",
        "tags: [merge, evogm-opt]",
        "---",
        f"# A merge of {len(cfg.experts)} experts into {Path(cfg.base).name}, coefficients searched by evogm-opt",
        "",
        f"- **base**: `{cfg.base}`",
        "- **experts**: " + "; ".join(f"{s.name} ({k}, `{s.path}`)" for s, k in zip(cfg.experts, kinds)),
        f"- **method**: {cfg.method}, parameters {get_method(cfg.method, **cfg.method_options).options}",
        f"- **layout**: {cfg.layout}" + (f", simplex (sharpness {cfg.simplex_sharpness:g})" if cfg.simplex else ""),
        f"- **search**: {cfg.optimizer.name}, seed {cfg.optimizer.seed}, {results['n_evals']} evaluations "
        f"(stopped: {results['stop_reason']}); seen tasks {[t.name for t in cfg.seen]} drive it, unseen "
        f"{[t.name for t in cfg.unseen]} do not",
        "",
        "## λ per expert",
        "",
        _coefficient_table(best, [s.name for s in cfg.experts], layout),
        "",
        "## Scores (accuracy; the merge against the baselines)",
        "",
        results["table"],
        "",
        "## How it was made",
        "",
        f"    {command}",
        "",
        f"`mergekit.yml` beside this card is the mergekit recipe (`{mergekit_command(experts)}`; models "
        f"{', '.join(f'`{s}`' for s in sources)}), or says why there is none; `evogm_merge.json` holds what "
        "evogm-opt rebuilds the merge from.",
    ]
    return "\n".join(lines) + "\n"
