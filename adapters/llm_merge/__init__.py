"""LLM merge adapter (``llm`` extra): experts as exact task vectors, merge methods, tasks, fitness and runs.

``experts`` / ``loading`` read LoRA and full fine-tuned experts (refusing what would merge wrong); ``merges`` is
the TA / TIES / DARE registry; ``tasks`` scores JSONL tasks; ``fitness.MergeFitness`` rebuilds the model in place
per candidate; ``run`` is ``evogm-opt merge CONFIG.yaml`` (schema in ``run_config``); ``demo`` is the CPU demo.
"""

from llm_merge.experts import DenseExpert, ExpertError, LoraExpert, LoraFactors, dense_expert, load_lora_expert
from llm_merge.fitness import MergeFitness
from llm_merge.loading import load_expert
from llm_merge.merges import MERGE_METHODS, MergeMethod, get_method
from llm_merge.run import RunError, run_merge
from llm_merge.run_config import ConfigError, load_config
from llm_merge.tasks import Task, TaskError

__all__ = [
    "MERGE_METHODS",
    "ConfigError",
    "DenseExpert",
    "ExpertError",
    "LoraExpert",
    "LoraFactors",
    "MergeFitness",
    "MergeMethod",
    "RunError",
    "Task",
    "TaskError",
    "dense_expert",
    "get_method",
    "load_config",
    "load_expert",
    "load_lora_expert",
    "run_merge",
]
