"""LLM merge adapter (``llm`` extra): experts as exact task vectors, merge methods, tasks, fitness and runs.

``experts`` / ``loading`` read LoRA and full fine-tuned experts (refusing what would merge wrong); ``merges`` is
the TA / TIES / DARE registry, ``mergekit_methods`` any other mergekit method (computed by mergekit); ``tasks``
scores JSONL tasks; ``fitness.MergeFitness`` rebuilds the model in place per candidate; ``run`` is ``evogm-opt
merge CONFIG.yaml`` (schema in ``run_config``), in four steps: ``assemble`` (the fitness from the config),
``journal`` (the run folder), ``search`` (the ask/tell loop), ``report`` (scores, tables, plots, ``--pick``);
``rebuild`` writes ``merged/`` again from its record; ``demo`` is the CPU demo.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module: imported on first use, so `llm_merge.cli` (and `evogm-opt --help`) load without torch/transformers
_EXPORTS = {
    "BaseModelMismatchWarning": "experts",
    "DenseExpert": "experts",
    "ExpertError": "experts",
    "LoraExpert": "experts",
    "LoraFactors": "experts",
    "dense_expert": "experts",
    "load_lora_expert": "experts",
    "MergeFitness": "fitness",
    "load_expert": "loading",
    "MERGE_METHODS": "merges",
    "MergeMethod": "merges",
    "get_method": "merges",
    "MergekitMethod": "mergekit_methods",
    "validate_method": "merges",
    "RunError": "run",
    "run_merge": "run",
    "ConfigError": "run_config",
    "load_config": "run_config",
    "Task": "tasks",
    "TaskError": "tasks",
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
