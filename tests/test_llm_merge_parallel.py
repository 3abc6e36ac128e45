"""Ray actor pool: the population is sharded over persistent actors, scores come back to their own rows, and a
lost actor's shard is re-queued on a live one; a driver loop runs a multi-fidelity search on the pool."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray evaluator needs the `ray` extra")
pytest.importorskip("transformers", reason="the llm_merge adapter needs the `llm` extra")

from llm_merge.demo.cpu_demo import char_tokenizer  # noqa: E402
from llm_merge.run.parallel import FitnessSpec, RayMergeEvaluator  # noqa: E402
from llm_merge.run.schema import FidelitySpec  # noqa: E402
from llm_merge.run.search import PrefixPlan, PrefixScorer  # noqa: E402

from evogm_opt import registry  # noqa: E402
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


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray session for the module's tests (starting one takes seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def test_sharded_scores_equal_local_evaluation_even_when_an_actor_is_lost(spec, ray_session):
    lams = np.random.default_rng(0).uniform(-1.5, 1.5, (7, 3))
    expected = spec.build().evaluate_batch(lams)
    assert len(set(expected)) > 1  # distinct scores, so a row mix-up would show
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


def test_a_driver_loop_runs_a_multi_fidelity_search_on_the_pool_as_one_process_would(spec, ray_session):
    weighted = replace(spec, weights=[1.0, 2.0])
    fidelity = FidelitySpec(min_examples=1, eta=2, seed=3)
    local = weighted.build()
    plan, expected = weighted.prefix_plan(fidelity), PrefixPlan.of(local, fidelity)  # the driver loads no model
    assert [o.tolist() for o in plan.orders] == [o.tolist() for o in expected.orders]
    assert (plan.sizes, plan.full, plan.minimum) == (expected.sizes, expected.full, expected.minimum)
    tokens = [plan.tokens(0, f) for f in range(plan.full + 1)]
    assert tokens == [expected.tokens(0, f) for f in range(plan.full + 1)] and plan.full_tokens() > 0

    pool = RayMergeEvaluator(weighted, num_workers=2, num_cpus=1, max_restarts=0)
    inner = registry.create("random", 3, seed=0, popsize=6, maximize=True, bounds=(-1.5, 1.5))
    sched = plan.scheduler(inner)
    assert len(sched.rungs) == 2  # (3, 7): every full-fidelity score extends counts from the first rung
    remote, here = PrefixScorer(plan, pool), PrefixScorer(plan, local)
    full: dict[int, tuple[np.ndarray, float]] = {}
    counts: set[tuple[int, ...]] = set()
    spent = 0
    while sched.inner.n_evals < 12:
        batch = sched.ask()
        measured, one_process = remote.measure(batch, "rebuild"), here.measure(batch, "rebuild")
        assert np.array_equal(measured.correct, one_process.correct)  # row by row, gathered in order
        assert (measured.examples, measured.tokens) == (one_process.examples, one_process.tokens)
        counts |= {tuple(row) for row in measured.correct.tolist()}
        values = measured.values(weighted.weights)
        for c, x, f, v in zip(batch.candidate, batch.x, batch.fidelity, values):
            if f == plan.full:
                full[int(c)] = (x, v)
        spent += len(batch) * plan.tokens(int(batch.previous[0]), int(batch.fidelity[0]))
        sched.tell(batch.x, values, fidelity=batch.fidelity)
    assert len(counts) > 1  # rows differ, so a row mix-up would show
    assert len(full) == 6 and spent < 12 * plan.full_tokens()
    xs = np.array([x for x, _ in full.values()])
    assert [v for _, v in full.values()] == local.evaluate_batch(xs, path="rebuild")  # exactly, as one process


def test_the_driver_plan_counts_an_encoder_decoder_base_as_the_run_does(spec, tmp_path):
    """The driver reads seq2seq from the base's config: its prompts' special tokens count, as in the run."""
    from types import SimpleNamespace

    from tests.test_llm_merge_seq2seq import seq2seq_tokenizer, tiny_t5

    model, tok = tiny_t5(), seq2seq_tokenizer()
    model.save_pretrained(tmp_path / "t5")
    tok.save_pretrained(tmp_path / "t5")
    fidelity = FidelitySpec(min_examples=1, eta=2, seed=3)
    plan = replace(spec, base=str(tmp_path / "t5")).prefix_plan(fidelity)
    run = PrefixPlan.of(SimpleNamespace(tasks=spec.load_tasks(), tokenizer=tok, model=model), fidelity)
    causal = PrefixPlan(spec.load_tasks(), fidelity, tok, seq2seq=False)
    assert plan.full_tokens() == run.full_tokens() != causal.full_tokens()  # the flag changes the count here
    assert [plan.tokens(0, f) for f in range(plan.full + 1)] == [run.tokens(0, f) for f in range(run.full + 1)]


def test_an_lm_eval_seen_task_is_scored_on_the_pool_as_in_one_process(spec, ray_session, tmp_path):
    """An lm-eval task rides the spec to the actors (its harness objects are not pickled: each actor builds its
    own); a rung's documents go as indices, and the counts, tokens and full scores are one process's."""
    pytest.importorskip("lm_eval", reason="the lm-eval backend needs the `lm-eval` extra")
    from llm_merge.tasks.lm_eval_tasks import LmEvalTask

    from tests.test_llm_merge_lm_eval import lm_eval_task_folder

    lm_task = LmEvalTask("tiny", "tiny_val", include_path=str(lm_eval_task_folder(tmp_path)), limit=6)
    mixed = replace(spec, tasks=[spec.tasks[0], lm_task], weights=[1.0, 2.0])
    fidelity = FidelitySpec(min_examples=1, eta=2, seed=3)
    local = mixed.build()
    plan, expected = mixed.prefix_plan(fidelity), PrefixPlan.of(local, fidelity)  # the driver loads no model
    assert plan.sizes == expected.sizes == [4, 6]
    assert [o.tolist() for o in plan.orders] == [o.tolist() for o in expected.orders]
    assert [plan.tokens(0, f) for f in range(11)] == [expected.tokens(0, f) for f in range(11)]
    pool = RayMergeEvaluator(mixed, num_workers=2, num_cpus=1, max_restarts=0)
    sched = plan.scheduler(registry.create("random", 3, seed=0, popsize=4, maximize=True, bounds=(-1.5, 1.5)))
    assert sched.rungs == (2, 5, 10)
    remote, here = PrefixScorer(plan, pool), PrefixScorer(plan, local)
    full: dict[int, tuple[np.ndarray, float]] = {}
    counts: set[int] = set()
    while sched.inner.n_evals < 4:
        batch = sched.ask()
        measured, one_process = remote.measure(batch, "auto"), here.measure(batch, "rebuild")
        assert np.array_equal(measured.correct, one_process.correct)  # row by row, both tasks
        counts |= {int(row[1]) for row in measured.correct}
        values = measured.values(mixed.weights)
        for c, x, f, v in zip(batch.candidate, batch.x, batch.fidelity, values):
            if f == plan.full:
                full[int(c)] = (x, v)
        sched.tell(batch.x, values, fidelity=batch.fidelity)
    pool.shutdown()
    assert len(full) == 1 and len(counts) > 1  # lm-eval counts differ between rows, so a mix-up would show
    xs = np.array([x for x, _ in full.values()])
    assert [v for _, v in full.values()] == local.evaluate_batch(xs, path="rebuild")  # the harness's full score
