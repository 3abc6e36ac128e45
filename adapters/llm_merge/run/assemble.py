"""Build a :class:`MergeFitness` from settings: the base, the experts, the tasks, the merge method and layout.

``evogm-opt merge`` (:func:`assemble_run`) and the Ray evaluator's actors (``parallel.FitnessSpec``) both go
through :func:`assemble`, so a worker's fitness is built exactly as the run's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llm_merge.merges import get_method
from llm_merge.model.experts import Expert
from llm_merge.model.fitness import MergeFitness, merged_parameters
from llm_merge.model.layouts import make_layout
from llm_merge.model.loading import load_base, load_expert
from llm_merge.run.config import MergeRunConfig
from llm_merge.run.identity import task_splits
from llm_merge.run.schema import ExpertSpec
from llm_merge.tasks.jsonl import Task


@dataclass
class Assembly:
    """What a merge run works on: the model (rebuilt in place by the fitness), its tokenizer and the experts."""

    model: Any
    tokenizer: Any
    experts: list[Expert]
    fitness: MergeFitness


@dataclass(frozen=True)
class LayoutSpec:
    """How the optimizer's vector maps to coefficients (``model.layouts``); the default is one λ per expert."""

    name: str = "per_expert"
    groups: int = 4
    simplex: bool = False
    sharpness: float = 4.0


def assemble(
    base: str,
    experts: Sequence[ExpertSpec],
    tasks: Sequence[Any],
    *,
    method: str = "task_arithmetic",
    method_options: dict[str, Any] | None = None,
    dtype: str = "bfloat16",
    device: str = "auto",
    tokenizer: str | None = None,
    weights: Sequence[float] | None = None,
    batch_size: int = 32,
    layout: LayoutSpec = LayoutSpec(),
    on_other_base: str = "warn",
    model_type: str = "auto",
) -> Assembly:
    """Load the base and the experts onto ``device`` and build the fitness over ``tasks`` (those that drive the
    search; ``weights``: one per task for their weighted mean). ``model_type``: ``auto``, ``causal`` or
    ``seq2seq`` (``llm_merge.model.loading.load_base``)."""
    model, tok = load_base(base, dtype, device, tokenizer, model_type)
    loaded = [load_expert(e.path, model, tok, e.name, e.kind, on_other_base) for e in experts]
    merge = get_method(method, **(method_options or {}))
    coefficients = make_layout(
        layout.name,
        merged_parameters(model, loaded, merge),
        len(loaded),
        groups=layout.groups,
        n_layers=layer_counts(model.config),
        simplex=layout.simplex,
        sharpness=layout.sharpness,
    )
    fitness = MergeFitness(model, tok, loaded, tasks, merge, weights, batch_size, coefficients)
    return Assembly(model, tok, loaded, fitness)


def layer_counts(config) -> int | dict[str, int] | None:
    """The decoder layers of a causal LM; an encoder–decoder's layers per stack (``{"encoder": …, "decoder": …}``:
    T5's ``num_layers`` / ``num_decoder_layers``, BART's ``encoder_layers`` / ``decoder_layers``)."""
    if not getattr(config, "is_encoder_decoder", False):
        return getattr(config, "num_hidden_layers", None)

    def first(*keys: str) -> int | None:
        return next((v for v in (getattr(config, k, None) for k in keys) if isinstance(v, int)), None)

    counts = {
        "encoder": first("encoder_layers", "num_layers", "num_hidden_layers"),
        "decoder": first("decoder_layers", "num_decoder_layers", "num_layers", "num_hidden_layers"),
    }
    return {k: v for k, v in counts.items() if v is not None} or None


def load_tasks(cfg: MergeRunConfig) -> dict[str, Any]:
    """Every task split of the config, keyed ``"name/val"`` and ``"name/test"`` (seen tasks first)."""
    tasks: dict[str, Any] = {}
    for spec, split, source in task_splits(cfg):
        if spec.lm_eval is not None:
            from llm_merge.tasks.lm_eval_tasks import LmEvalTask

            task = LmEvalTask(spec.name, source, **spec.lm_eval_options())
            task.check()
        else:
            task = Task.from_jsonl(source, name=spec.name, max_new_tokens=spec.max_new_tokens)
        tasks[f"{spec.name}/{split}"] = task
    return tasks


def assemble_run(cfg: MergeRunConfig, tasks: dict[str, Any]) -> Assembly:
    """The run's fitness: searched on the seen tasks' validation splits, weighted as the config says."""
    return assemble(
        cfg.base,
        cfg.experts,
        [tasks[f"{t.name}/val"] for t in cfg.seen],
        method=cfg.method,
        method_options=cfg.method_options,
        dtype=cfg.dtype,
        device=cfg.device,
        tokenizer=cfg.tokenizer,
        weights=[t.weight for t in cfg.seen],
        batch_size=cfg.batch_size,
        layout=LayoutSpec(cfg.layout, cfg.layout_groups, cfg.simplex, cfg.simplex_sharpness),
        on_other_base=cfg.on_other_base,
        model_type=cfg.model_type,
    )
