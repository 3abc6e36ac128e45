"""LLM merge adapter (``llm`` extra): experts as exact task vectors and merge methods.

Built so far: LoRA / dense experts (``experts``) and the TA / TIES / DARE merge registry (``merges``). The
fitness (merge-and-evaluate), tasks, CLI and the CPU demo are the next steps of the llm_merge issue.
"""

from llm_merge.experts import DenseExpert, ExpertError, LoraExpert, LoraFactors, dense_expert, load_lora_expert
from llm_merge.merges import MERGE_METHODS, MergeMethod, get_method

__all__ = [
    "MERGE_METHODS",
    "DenseExpert",
    "ExpertError",
    "LoraExpert",
    "LoraFactors",
    "MergeMethod",
    "dense_expert",
    "get_method",
    "load_lora_expert",
]
