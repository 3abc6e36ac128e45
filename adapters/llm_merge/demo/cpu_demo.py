"""``evogm-opt merge --demo``: LLM expert merging end to end on a CPU, nothing downloaded.

1. A tiny Qwen2-config model with a character tokenizer gets a short real pre-training on a synthetic corpus
   of every skill that answers half of each skill's table correctly and mostly wrongly elsewhere
   (``skills``), so the base partly knows every skill.
2. Four LoRA experts (peft, rank 4) are fine-tuned gently (low learning rate, few steps) on one skill each: digit
   +1, a multiple-choice "next letter", mirroring k…t and cycling u…z; half of each batch replays the base's own
   answers on the other tasks, so an expert changes its skill and little else and the task vectors add up.
3. λ ∈ [-1, 1]^4 is searched on the seen tasks' *validation* splits with EvoGM, CMA-ES and PSO-Merging at the
   same budget, each as an ``evogm-opt merge CONFIG.yaml`` run whose config is left in the output folder; then
   the best λ of each, the base, each expert alone, uniform task arithmetic, TIES and DARE
   are scored on seen and unseen tasks (digit −1, "previous letter"), validation and test splits. The summary
   says whether the searched merge beat every single expert and uniform task arithmetic on the seen tasks' test
   splits (the search only ever saw the validation splits).

The numbers printed are measured in this run; nothing is assumed. Seeds fix everything.
"""

from __future__ import annotations

import json
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from evogm_opt.threads import torch_threads
from llm_merge.demo.skills import LETTERS, MULTIPLE_CHOICE, SEEN, UNSEEN, pretraining_example

CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789 =+-?:>")


def char_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, **{c: i + 2 for i, c in enumerate(CHARS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.decoder = decoders.Fuse()  # characters join without spaces when decoded
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


SEARCHES = ("evogm", "cmaes", "pso-merging")  # each one is an 'evogm-opt merge CONFIG.yaml' run
# EvoGM again with multi-fidelity scoring (issue 30): successive halving over nested prefixes of the validation
# examples; asked FIDELITY_CANDIDATES times as many candidates as the full-fidelity search evaluates
FIDELITY = {"min_examples": 10, "eta": 3}
FIDELITY_CANDIDATES = 1.5
FIDELITY_ROW = "evogm + fidelity λ*"
EXAMPLES = 100  # per task and split: a one-example difference is 0.01 of a task's accuracy
REPLAY = 0.5  # share of an expert's batch that replays the base's own answers on the other tasks


def _task_entry(name: str) -> dict:
    return {"name": name, "val": f"tasks/{name}-val.jsonl", "test": f"tasks/{name}-test.jsonl", "max_new_tokens": 4}


def task_rows(name: str, skill, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt, answer = skill(rng)
        if name in MULTIPLE_CHOICE:
            wrong = rng.choice([c for c in LETTERS if c != answer])
            options = [answer, wrong] if rng.random() < 0.5 else [wrong, answer]
            rows.append({"prompt": prompt, "options": options, "answer": options.index(answer)})
        else:
            rows.append({"prompt": prompt, "answer": answer})
    return rows


# ---------------------------------------------------------------------- training
def _lm_batch(tok, pairs: list[tuple[str, str]]):
    """Token ids, mask and labels; the loss is on the answer (and end-of-sequence) tokens only."""
    rows = []
    for prompt, answer in pairs:
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        rows.append((p, tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]))
    width = max(len(p) + len(a) for p, a in rows)
    x = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
    labels = torch.full_like(x, -100)
    mask = torch.zeros_like(x)
    for i, (p, a) in enumerate(rows):
        x[i, : len(p) + len(a)] = torch.tensor(p + a)
        labels[i, len(p) : len(p) + len(a)] = torch.tensor(a)
        mask[i, : len(p) + len(a)] = 1
    return x, mask, labels


def train_steps(model, tok, sample_text, steps: int, lr: float, batch: int, seed: int) -> float:
    rng = random.Random(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        x, mask, labels = _lm_batch(tok, [sample_text(rng) for _ in range(batch)])  # (prompt, answer) pairs
        loss = model(input_ids=x, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return float(loss.detach())


@dataclass
class DemoResult:
    table: str
    results: dict
    seconds: float


def run_demo(
    out: Path = Path("merge-demo"),
    budget_per_dim: int = 20,
    seed: int = 0,
    quiet: bool = False,
    expert_steps: int = 150,
) -> DemoResult:
    import transformers

    transformers.utils.logging.disable_progress_bar()  # the demo prints its own progress lines
    with torch_threads(1):  # a tiny model: one thread is fastest, and stays fast on a busy machine
        return _run_demo(out, budget_per_dim, seed, quiet, expert_steps)


def _run_demo(out: Path, budget_per_dim: int, seed: int, quiet: bool, expert_steps: int) -> DemoResult:
    start = time.perf_counter()
    progress = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))

    def say(message: str) -> None:
        progress(f"[{time.perf_counter() - start:5.1f}s] {message}")

    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    _pretrain_base(out, seed, say)
    _train_experts(out, seed, expert_steps, say)
    _write_tasks(out, seed)
    budget = budget_per_dim * len(SEEN)
    rows, best, found_at = _run_searches(out, budget, seed, say)
    row, cost = _run_fidelity_search(out, budget, seed, say)
    rows[FIDELITY_ROW] = row
    cost["full_fidelity_tokens"] = _full_fidelity_tokens(out, cost)
    table = _demo_table(rows, budget, out, seed, found_at) + "\n" + fidelity_line(rows, cost)
    results = {
        "rows": rows,
        "best_lambda": best,
        "best_found_at": found_at,
        "best_search": best_search(rows, found_at),
        "budget": budget,
        "verdict": merge_verdict(rows),
        "fidelity": cost,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return DemoResult(table, results, time.perf_counter() - start)


def _tiny_qwen():
    """A 2-layer Qwen2-config model over the character vocabulary, freshly initialised."""
    import transformers

    config = transformers.Qwen2Config(
        vocab_size=len(CHARS) + 2,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
    )
    return transformers.AutoModelForCausalLM.from_config(config).float()


def _pretrain_base(out: Path, seed: int, say) -> None:
    """The base: every skill, half of each table right and the other half mostly decoys (``skills``)."""
    tok = char_tokenizer()
    base = _tiny_qwen()
    loss = train_steps(base, tok, pretraining_example, steps=400, lr=3e-3, batch=32, seed=seed)
    say(f"pre-trained the base (final loss {loss:.2f})")
    base.save_pretrained(out / "base")
    tok.save_pretrained(out / "base")


@torch.no_grad()
def _base_answers(model, tok, seed: int, n: int = 256) -> dict[str, list[tuple[str, str]]]:
    """Per task, ``n`` prompts with the base's own greedy answers: what an expert replays to keep the rest as is."""
    answers = {}
    for name, skill in {**SEEN, **UNSEEN}.items():
        rng = random.Random(seed + 500 + len(name))
        prompts = [skill(rng)[0] for _ in range(n)]
        ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        width = max(map(len, ids))
        x = torch.full((n, width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(x)
        for i, row in enumerate(ids):
            x[i, width - len(row) :], mask[i, width - len(row) :] = torch.tensor(row), 1
        out = model.generate(
            input_ids=x, attention_mask=mask, max_new_tokens=2, do_sample=False, pad_token_id=tok.pad_token_id
        )
        texts = [tok.decode(out[i, width:], skip_special_tokens=True) for i in range(n)]
        answers[name] = [(p, t or " ") for p, t in zip(prompts, texts)]
    return answers


def _train_experts(out: Path, seed: int, steps: int, say) -> None:
    """One gentle LoRA expert (peft, rank 4 on every projection, lr 3e-4) per seen skill; half of each batch
    replays the base's answers on the other tasks, so the expert's task vector moves its own skill only."""
    import peft
    import transformers

    tok = char_tokenizer()
    base = transformers.AutoModelForCausalLM.from_pretrained(out / "base").float().eval()
    replay = _base_answers(base, tok, seed)
    for i, (name, skill) in enumerate(SEEN.items()):
        model = transformers.AutoModelForCausalLM.from_pretrained(out / "base").float()
        lora = peft.LoraConfig(
            r=4,
            lora_alpha=8,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        )
        with warnings.catch_warnings():  # peft reads transformers' deprecated is_gradient_checkpointing, not us
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = peft.get_peft_model(model, lora)
        others = [n for n in replay if n != name]

        def example(rng, skill=skill, others=others):
            return rng.choice(replay[rng.choice(others)]) if rng.random() < REPLAY else skill(rng)

        loss = train_steps(model, tok, example, steps=steps, lr=3e-4, batch=32, seed=seed + 10 + i)
        model.save_pretrained(out / f"expert-{name}")
        say(f"trained LoRA expert '{name}' (final loss {loss:.2f})")


def _write_tasks(out: Path, seed: int) -> None:
    """EXAMPLES per task and split (validation drives the search, test is for the report)."""
    for split, offset in (("val", 1000), ("test", 2000)):
        for name, skill in {**SEEN, **UNSEEN}.items():
            path = out / "tasks" / f"{name}-{split}.jsonl"
            path.parent.mkdir(exist_ok=True)
            rows = task_rows(name, skill, EXAMPLES, seed + offset + len(name))
            path.write_text("\n".join(json.dumps(r) for r in rows))


def _search_config(name: str, budget: int, seed: int, first: bool) -> dict:
    return {
        "base": "base",
        "dtype": "float32",
        "device": "cpu",
        "experts": [{"path": f"expert-{n}", "name": n} for n in SEEN],
        "tasks": {
            "seen": [_task_entry(n) for n in SEEN],
            "unseen": [_task_entry(n) for n in UNSEEN],
        },
        "method": "task_arithmetic",
        "optimizer": {"name": name, "budget": budget, "seed": seed},
        "baselines": first,  # the same for every search: scored once
        "save_model": True,  # each search's merge, so the winner's is there to take
        "threads": 1,  # a tiny model: one torch thread is fastest, and stays fast on a busy machine
        "output": f"runs/{name}",
    }


def _run_searches(out: Path, budget: int, seed: int, say) -> tuple[dict[str, dict[str, float]], dict, dict]:
    """Each search as an 'evogm-opt merge CONFIG.yaml' run; the table's rows (baselines first), each search's best
    λ and the evaluation its best was found at (the tie rule of :func:`best_search`)."""
    import yaml

    from llm_merge.run.config import load_config
    from llm_merge.run.pipeline import run_merge

    rows: dict[str, dict[str, float]] = {}
    best: dict[str, list[float]] = {}
    found_at: dict[str, int] = {}
    for i, name in enumerate(SEARCHES):
        path = out / f"config-{name}.yaml"
        path.write_text(yaml.safe_dump(_search_config(name, budget, seed, i == 0), sort_keys=False))
        run = run_merge(load_config(path), restart=True, progress=False, say=lambda *a: None)
        b = run.results["best"]
        best[name], found_at[name] = b["lambda"], int(b["evaluation"])
        rows.update(run.results["rows"])
        say(
            f"{name}: {budget} evaluations, best val {b['score']:.3f} "
            f"at λ = {np.round(b['lambda'], 2).tolist()} ({path.name})"
        )
    order = [k for k in rows if not k.endswith("λ*")] + [f"{n} λ*" for n in SEARCHES]
    return {k: rows[k] for k in order}, best, found_at


def _run_fidelity_search(out: Path, budget: int, seed: int, say) -> tuple[dict[str, float], dict]:
    """EvoGM with ``fidelity:`` (runs/evogm-fidelity): its λ*'s row and what the search cost."""
    import yaml

    from llm_merge.run.config import load_config
    from llm_merge.run.pipeline import run_merge

    candidates = int(round(FIDELITY_CANDIDATES * budget))
    config = _search_config("evogm", candidates, seed, first=False)
    config |= {"fidelity": {**FIDELITY, "seed": seed}, "save_model": False, "output": "runs/evogm-fidelity"}
    path = out / "config-evogm-fidelity.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    run = run_merge(load_config(path), restart=True, progress=False, say=lambda *a: None)
    r = run.results
    keys = ("candidates", "measurements", "tokens_spent", "examples_spent", "fidelity")
    say(
        f"evogm + fidelity: {r['candidates']} candidates, {r['measurements']} measurements, best val "
        f"{r['best']['score']:.3f}, {r['tokens_spent']} tokens ({path.name})"
    )
    return r["rows"]["evogm λ*"], {k: r[k] for k in keys}


def _full_fidelity_tokens(out: Path, cost: dict) -> int:
    """Validation tokens the full-fidelity EvoGM search spent: its candidates, each scored on every example."""
    searched = json.loads((out / "runs" / "evogm" / "results.json").read_text())
    return int(searched["n_evals"]) * int(cost["fidelity"]["tokens_per_full_measurement"])


def fidelity_line(rows: dict[str, dict[str, float]], cost: dict) -> str:
    """What multi-fidelity scoring saved against the full-fidelity EvoGM search, on the seen tasks' test splits."""
    plan, full = cost["fidelity"], cost["full_fidelity_tokens"]
    rungs = ", ".join(str(r) for r in plan["rungs"])
    return (
        f"Multi-fidelity (evogm + fidelity: successive halving at rungs of {rungs} of {plan['full']} validation "
        f"examples, eta {plan['eta']}, at least {plan['min_examples']} per task; {cost['candidates']} candidates): "
        f"seen-task test {seen_test(rows[FIDELITY_ROW]):.3f} against evogm's {seen_test(rows['evogm λ*']):.3f}, "
        f"for {cost['tokens_spent']} validation tokens, {cost['tokens_spent'] / full:.0%} of the {full} that "
        "evogm's full-fidelity search spent."
    )


UNIFORM = "uniform TA (λ = 1/N)"


def seen_test(row: dict[str, float]) -> float:
    """Mean test accuracy over the seen tasks: what the demo's claim is about."""
    return float(np.mean([row[f"{n}/test"] for n in SEEN]))


def seen_val(row: dict[str, float]) -> float:
    """Mean validation accuracy over the seen tasks: what the searches maximised, and what picks the best one."""
    return float(np.mean([row[f"{n}/val"] for n in SEEN]))


def best_search(rows: dict[str, dict[str, float]], found_at: dict[str, int]) -> str:
    """The search marked ◀, chosen as a user would choose, without the test split: the highest seen-task validation
    accuracy; ties (rounded to 1e-9) go to the search that found its best at fewer evaluations, then to the name."""
    return min(SEARCHES, key=lambda n: (-round(seen_val(rows[f"{n} λ*"]), 9), found_at[n], n))


def merge_verdict(rows: dict[str, dict[str, float]], search: str = "evogm") -> dict:
    """Whether ``search``'s λ* beat every single expert and uniform TA on the seen tasks' test splits."""
    experts = {k.removeprefix("expert "): seen_test(v) for k, v in rows.items() if k.startswith("expert ")}
    best_expert = max(experts, key=lambda k: experts[k])
    merged, uniform = seen_test(rows[f"{search} λ*"]), seen_test(rows[UNIFORM])
    return {
        "search": search,
        "merged": merged,
        "best_expert": best_expert,
        "best_expert_score": experts[best_expert],
        "uniform": uniform,
        "beats_both": merged > experts[best_expert] and merged > uniform,
    }


def _demo_table(rows: dict[str, dict[str, float]], budget: int, out: Path, seed: int, found_at: dict[str, int]) -> str:
    from llm_merge.run.baselines import per_task_table, summary_table

    table = summary_table(rows, list(SEEN), list(UNSEEN)) + "\n\nPer task:\n\n" + per_task_table(rows)
    winner = best_search(rows, found_at)
    order = [winner, *(n for n in SEARCHES if n != winner)]
    val = ", ".join(f"{n} {seen_val(rows[f'{n} λ*']):.3f} (best at evaluation {found_at[n]})" for n in order)
    test = ", ".join(f"{n} {seen_test(rows[f'{n} λ*']):.3f}" for n in order)
    v = merge_verdict(rows)
    summary = (
        f"The best search (marked ◀): {winner}, by seen-task validation accuracy (mean over {', '.join(SEEN)}; ties go "
        f"to the best found at fewer evaluations, then to the name): {val}. Their seen-task test accuracy: {test}; "
        f"uniform TA {v['uniform']:.3f}; best single expert ({v['best_expert']}) {v['best_expert_score']:.3f}."
    )
    verdict = (
        f"Seed {seed}: the EvoGM merge ({v['merged']:.3f}) "
        + ("beat" if v["beats_both"] else "did NOT beat")
        + f" both the best single expert ({v['best_expert_score']:.3f}) and uniform TA ({v['uniform']:.3f}) on the "
        "seen tasks' test splits (λ was chosen on the validation splits only)."
    )
    lines = [
        summary,
        verdict,
        f"The winner's merge: {out / 'runs' / winner / 'merged'} (each search's merge is in runs/<optimizer>/merged).",
        f"Budget {budget} evaluations per search; {EXAMPLES} examples per task and split. One demo run is one seed: "
        "compare optimizers on the bench (docs/benchmarks.md).",
        f"Each search: 'evogm-opt merge {out}/config-<optimizer>.yaml'.",
    ]
    return table.replace(f"| {winner} λ* |", f"| {winner} λ* ◀ |") + "\n\n" + "\n".join(lines)
