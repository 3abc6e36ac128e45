"""Multi-fidelity scoring of lm-eval seen tasks (issue 30, item 2): prefixes of a seeded permutation of a task's
pool of documents, promotions scoring only the new documents with ``simple_evaluate(samples=...)``, tokens counted
from the harness's requests, what cannot be extended refused, and a mixed JSONL + lm-eval run that journals,
reports and resumes as a JSONL one does. Real lm-eval on local task files, real tiny models; nothing downloaded."""

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

from llm_merge.demo.cpu_demo import char_tokenizer  # noqa: E402
from llm_merge.model.fitness import MergeFitness  # noqa: E402
from llm_merge.run.config import ConfigError, load_config  # noqa: E402
from llm_merge.run.pipeline import run_merge  # noqa: E402
from llm_merge.run.schema import FidelitySpec  # noqa: E402
from llm_merge.run.search import PrefixPlan, PrefixScorer, permutation  # noqa: E402
from llm_merge.tasks.jsonl import Task, TaskError, example_tokens  # noqa: E402
from llm_merge.tasks.lm_eval_tasks import LmEvalTask, harness_max_length  # noqa: E402

from evogm_opt import registry  # noqa: E402
from evogm_opt.fidelity import FidelityScheduler  # noqa: E402
from tests.test_llm_merge_experts import tiny_qwen  # noqa: E402
from tests.test_llm_merge_fidelity import Crash, crash_on_call  # noqa: E402
from tests.test_llm_merge_lm_eval import lm_eval_task_folder  # noqa: E402
from tests.test_llm_merge_run import config_dict, log_without_timing, make_workspace  # noqa: E402


def _yaml_task(folder: Path, task: str, data: str, **settings) -> None:
    """An lm-eval YAML over ``data`` (a JSONL file of ``folder``), as a user would write one."""
    config = {
        "task": task,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"validation": str(folder / data)}},
        "validation_split": "validation",
        **settings,
    }
    (folder / f"{task}.yaml").write_text(yaml.safe_dump(config))


def _generation_task(folder: Path, task: str, generation: dict) -> None:
    """A generation task over ``gen.jsonl`` scored by exact match, with these generation settings."""
    _yaml_task(
        folder,
        task,
        "gen.jsonl",
        output_type="generate_until",
        doc_to_text="{{prompt}}",
        doc_to_target="{{answer}}",
        generation_kwargs=generation,
        metric_list=[{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
    )


MC = {"output_type": "multiple_choice", "doc_to_text": "{{prompt}}", "doc_to_choice": "{{options}}"}


def task_folder(root: Path) -> Path:
    """The lm-eval test module's two multiple-choice tasks, plus: a generation task (exact match), the same
    multiple-choice documents read with ``mcc`` (a corpus-level metric), and with a per-document ``acc`` of 0.5
    (a mean, but not of 0/1 scores: what only scoring can find), a group of the first two tasks, and a task
    whose data file is missing."""
    folder = lm_eval_task_folder(root)
    gen = [{"prompt": f"{i}?", "answer": str(i % 3)} for i in range(5)]
    (folder / "gen.jsonl").write_text("\n".join(map(json.dumps, gen)))
    generation = {"until": ["\n"], "max_gen_toks": 3, "do_sample": False}
    _generation_task(folder, "tiny_gen", generation)
    mc = {**MC, "doc_to_target": "{{answer}}", "target_delimiter": ""}
    _yaml_task(folder, "tiny_mcc", "val.jsonl", **mc, metric_list=[{"metric": "mcc"}])
    (folder / "halves.py").write_text('def process_results(doc, results):\n    return {"acc": 0.5}\n')
    _yaml_task(folder, "tiny_half", "val.jsonl", **mc, metric_list=[{"metric": "acc", "aggregation": "mean"}])
    half = folder / "tiny_half.yaml"
    half.write_text(half.read_text() + "process_results: !function halves.process_results\n")
    (folder / "tiny_both.yaml").write_text(yaml.safe_dump({"group": "tiny_both", "task": ["tiny_val", "tiny_test"]}))
    _yaml_task(folder, "tiny_gone", "gone.jsonl", **mc)  # its data file does not exist
    # few-shot: the first two documents as examples (first_n: the same for a document whoever is scored with
    # it), and a YAML default of 2 shots with the random sampler (which a run may set to 0)
    shots = {**MC, "doc_to_target": "{{answer}}", "target_delimiter": "", "fewshot_split": "validation"}
    shots = {**shots, "num_fewshot": 2, "metric_list": [{"metric": "acc", "aggregation": "mean"}]}  # tiny_val's
    _yaml_task(folder, "tiny_first2", "val.jsonl", **shots, fewshot_config={"sampler": "first_n"})
    _yaml_task(folder, "tiny_shot2", "val.jsonl", **shots)
    warm = {**generation, "temperature": 0.7}
    warm.pop("do_sample")  # sampling by temperature alone: lm-eval turns it into do_sample
    _generation_task(folder, "tiny_warm", warm)
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return task_folder(tmp_path_factory.mktemp("lm_eval_fidelity"))


def experts(root: Path) -> list:
    from llm_merge import load_lora_expert

    from tests.test_llm_merge_experts import base_shapes, make_adapter

    shapes = base_shapes(tiny_qwen())
    return [load_lora_expert(make_adapter(root / f"e{i}", seed=i + 1), shapes) for i in range(2)]


# ---------------------------------------------------------------------------------------------- the pool, tokens


def test_the_pool_is_the_first_limit_documents_in_the_seeded_order_and_tokens_follow_the_harness(folder):
    from lm_eval.models.huggingface import HFLM

    tok = char_tokenizer()
    mc = LmEvalTask("tiny", "tiny_val", include_path=str(folder), limit=6)
    gen = LmEvalTask("gen", "tiny_gen", metric="exact_match,none", include_path=str(folder))
    assert mc.fidelity_problem() is None and gen.fidelity_problem() is None
    plan = PrefixPlan([mc, gen], FidelitySpec(min_examples=2, eta=2, seed=4), tok, seq2seq=False)
    assert plan.sizes == [6, 5] and LmEvalTask("x", "tiny_val", include_path=str(folder)).pool_size() == 8
    assert np.array_equal(plan.orders[0], permutation(6, 4, "tiny"))  # the JSONL tasks' permutation
    assert sorted(plan.orders[1].tolist()) == list(range(5))
    # a multiple-choice document costs what example_tokens charges its JSONL twin: prompt × options + options
    twin = Task.from_jsonl(folder / "val.jsonl")
    assert mc.document_tokens(tok, False) == example_tokens(tok, twin, False)[:6]
    assert gen.document_tokens(tok, False) == [len(f"{i}?") + 3 for i in range(5)]  # the context, max_gen_toks
    # and what the harness's own encoding of the requests gives (lm-eval's HF backend, its defaults)
    lm = HFLM(pretrained=tiny_qwen(), tokenizer=tok, batch_size=4, backend="causal")
    for task in (mc, gen):
        counts = [0] * task.pool_size()
        for request in task.harness_task().instances:
            context, rest = request.args
            if request.request_type == "loglikelihood":
                counts[request.doc_id] += sum(map(len, lm._encode_pair(context, rest)))
            else:
                counts[request.doc_id] += len(lm.tok_encode(context)) + rest["max_gen_toks"]
        assert task.document_tokens(tok, False) == counts
    assert plan.full_tokens() == sum(example_tokens(tok, twin, False)[:6]) + sum(len(f"{i}?") + 3 for i in range(5))


def harness_costs(lm, task: LmEvalTask, seq2seq: bool) -> list[int]:
    """What lm-eval's HF backend actually feeds the model for each document of ``task``, request by request (one
    at a time, so nothing is padded): a loglikelihood call's input plus its last, scored token (causal) or its
    encoder input plus its labels (encoder–decoder); a generation's context plus its max_gen_toks."""
    seen: list[int] = []
    call, generate = lm._model_call, lm._model_generate

    def spy_call(inps, attn_mask=None, labels=None):
        seen.append(inps.shape[1] + (labels.shape[1] if seq2seq else 1))
        return call(inps, attn_mask, labels)

    def spy_generate(context, max_length, stop, **kwargs):
        seen.append(context.shape[1])
        return generate(context, max_length, stop, **kwargs)

    lm._model_call, lm._model_generate = spy_call, spy_generate
    costs = [0] * task.pool_size()
    for request in task.harness_task().instances:
        seen.clear()
        getattr(lm, request.request_type)([request])
        extra = request.args[1]["max_gen_toks"] if request.request_type == "generate_until" else 0
        costs[request.doc_id] += request.repeats * (seen[0] + extra)
    return costs


def test_tokens_are_what_the_harness_feeds_a_model_shorter_than_the_prompts(folder, tmp_path):
    """lm-eval's HF backend truncates requests from the left to the model's length L; the plan counts what it
    keeps (measured by spying on the model calls), and refuses, naming the task, a generation it would refuse."""
    from lm_eval.models.huggingface import HFLM

    from tests.test_llm_merge_seq2seq import seq2seq_tokenizer, tiny_t5

    tok, model = char_tokenizer(), tiny_qwen()
    model.config.max_position_embeddings = 4  # some requests are longer than this
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=1, backend="causal", logits_cache=False)
    assert harness_max_length(model.config, tok) == lm.max_length == 4
    mc = LmEvalTask("tiny", "tiny_val", include_path=str(folder), limit=6)
    gen = LmEvalTask("gen", "tiny_gen", metric="exact_match,none", include_path=str(folder))  # max_gen_toks 3
    for task in (mc, gen):
        counted = task.document_tokens(tok, False, lm.max_length)  # builds the harness's requests
        assert counted == harness_costs(lm, task, False)
        assert counted != task.document_tokens(tok, False)  # the cap bites on both
    fitness = MergeFitness(model, tok, experts(tmp_path), [mc], batch_size=4)
    spec = FidelitySpec(min_examples=2, eta=2, seed=4)
    assert PrefixPlan.of(fitness, spec).full_tokens() == sum(mc.document_tokens(tok, False, 4))
    with pytest.raises(TaskError, match=r"lm-eval task 'tiny_gen' of 'gen', document 0: max_gen_toks 3 is not below"):
        gen.document_tokens(tok, False, 3)  # the harness: "requested max tokens to generate (3) must be less …"
    # an encoder–decoder: the context cut to L, the target whole
    t5_tok, t5 = seq2seq_tokenizer(), tiny_t5()
    t5.config.n_positions = 4
    lm = HFLM(pretrained=t5, tokenizer=t5_tok, batch_size=1, backend="seq2seq", logits_cache=False)
    assert harness_max_length(t5.config, t5_tok) == lm.max_length == 4
    seq2seq_task = LmEvalTask("tiny", "tiny_val", include_path=str(folder), limit=6)
    counted = seq2seq_task.document_tokens(t5_tok, True, 4)
    assert counted == harness_costs(lm, seq2seq_task, True) and counted != seq2seq_task.document_tokens(t5_tok, True)


def test_the_length_without_lm_evals_resolver_is_what_older_harness_versions_used(monkeypatch):
    import lm_eval.models.utils as utils

    monkeypatch.delattr(utils, "resolve_max_length")
    tok = char_tokenizer()
    config = tiny_qwen().config
    assert harness_max_length(config, tok) == config.max_position_embeddings == 64
    assert harness_max_length(object(), tok) == 2048  # no length in the config; the tokenizer's is "unset"
    tok.model_max_length = 77
    assert harness_max_length(object(), tok) == 77


def test_an_encoder_decoder_counts_the_context_with_its_special_tokens_as_the_harness_does(folder):
    from lm_eval.models.huggingface import HFLM

    from tests.test_llm_merge_seq2seq import seq2seq_tokenizer, tiny_t5

    tok = seq2seq_tokenizer()
    task = LmEvalTask("tiny", "tiny_val", include_path=str(folder))
    lm = HFLM(pretrained=tiny_t5(), tokenizer=tok, batch_size=4, backend="seq2seq")
    counts = task.document_tokens(tok, True)
    expected = [0] * len(counts)
    for request in task.harness_task().instances:
        expected[request.doc_id] += sum(map(len, lm._encode_pair(*request.args)))
    assert counts == expected
    plain = task.document_tokens(char_tokenizer(), False)  # the same characters, no </s> appended
    assert counts == [c + 2 for c in plain]  # each of a document's two option rows: its context's </s>


def test_few_shot_prompts_that_do_not_depend_on_the_other_documents_are_scored_and_counted(folder):
    """first_n few-shot: accepted, its tokens the harness's own encoding of the few-shot prompts, and a document's
    score the same whichever documents are scored with it. A YAML's 2 shots set to 0 by the run: the 0-shot
    requests are the ones counted (as simple_evaluate scores them), not the YAML's."""
    from lm_eval.models.huggingface import HFLM

    tok, model = char_tokenizer(), tiny_qwen()
    first = LmEvalTask("first", "tiny_first2", include_path=str(folder))
    assert first.shots() == 2 and first.fewshot_sampler() == "first_n" and first.fidelity_problem() is None
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=4, backend="causal")
    counted = first.document_tokens(tok, False)  # builds the harness's requests, few-shot prompts included
    expected = [0] * first.pool_size()
    for request in first.harness_task().instances:
        expected[request.doc_id] += sum(map(len, lm._encode_pair(*request.args)))
    zero_shot = LmEvalTask("plain", "tiny_val", include_path=str(folder)).document_tokens(tok, False)
    assert counted == expected and all(a > b for a, b in zip(expected, zero_shot))
    together = first.document_scores(model, tok, 4, range(8))
    apart = {**first.document_scores(model, tok, 4, [5, 1]), **first.document_scores(model, tok, 4, [0, 2, 3, 4, 6, 7])}
    assert together == apart and 0 < sum(together.values()) < 8
    overridden = LmEvalTask("zero", "tiny_shot2", include_path=str(folder), num_fewshot=0)
    assert overridden.shots() == 0 and overridden.fidelity_problem() is None
    assert overridden.document_tokens(tok, False) == zero_shot


# ---------------------------------------------------------------------------------------------- promotions


def test_a_promoted_lm_eval_score_equals_the_harness_score_on_the_whole_pool(folder, tmp_path):
    from llm_merge.tasks.jsonl import Task as JsonlTask

    tok = char_tokenizer()
    lm_task = LmEvalTask("tiny", "tiny_val", include_path=str(folder), limit=6)
    jsonl = JsonlTask.from_jsonl(folder / "test.jsonl", "jsonl")  # a JSONL seen task beside it
    fitness = MergeFitness(tiny_qwen(), tok, experts(tmp_path), [jsonl, lm_task], weights=[1.0, 2.0], batch_size=4)
    plan = PrefixPlan.of(fitness, FidelitySpec(min_examples=1, eta=2, seed=0))
    inner = registry.create("random", 2, seed=1, popsize=4, maximize=True, bounds=(-2.0, 2.0))
    sched = plan.scheduler(inner)
    assert sched.rungs == (3, 6, 12)  # two promotions: counts extended twice
    scorer, full, measured_counts, xs = PrefixScorer(plan, fitness), {}, [], {}
    while sched.inner.n_evals < 4:
        batch = sched.ask()
        measured = scorer.measure(batch, "rebuild")
        values = [fitness.combine(s) for s in measured.scores()]
        for c, x, f, row, s, v in zip(
            batch.candidate, batch.x, batch.fidelity, measured.correct, measured.scores(), values
        ):
            xs[int(c)] = x
            measured_counts.append((int(c), measured.examples[1], int(row[1])))
            if f == plan.full:
                full[int(c)] = (x, s, v)
        sched.tell(batch.x, values, fidelity=batch.fidelity)
    assert len(full) == 1 and {n for _, n, _ in measured_counts} == {1, 3, 6}  # through both promotions
    # each candidate's documents scored once, all together (samples= over the whole pool, in the seeded order)
    order = [int(i) for i in plan.orders[1]]
    truth = {}
    for c, x in xs.items():
        fitness.apply(x)
        truth[c] = lm_task.document_scores(fitness.model, tok, 4, order)
    assert any(0 < sum(t.values()) < 6 for t in truth.values())  # mixed 0s and 1s: a wrong document would show
    for c, n, count in measured_counts:  # a prefix's count: the sum of its documents' scores, rung after rung
        assert count == sum(truth[c][d] for d in order[:n]), (c, n)
    for c, (x, scores, value) in full.items():
        fitness.apply(x)
        whole = lm_task.evaluate(fitness.model, tok, 4)  # limit 6: lm-eval's own score of the whole pool
        assert scores[1] == whole == sum(truth[c].values()) / 6
        assert scores == fitness.task_scores(x) and value == fitness.evaluate(x)


def test_what_cannot_be_extended_is_refused_in_one_line_before_the_model_loads(folder, tmp_path):
    lm = str(folder)  # one TaskManager per include_path and process: the same path everywhere here
    tasks = {"seen": [{"name": "cola", "val": "tiny_mcc", "lm_eval": {"metric": "mcc,none", "include_path": lm}}]}
    tiny_qwen().save_pretrained(tmp_path / "base")
    char_tokenizer().save_pretrained(tmp_path / "base")
    (tmp_path / "e0").mkdir()
    base = {"base": "base", "experts": ["e0"], "output": "run", "fidelity": {"min_examples": 2}}

    def refusal(**task) -> str:
        spec = {**tasks["seen"][0], **task}
        (tmp_path / "c.yaml").write_text(yaml.safe_dump({**base, "tasks": {"seen": [spec]}}))
        with pytest.raises(ConfigError) as info:
            load_config(tmp_path / "c.yaml")
        assert "\n" not in str(info.value) and not (tmp_path / "run").exists()
        return str(info.value)

    message = refusal()
    assert "'tiny_mcc' of 'cola', metric 'mcc,none': aggregated by matthews_corrcoef" in message
    message = refusal(val="tiny_val", lm_eval={"num_fewshot": 2, "include_path": lm})
    assert "'tiny_val' of 'cola', metric 'acc,none': 2-shot with the 'default' sampler" in message
    message = refusal(val="tiny_shot2", lm_eval={"include_path": lm})  # the YAML's own 2 shots
    assert "'tiny_shot2' of 'cola', metric 'acc,none': 2-shot with the 'default' sampler" in message
    message = refusal(val="tiny_warm", lm_eval={"metric": "exact_match,none", "include_path": lm})
    assert "generation samples (do_sample, or a temperature above 0)" in message
    message = refusal(val="tiny_val", lm_eval={"metric": "acc,strict-match", "include_path": lm})
    assert "metric 'acc,strict-match': the task has no filter 'strict-match' (it has ['none'])" in message
    message = refusal(val="tiny_val", lm_eval={"metric": "f1,none", "include_path": lm})
    assert "'tiny_val' of 'cola' has no metric 'f1' (it has ['acc'])" in message
    message = refusal(val="tiny_both", lm_eval={"include_path": lm})
    assert "'tiny_both' of 'cola' is a group or tag of 2 tasks" in message
    message = refusal(val="tiny_gone", lm_eval={"include_path": lm})
    assert message.startswith("fidelity: lm-eval task 'tiny_gone' of 'cola' could not be loaded to check it (")
    accepted = {"name": "cola", "val": "tiny_val", "lm_eval": {"include_path": lm}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({**base, "tasks": {"seen": [accepted]}}))
    cfg = load_config(tmp_path / "c.yaml")  # the default metric, acc: a mean of per-document 0/1 scores
    assert cfg.fidelity is not None and cfg.seen[0].lm_eval.metric is None  # the default, acc


def test_a_per_document_value_that_is_not_0_or_1_is_refused_when_scored(folder):
    half = LmEvalTask("half", "tiny_half", include_path=str(folder))
    assert half.fidelity_problem() is None  # a mean, so only its values can tell
    with pytest.raises(TaskError, match=r"gave document \d a 'acc,none' of 0\.5, not 0 or 1"):
        half.correct(tiny_qwen(), char_tokenizer(), 4, [0, 3])
    whole = LmEvalTask("whole", "tiny_val", include_path=str(folder))
    assert whole.document_scores(tiny_qwen(), char_tokenizer(), 4, []) == {}  # nothing to score: no harness call
    scores = whole.document_scores(tiny_qwen(), char_tokenizer(), 4, [5, 1, 3])
    assert sorted(scores) == [1, 3, 5] and set(scores.values()) <= {0, 1}


# ---------------------------------------------------------------------------------------------- the run


def write_mc(folder: Path) -> None:
    """A JSONL seen task of 12 multiple-choice examples beside the lm-eval one."""
    rows = [
        {"prompt": f"{i % 10}+{i // 10}=", "options": [str(i % 7), str((i + 3) % 7)], "answer": i % 2}
        for i in range(12)
    ]
    (folder / "mc.jsonl").write_text("\n".join(map(json.dumps, rows)))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, folder) -> Path:
    return make_workspace(tmp_path_factory.mktemp("lm_eval_fidelity_run"), write_mc)


FIDELITY = {"min_examples": 2, "eta": 3, "seed": 7}


def seen(folder: Path) -> list[dict]:
    """The JSONL task and the lm-eval one (its first 6 documents, weight 2)."""
    lm_eval = {"include_path": str(folder), "limit": 6}
    return [
        {"name": "mc", "val": "val/mc.jsonl", "test": "test/mc.jsonl"},
        {"name": "tiny", "val": "tiny_val", "test": "tiny_test", "weight": 2.0, "lm_eval": lm_eval},
    ]


def write(root: Path, name: str, folder: Path, **overrides) -> Path:
    settings = {
        "tasks": {"seen": seen(folder)},
        "baselines": False,
        "save_model": False,
        "fidelity": FIDELITY,
        "optimizer": {"name": "cmaes", "budget": 8, "seed": 2, "popsize": 4},
        **overrides,
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config_dict(output=f"runs/{name}", **settings)))
    return path


def quiet(path: Path):
    return run_merge(load_config(path), progress=False, say=lambda *a: None)


def test_a_mixed_jsonl_and_lm_eval_run_journals_counts_tokens_and_a_full_score(workspace, folder):
    result = quiet(write(workspace, "mixed", folder))
    lines = [e for e in log_without_timing(workspace / "runs" / "mixed") if "evaluation" in e]
    assert {e["fidelity"] for e in lines} == {6, 18} and sum(e["rung"] == 0 for e in lines) == 8
    for e in lines:  # each task's score is its correct count over its prefix, the value their weighted mean
        assert e["tasks"] == {n: e["correct"][n] / e["examples"][n] for n in ("mc", "tiny")}
        assert e["score"] == pytest.approx((e["tasks"]["mc"] + 2 * e["tasks"]["tiny"]) / 3, abs=1e-12)
    assert {e["examples"]["tiny"] for e in lines} == {2, 6}  # the lm-eval pool is its first 6 documents
    assert len({e["correct"]["tiny"] for e in lines if e["rung"] == 0}) > 1
    res = result.results
    tok = char_tokenizer()
    twin = Task.from_jsonl(folder / "val.jsonl")  # the lm-eval task's documents as a JSONL file
    full = sum(example_tokens(tok, Task.from_jsonl(workspace / "val" / "mc.jsonl"), False))
    full += sum(example_tokens(tok, twin, False)[:6])
    assert res["fidelity"]["tokens_per_full_measurement"] == full
    assert res["tokens_spent"] == lines[-1]["tokens_spent"] == sum(e["tokens"] for e in lines)
    assert res["tokens_spent"] < res["tokens_at_full_fidelity"] == 8 * full
    best = res["best"]
    assert best["fidelity"] == 18 and best["score"] == max(e["score"] for e in lines if e["fidelity"] == 18)
    (label,) = res["rows_fidelity"]
    assert res["rows"][label]["tiny/val"] == best["tasks"]["tiny"]  # the harness's score of the whole pool
    assert res["rows"][label]["mc/val"] == best["tasks"]["mc"]


def test_a_mixed_run_killed_mid_promotion_resumes_exactly(workspace, folder, monkeypatch):
    quiet(write(workspace, "straight", folder))
    path = write(workspace, "crashed", folder)
    # one call per rung: generation 2's promotion, its first rung checkpointed
    crash_on_call(monkeypatch, MergeFitness, "correct_counts", 4, "killed while scoring")
    with pytest.raises(Crash):
        quiet(path)
    monkeypatch.undo()
    crashed, straight = workspace / "runs" / "crashed", workspace / "runs" / "straight"
    assert FidelityScheduler.load(crashed / "checkpoint.evogm").in_flight > 0  # killed mid-promotion
    quiet(path)
    assert log_without_timing(crashed) == log_without_timing(straight)
    a, b = (json.loads((d / "results.json").read_text()) for d in (straight, crashed))
    a["best"].pop("elapsed_s"), b["best"].pop("elapsed_s")
    for key in ("best", "rows", "tokens_spent", "examples_spent", "measurements", "n_evals"):
        assert a[key] == b[key], key
