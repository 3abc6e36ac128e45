"""Batched-λ LoRA forward: exactly the rebuilt-weights merges, for every candidate row, in shared forwards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the llm_merge adapter needs the `llm` extra")

from llm_merge import load_lora_expert  # noqa: E402
from llm_merge.demo.cpu_demo import char_tokenizer  # noqa: E402
from llm_merge.model.fitness import MergeFitness  # noqa: E402

from tests.test_llm_merge_experts import base_shapes, make_adapter, tiny_qwen  # noqa: E402
from tests.test_llm_merge_fitness import write_tasks  # noqa: E402

# fp32 throughout; the two paths sum the same terms in different orders (W₀x + ΔWx vs (W₀ + ΔW)x)
ATOL, RTOL = 2e-5, 1e-4


@pytest.fixture(scope="module")
def experts(tmp_path_factory):
    root = tmp_path_factory.mktemp("batched")
    shapes = base_shapes(tiny_qwen())
    return [load_lora_expert(make_adapter(root / f"e{i}", seed=i + 1), shapes) for i in range(3)]


def test_logits_of_each_row_equal_the_rebuilt_merge(experts, tmp_path):
    model = tiny_qwen()
    fitness = MergeFitness(model, char_tokenizer(), experts, write_tasks(tmp_path))
    lams = np.random.default_rng(0).uniform(-1, 1, (4, 3)).astype(np.float32)
    ids = torch.randint(2, 40, (3, 7), generator=torch.Generator().manual_seed(1))
    expected = []
    for lam in lams:
        fitness.apply(lam)
        with torch.no_grad():
            expected.append(model(input_ids=ids).logits)
    fitness.restore()
    stacked = ids.repeat(len(lams), 1)  # candidate-major rows: 4 candidates × 3 sequences
    with fitness.batched_lora() as lora, torch.no_grad():
        lora.set_rows(torch.from_numpy(lams).repeat_interleave(3, dim=0))
        got = model(input_ids=stacked).logits
        with pytest.raises(RuntimeError, match="rows"):
            model(input_ids=ids)  # λ set for 12 rows, 3 given: refused, never silently broadcast
    torch.testing.assert_close(got, torch.cat(expected), atol=ATOL, rtol=RTOL)
    with torch.no_grad():  # hooks removed and W₀ untouched: the base model again
        fitness.restore()
        plain = model(input_ids=ids).logits
        assert all(torch.equal(p, fitness._pristine[n]) for n, p in fitness._params.items())
    fitness.apply(np.zeros(3))
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, plain, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("batch_size", [3, 5, 64])  # chunks that split candidates across forwards, and one forward
def test_task_scores_equal_the_rebuild_path_for_mc_and_generation(experts, tmp_path, batch_size):
    fitness = MergeFitness(tiny_qwen(), char_tokenizer(), experts, write_tasks(tmp_path), batch_size=batch_size)
    lams = np.random.default_rng(1).uniform(-1.5, 1.5, (6, 3))
    assert fitness.task_scores_batched(lams) == [fitness.task_scores(lam) for lam in lams]
    assert fitness.evaluate_batch(lams, path="batched") == fitness.evaluate_batch(lams, path="rebuild")


def test_the_path_is_chosen_by_device_and_how_full_one_candidates_forwards_are(experts, tmp_path):
    tasks = write_tasks(tmp_path)  # 4 mc examples × 2 options = 8 rows; 3 generation prompts

    def choice(n: int, batch_size: int, device: str, method: str = "task_arithmetic") -> str:
        fitness = MergeFitness(tiny_qwen(), char_tokenizer(), experts, tasks, method=method, batch_size=batch_size)
        fitness._device = torch.device(device)  # the rule only, without a GPU
        return fitness.choose_path(n)

    assert choice(10, 64, "cuda") == "batched"
    assert choice(10, 8, "cuda") == "rebuild"  # one candidate already fills a forward
    assert choice(1, 64, "cuda") == "rebuild"
    assert choice(10, 64, "cpu") == "rebuild"  # measured slower on CPUs
    assert choice(10, 64, "cuda", method="ties") == "rebuild"
    ties = MergeFitness(tiny_qwen(), char_tokenizer(), experts, tasks, method="ties", batch_size=64)
    with pytest.raises(ValueError, match="task arithmetic over LoRA"):
        ties.task_scores_batched(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="path must be"):
        ties.evaluate_batch(np.zeros((2, 3)), path="fast")


def test_the_merge_speed_benchmark_runs_and_reports_every_way(tmp_path):
    import json

    from evogm_opt.cli import main

    out = tmp_path / "speed.json"
    args = ["--experts", "3", "--rank", "2", "--population", "3", "--prompts", "2", "--length", "8", "--repeats", "1"]
    args += ["--reference-candidates", "2", "--dtype", "fp32", "--json", str(out)]
    assert main(["bench", "merge-speed", *args]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 4 and all(r["s_per_candidate"] > 0 and r["tokens_per_s"] > 0 for r in rows.values())
