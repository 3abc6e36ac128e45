"""LLM merge adapter (``llm`` extra): experts as exact task vectors, merge methods, tasks, fitness and runs.

One folder per concern, each importing only those listed before it (a test finds no import cycle):

- ``merges/``: one file per method (``task_arithmetic``, ``ties``, ``dare``), the ``registry``, and
  ``mergekit_methods`` (any other mergekit method, computed by mergekit); ``get_method`` picks one.
- ``tasks/``: ``jsonl`` (tasks scored by option log-likelihood or exact match), ``lm_eval_tasks``.
- ``model/``: ``experts`` / ``loading`` read LoRA and full fine-tuned experts (refusing what would merge wrong),
  ``layouts`` (coefficients per group), ``batched`` (the batched-λ LoRA forward), ``fitness.MergeFitness``
  (the model rebuilt in place per candidate); ``names``: the model settings' names, torch-free.
- ``run/``: ``evogm-opt merge CONFIG.yaml`` — ``schema`` and ``config`` (validated before anything loads),
  ``pipeline.run_merge`` in four steps: ``assemble`` (the fitness from the config), ``journal`` (the run folder),
  ``search`` (the ask/tell loop), ``report`` (scores, tables, plots, ``--pick``); ``rebuild`` writes ``merged/``
  again from its record.
- ``demo/``: the CPU demo; ``cli``: the command, thin (the evaluation-speed benchmark is the bench's ``merge_speed``).
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module: imported on first use, so `llm_merge.cli` (and `evogm-opt --help`) load without torch/transformers
_EXPORTS = {
    "BaseModelMismatchWarning": "model.experts",
    "DenseExpert": "model.experts",
    "ExpertError": "model.experts",
    "LoraExpert": "model.experts",
    "LoraFactors": "model.experts",
    "dense_expert": "model.experts",
    "load_lora_expert": "model.experts",
    "MergeFitness": "model.fitness",
    "load_expert": "model.loading",
    "MERGE_METHODS": "merges.registry",
    "MergeMethod": "merges.base",
    "get_method": "merges",
    "MergekitMethod": "merges.mergekit_methods",
    "validate_method": "merges",
    "RunError": "run.journal",
    "run_merge": "run.pipeline",
    "ConfigError": "run.config",
    "load_config": "run.config",
    "Task": "tasks.jsonl",
    "TaskError": "tasks.jsonl",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'llm_merge' has no attribute {name!r}")
    return getattr(importlib.import_module(f"llm_merge.{_EXPORTS[name]}"), name)


__all__ = [
    "MERGE_METHODS",
    "BaseModelMismatchWarning",
    "ConfigError",
    "DenseExpert",
    "ExpertError",
    "LoraExpert",
    "LoraFactors",
    "MergeFitness",
    "MergeMethod",
    "MergekitMethod",
    "RunError",
    "Task",
    "TaskError",
    "dense_expert",
    "get_method",
    "load_config",
    "load_expert",
    "load_lora_expert",
    "run_merge",
    "validate_method",
]
