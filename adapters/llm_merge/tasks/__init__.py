"""Tasks a merge is scored on: JSONL files (``jsonl``) and lm-evaluation-harness tasks (``lm_eval_tasks``)."""
