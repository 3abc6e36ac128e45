"""Ray actor pool: the population is sharded over persistent actors, scores come back to their own rows, and a
lost actor's shard is re-queued on a live one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray evaluator needs the `ray` extra")
pytest.importorskip("transformers", reason="the llm_merge adapter needs the `llm` extra")

from llm_merge.demo.cpu_demo import char_tokenizer  # noqa: E402
from llm_merge.run.parallel import FitnessSpec, RayMergeEvaluator  # noqa: E402

from tests.test_llm_merge_experts import make_adapter, tiny_qwen  # noqa: E402
from tests.test_llm_merge_fitness import write_tasks  # noqa: E402


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> FitnessSpec:
    root: Path = tmp_path_factory.mktemp("parallel")
    tiny_qwen().save_pretrained(root / "base")
    char_tokenizer().save_pretrained(root / "base")
    for i in range(3):
        make_adapter(root / f"e{i}", seed=i + 1)
    write_tasks(root)
    return FitnessSpec(
        base=str(root / "base"),
        experts=[str(root / f"e{i}") for i in range(3)],
        tasks=[str(root / "mc.jsonl"), str(root / "gen.jsonl")],
        dtype="float32",
        device="cpu",
        batch_size=8,
        max_new_tokens=3,
    )


def test_sharded_scores_equal_local_evaluation_even_when_an_actor_is_lost(spec):
    lams = np.random.default_rng(0).uniform(-1.5, 1.5, (7, 3))
    expected = spec.build().evaluate_batch(lams)
    assert len(set(expected)) > 1  # distinct scores, so a row mix-up would show
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        pool = RayMergeEvaluator(spec, num_workers=2, num_cpus=1, max_restarts=0)
        assert pool.devices() == ["cpu", "cpu"]
        assert pool.evaluate_batch(lams) == expected
        assert pool.evaluate_batch(lams[::-1]) == expected[::-1]
        ray.kill(pool.workers[0], no_restart=True)  # lost for good: its shard must move to the other actor
        assert pool.evaluate_batch(lams) == expected
        assert pool.requeued == 1
        ray.kill(pool.workers[1], no_restart=True)
        with pytest.raises(RuntimeError, match="every Ray actor is lost"):
            pool.evaluate_batch(lams)
    finally:
        ray.shutdown()
