"""lm-eval backend: a local lm-eval task scores the in-place merged model like our own scorer, and drives a run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # nothing is downloaded: the tasks below read local JSON
os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("lm_eval", reason="the lm-eval backend needs the `lm-eval` extra")
yaml = pytest.importorskip("yaml")

from llm_merge import TaskError, load_lora_expert  # noqa: E402
from llm_merge.demo.cpu_demo import char_tokenizer  # noqa: E402
from llm_merge.model.fitness import MergeFitness  # noqa: E402
from llm_merge.tasks.jsonl import Task  # noqa: E402
from llm_merge.tasks.lm_eval_tasks import LmEvalTask  # noqa: E402

from tests.test_llm_merge_experts import base_shapes, make_adapter, tiny_qwen  # noqa: E402


def lm_eval_task_folder(root: Path) -> Path:
    """Two lm-eval multiple-choice tasks over local JSONL files (val and test), as a user would write them."""
    rows = {
        "val": [{"prompt": f"{i}+{i}=", "options": [str(2 * i), str(2 * i + 1)], "answer": i % 2} for i in range(8)],
        "test": [{"prompt": f"{i}-{i}=", "options": ["0", str(i)], "answer": 0} for i in range(1, 7)],
    }
    folder = root / "lm_tasks"
    folder.mkdir()
    for split, data in rows.items():
        (folder / f"{split}.jsonl").write_text("\n".join(map(json.dumps, data)))
        config = {
            "task": f"tiny_{split}",
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"validation": str(folder / f"{split}.jsonl")}},
            "validation_split": "validation",
            "output_type": "multiple_choice",
            "doc_to_text": "{{prompt}}",
            "doc_to_choice": "{{options}}",
            "doc_to_target": "{{answer}}",
            "target_delimiter": "",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        }
        (folder / f"tiny_{split}.yaml").write_text(yaml.safe_dump(config))
    return folder


def test_lm_eval_scores_the_merged_model_like_the_jsonl_scorer(tmp_path):
    folder = lm_eval_task_folder(tmp_path)
    shapes = base_shapes(tiny_qwen())
    experts = [load_lora_expert(make_adapter(tmp_path / f"e{i}", seed=i + 1), shapes) for i in range(2)]
    lm_task = LmEvalTask("tiny", "tiny_val", include_path=str(folder))
    lm_task.check()
    ours = Task.from_jsonl(folder / "val.jsonl")
    via_lm_eval = MergeFitness(tiny_qwen(), char_tokenizer(), experts, [lm_task], batch_size=4)
    via_jsonl = MergeFitness(tiny_qwen(), char_tokenizer(), experts, [ours], batch_size=4)
    lams = np.array([[0.0, 0.0], [1.0, -0.5], [-1.0, 1.0], [0.3, 0.9]])
    a, b = via_lm_eval.evaluate_batch(lams), via_jsonl.evaluate_batch(lams)
    assert a == b and len(set(a)) > 1  # the same accuracies, and they do move with λ
    assert via_lm_eval.choose_path(4) == "rebuild"
    with pytest.raises(TaskError, match="no task"):
        LmEvalTask("x", "no_such_task", include_path=str(folder)).check()
    with pytest.raises(TaskError, match="not 'f1,none'"):
        LmEvalTask("x", "tiny_val", metric="f1,none", include_path=str(folder)).evaluate(
            tiny_qwen(), char_tokenizer(), 4
        )


def test_a_merge_run_searches_on_an_lm_eval_task(tmp_path):
    from llm_merge.run.config import load_config
    from llm_merge.run.pipeline import run_merge

    folder = lm_eval_task_folder(tmp_path)
    tiny_qwen().save_pretrained(tmp_path / "base")
    char_tokenizer().save_pretrained(tmp_path / "base")
    for i in range(2):
        make_adapter(tmp_path / f"e{i}", seed=i + 1)
    config = {
        "base": "base",
        "dtype": "float32",
        "device": "cpu",
        "experts": ["e0", "e1"],
        "tasks": {
            "seen": [{"name": "tiny", "val": "tiny_val", "test": "tiny_test", "lm_eval": {"include_path": str(folder)}}]
        },
        "optimizer": {"name": "evogm", "budget": 8},
        "output": "run",
        "save_model": False,
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    result = run_merge(load_config(tmp_path / "c.yaml"), progress=False, say=lambda *a: None)
    rows = result.results["rows"]
    assert result.results["n_evals"] == 8 and set(rows["evogm λ*"]) == {"tiny/val", "tiny/test"}
    assert rows["evogm λ*"]["tiny/val"] == result.results["best"]["score"]
