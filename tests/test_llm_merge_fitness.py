"""MergeFitness: in-place rebuilds equal the merges they stand for; tasks load, validate and score correctly."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the llm_merge adapter needs the `llm` extra")
peft = pytest.importorskip("peft", reason="the llm_merge adapter needs the `llm` extra")

from llm_merge import get_method, load_lora_expert  # noqa: E402

# the demo's character-level tokenizer: real (tokenizers-backed), built locally, nothing downloaded
from llm_merge.demo.cpu_demo import CHARS, char_tokenizer  # noqa: E402
from llm_merge.model.fitness import MergeFitness  # noqa: E402
from llm_merge.tasks.jsonl import Task, TaskError, normalize, score  # noqa: E402

from tests.test_llm_merge_experts import base_shapes, make_adapter, tiny_qwen  # noqa: E402


@pytest.fixture(scope="module")
def experts(tmp_path_factory):
    root = tmp_path_factory.mktemp("experts")
    shapes = base_shapes(tiny_qwen())
    return [load_lora_expert(make_adapter(root / f"e{i}", seed=i + 1), shapes) for i in range(3)]


def write_tasks(folder: Path) -> list[Task]:
    mc = [{"prompt": f"{i}+{i}=", "options": [str(2 * i), str(2 * i + 1)], "answer": 0} for i in range(4)]
    gen = [{"prompt": f"{i}?", "answer": str(i)} for i in range(3)]
    (folder / "mc.jsonl").write_text("\n".join(map(json.dumps, mc)))
    (folder / "gen.jsonl").write_text("\n".join(map(json.dumps, gen)))
    return [Task.from_jsonl(folder / "mc.jsonl"), Task.from_jsonl(folder / "gen.jsonl", max_new_tokens=3)]


def test_factored_task_arithmetic_rebuild_equals_the_dense_merge(experts, tmp_path):
    model = tiny_qwen()
    pristine = {k: v.clone() for k, v in model.state_dict().items()}
    fitness = MergeFitness(model, char_tokenizer(), experts, write_tasks(tmp_path))
    assert fitness._factored
    lam = np.array([0.7, -0.4, 0.2])
    fitness.apply(lam)
    ta = get_method("task_arithmetic")
    for name, param in fitness._params.items():
        deltas = [e.delta(name) if e.delta(name) is not None else torch.zeros_like(param) for e in experts]
        expected = ta.merge(pristine[name], deltas, torch.tensor(lam, dtype=torch.float32))
        torch.testing.assert_close(param.detach(), expected, atol=1e-6, rtol=1e-5)
    fitness.apply(np.zeros(3))
    for name, param in fitness._params.items():
        torch.testing.assert_close(param.detach(), pristine[name], atol=1e-7, rtol=0)
    fitness.apply(lam)
    fitness.restore()
    assert all(torch.equal(model.state_dict()[k], pristine[k]) for k in pristine)
    assert all(torch.equal(fitness._pristine[k], pristine[k]) for k in fitness._pristine)  # cache untouched


def test_nonlinear_method_rebuild_equals_the_method(experts, tmp_path):
    model = tiny_qwen()
    pristine = {k: v.clone() for k, v in model.state_dict().items()}
    fitness = MergeFitness(model, char_tokenizer(), experts, write_tasks(tmp_path), method="ties")
    assert not fitness._factored
    lam = np.array([0.5, 1.0, -0.3])
    fitness.apply(lam)
    ties = get_method("ties")
    name = "model.layers.1.self_attn.v_proj.weight"
    deltas = [e.delta(name) for e in experts]
    expected = ties.merge(pristine[name], ties.prepare(name, deltas), torch.tensor(lam, dtype=torch.float32))
    torch.testing.assert_close(fitness._params[name].detach(), expected, atol=1e-6, rtol=1e-5)


def test_evaluate_is_the_weighted_mean_of_task_scores_and_refuses_bad_lambda(experts, tmp_path):
    tasks = write_tasks(tmp_path)
    fitness = MergeFitness(tiny_qwen(), char_tokenizer(), experts, tasks, weights=[3.0, 1.0])
    lam = [0.1, 0.2, 0.3]
    s = fitness.task_scores(lam)
    assert all(0.0 <= v <= 1.0 for v in s)
    assert fitness.evaluate(lam) == pytest.approx((3 * s[0] + s[1]) / 4)
    assert fitness.evaluate_batch(np.array([lam, lam])) == [fitness.evaluate(lam)] * 2
    with pytest.raises(ValueError, match="finite"):
        fitness.evaluate([0.1, np.nan, 0.0])
    with pytest.raises(ValueError, match="3 finite"):
        fitness.evaluate([0.1, 0.2])


@torch.no_grad()
def option_loglikelihoods(model, tokenizer, prompt: str, options: tuple[str, ...]) -> torch.Tensor:
    """Σ log p(option tokens | prompt) for each option, one prompt at a time: the reference the batched scorer of
    llm_merge.tasks.jsonl must agree with."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    seqs = [prompt_ids + tokenizer(o, add_special_tokens=False)["input_ids"] for o in options]
    width = max(map(len, seqs))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    ids = torch.full((len(seqs), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, device=device)
        mask[i, : len(s)] = 1
    logprobs = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
    scores = torch.zeros(len(seqs), device=device)
    for i, s in enumerate(seqs):
        for t in range(len(prompt_ids), len(s)):
            scores[i] += logprobs[i, t - 1, s[t]]
    return scores.cpu()


@torch.no_grad()
def greedy_completion(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    """Greedy decoding of one prompt: the reference for the batched generation scorer."""
    device = next(model.parameters()).device
    ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]], device=device)
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


class CraftedLM(torch.nn.Module):
    """Logits that always prefer token ``favourite`` (tests the scoring arithmetic, not a model)."""

    def __init__(self, vocab: int, favourite: int) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(vocab))
        with torch.no_grad():
            self.bias[favourite] = 5.0

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.bias.expand(*input_ids.shape, -1))


def test_multiple_choice_scoring_on_crafted_logits(tmp_path):
    tok = char_tokenizer()
    model = CraftedLM(len(CHARS) + 2, tok.convert_tokens_to_ids("7"))
    ll = option_loglikelihoods(model, tok, "3+4=", ("7", "8", "77"))
    logp7 = torch.log_softmax(model.bias, 0)[tok.convert_tokens_to_ids("7")]
    torch.testing.assert_close(
        ll, torch.stack([logp7, torch.log_softmax(model.bias, 0)[tok.convert_tokens_to_ids("8")], 2 * logp7])
    )
    path = tmp_path / "t.jsonl"
    path.write_text(
        json.dumps({"prompt": "3+4=", "options": ["8", "7"], "answer": 1})
        + "\n"
        + json.dumps({"prompt": "1+1=", "options": ["7", "2"], "answer": 1})
    )
    assert score(model, tok, Task.from_jsonl(path)) == 0.5


def test_task_schema_errors_are_clear(tmp_path):
    bad = {
        "nojson.jsonl": "{not json",
        "noprompt.jsonl": json.dumps({"answer": "x"}),
        "badopts.jsonl": json.dumps({"prompt": "p", "options": ["only"], "answer": 0}),
        "badanswer.jsonl": json.dumps({"prompt": "p", "options": ["a", "b"], "answer": 2}),
        "mixed.jsonl": json.dumps({"prompt": "p", "answer": "x"})
        + "\n"
        + json.dumps({"prompt": "p", "options": ["a", "b"], "answer": 0}),
        "empty.jsonl": "\n",
    }
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(TaskError):
            Task.from_jsonl(tmp_path / name)
    with pytest.raises(TaskError, match="no such"):
        Task.from_jsonl(tmp_path / "missing.jsonl")
    assert normalize("  Hello\n  World ") == "hello world"


def test_batched_scoring_agrees_with_one_example_at_a_time(tmp_path):
    model, tok = tiny_qwen(3, vocab=len(CHARS) + 2), char_tokenizer()
    mc, gen = write_tasks(tmp_path)
    one_by_one = sum(
        int(torch.argmax(option_loglikelihoods(model, tok, ex.prompt, ex.options))) == ex.answer for ex in mc.examples
    )
    assert score(model, tok, mc, batch_size=3) == one_by_one / len(mc.examples)
    expected = sum(
        normalize(greedy_completion(model, tok, ex.prompt, 3).split("\n")[0]) == normalize(ex.answer)
        for ex in gen.examples
    )
    assert score(model, tok, gen, batch_size=2) == expected / len(gen.examples)


def test_demo_runs_end_to_end_and_reports_measured_numbers(tmp_path):
    from llm_merge.demo.cpu_demo import run_demo

    result = run_demo(tmp_path / "demo", budget_per_dim=3, quiet=True, expert_steps=60)
    rows = result.results["rows"]
    assert {"base", "uniform TA (λ = 1/N)", "evogm λ*", "cmaes λ*", "pso-merging λ*"} <= set(rows)
    assert all(0.0 <= v <= 1.0 for row in rows.values() for v in row.values())
    assert "| model | seen val | seen test | unseen val | unseen test |" in result.table
    assert "best search" in result.table and "◀" in result.table  # the winning search is named and marked
    assert json.loads((tmp_path / "demo" / "results.json").read_text())["budget"] == 12
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "demo" / "base")  # an HF folder
    assert loaded.config.model_type == "qwen2"
    assert (tmp_path / "demo" / "runs" / "evogm" / "merged" / "model.safetensors").is_file()
    assert (tmp_path / "demo" / "config-cmaes.yaml").is_file()
    verdict = result.results["verdict"]
    assert verdict["beats_both"] == (verdict["merged"] > max(verdict["best_expert_score"], verdict["uniform"]))
    assert ("Seed 0: the EvoGM merge" in result.table) and ("did NOT beat" in result.table) != verdict["beats_both"]
    # the multi-fidelity search: its row, and tokens counted against the full-fidelity EvoGM search's
    assert "evogm + fidelity λ*" in rows
    cost = result.results["fidelity"]
    full = json.loads((tmp_path / "demo" / "runs" / "evogm" / "results.json").read_text())
    from llm_merge.demo.cpu_demo import SEEN, char_tokenizer
    from llm_merge.tasks.jsonl import Task, example_tokens

    tok = char_tokenizer()  # counted here from the task files, not with the demo's own helper
    tasks = [Task.from_jsonl(tmp_path / "demo" / "tasks" / f"{n}-val.jsonl", max_new_tokens=4) for n in SEEN]
    per_candidate = sum(sum(example_tokens(tok, t, False)) for t in tasks)
    assert cost["full_fidelity_tokens"] == full["n_evals"] * per_candidate == 12 * per_candidate
    assert 0 < cost["tokens_spent"] < cost["full_fidelity_tokens"]
    assert cost["candidates"] == 18  # FIDELITY_CANDIDATES (1.5) × the 12 evaluations of the other searches
    logged = (tmp_path / "demo" / "runs" / "evogm-fidelity" / "log.jsonl").read_text().splitlines()
    assert json.loads(logged[-1])["tokens_spent"] == cost["tokens_spent"]
    assert f"for {cost['tokens_spent']} validation tokens" in result.table


def test_merge_verdict_needs_both_the_best_expert_and_uniform_ta_beaten():
    from llm_merge.demo.cpu_demo import SEEN, UNIFORM, merge_verdict

    def row(score):
        return {f"{n}/test": score for n in SEEN}

    rows = {"expert a": row(0.6), "expert b": row(0.7), UNIFORM: row(0.5), "evogm λ*": row(0.8)}
    v = merge_verdict(rows)
    assert v["beats_both"] and v["best_expert"] == "b" and v["best_expert_score"] == 0.7
    assert not merge_verdict({**rows, "evogm λ*": row(0.7)})["beats_both"]  # a tie with the best expert is no win
    assert not merge_verdict({**rows, UNIFORM: row(0.9)})["beats_both"]


def test_demo_figures_table_counts_the_seeds_evogm_wins(monkeypatch):
    from types import SimpleNamespace

    from llm_merge.demo.cpu_demo import FIDELITY_ROW, SEARCHES, SEEN, UNIFORM
    from llm_merge.demo.figures import block

    def result(merged, cheap, tokens):
        rows = {"expert a": {f"{n}/test": 0.6 for n in SEEN}, UNIFORM: {f"{n}/test": 0.5 for n in SEEN}}
        rows |= {f"{s} λ*": {f"{n}/test": merged for n in SEEN} for s in SEARCHES}
        rows[FIDELITY_ROW] = {f"{n}/test": cheap for n in SEEN}
        cost = {"tokens_spent": tokens, "full_fidelity_tokens": 1000}
        return SimpleNamespace(results={"rows": rows, "fidelity": cost}, table="(table)", seconds=1.0)

    text = block({0: result(0.7, 0.7, 300), 1: result(0.55, 0.6, 400), 2: result(0.65, 0.5, 500)}, SEARCHES)
    assert "EvoGM beats every single expert and uniform TA in 2/3 seeds." in text
    assert "| 1 | 0.500 | 0.600 | 0.550 | 0.550 | 0.550 | 0.600 | 40% | no | 1 s |" in text
    assert "| mean ± sd | 0.500 ± 0.000 | 0.600 ± 0.000 | 0.633 ± 0.076 |" in text
    assert "| 0.600 ± 0.100 | 40% | | |" in text
    assert "accuracy is 0.600 ± 0.100 against 0.633 ± 0.076 at full fidelity, for 30%–50% of its validation" in text
