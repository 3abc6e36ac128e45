"""LLM merge adapter (``llm`` extra): experts as exact task vectors and merge methods.

Built so far: LoRA / dense experts (``experts``), the TA / TIES / DARE merge registry (``merges``), JSONL tasks
(``tasks``) and ``MergeFitness`` with in-place rebuilds (``fitness``). The merge CLI, the CPU demo and the
GPU-tested path are the next steps of the llm_merge issue.
"""

from llm_merge.experts import DenseExpert, ExpertError, LoraExpert, LoraFactors, dense_expert, load_lora_expert
from llm_merge.fitness import MergeFitness
from llm_merge.merges import MERGE_METHODS, MergeMethod, get_method
from llm_merge.tasks import Task, TaskError

__all__ = [
    "MERGE_METHODS",
    "DenseExpert",
    "ExpertError",
    "LoraExpert",
    "LoraFactors",
    "MergeFitness",
    "MergeMethod",
    "Task",
    "TaskError",
    "dense_expert",
    "get_method",
    "load_lora_expert",
]
