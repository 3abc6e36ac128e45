"""Tasks as JSONL files, scored on a causal LM.

Schema, one JSON object per line:

- multiple choice: ``{"prompt": str, "options": [str, ...], "answer": int}`` — scored by the summed
  log-likelihood of each option's tokens after the prompt, all options of a batch of examples in one forward;
  correct when the argmax is ``answer``.
- generation: ``{"prompt": str, "answer": str}`` — greedy decoding for ``max_new_tokens``; correct on exact
  match after :func:`normalize` (strip, lower-case, collapse internal whitespace), comparing against the
  generated text up to the first newline.

A :class:`Task` holds one split (``val`` drives the search; ``test`` is for the report only).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


class TaskError(ValueError):
    """A task file that does not follow the schema."""


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: int | str
    options: tuple[str, ...] | None = None


@dataclass
class Task:
    name: str
    kind: str  # "mc" | "gen"
    examples: list[Example]
    max_new_tokens: int = 16

    @classmethod
    def from_jsonl(cls, path: str | Path, name: str | None = None, max_new_tokens: int = 16) -> Task:
        path = Path(path)
        if not path.is_file():
            raise TaskError(f"{path}: no such task file")
        examples, kinds = [], set()
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row: dict[str, Any] = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskError(f"{path}:{n}: invalid JSON ({exc})") from exc
            if not isinstance(row.get("prompt"), str) or "answer" not in row:
                raise TaskError(f"{path}:{n}: needs a string 'prompt' and an 'answer'")
            if "options" in row:
                opts = row["options"]
                if not (isinstance(opts, list) and len(opts) >= 2 and all(isinstance(o, str) and o for o in opts)):
                    raise TaskError(f"{path}:{n}: 'options' must be a list of >= 2 non-empty strings")
                ans = row["answer"]
                if not isinstance(ans, int) or isinstance(ans, bool) or not 0 <= ans < len(opts):
                    raise TaskError(f"{path}:{n}: 'answer' must be an option index in [0, {len(opts)})")
                examples.append(Example(row["prompt"], ans, tuple(opts)))
                kinds.add("mc")
            else:
                if not isinstance(row["answer"], str):
                    raise TaskError(f"{path}:{n}: a generation example needs a string 'answer'")
                examples.append(Example(row["prompt"], row["answer"]))
                kinds.add("gen")
        if not examples:
            raise TaskError(f"{path}: no examples")
        if len(kinds) != 1:
            raise TaskError(f"{path}: mixes multiple-choice and generation examples; use one file per kind")
        return cls(name or path.stem, kinds.pop(), examples, max_new_tokens)


@torch.no_grad()
def _mc_correct(model, tokenizer, examples: list[Example], batch_size: int, before_forward=None) -> list[bool]:
    """All options of all examples, right-padded, in forwards of ``batch_size`` sequences.

    ``before_forward(rows)`` is called with the example index of each row of the next forward (the batched-λ
    path sets each row's coefficients there).
    """
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    seqs, starts, owners = [], [], []
    for k, ex in enumerate(examples):
        prompt_ids = tokenizer(ex.prompt, add_special_tokens=False)["input_ids"]
        for option in ex.options:
            seqs.append(prompt_ids + tokenizer(option, add_special_tokens=False)["input_ids"])
            starts.append(len(prompt_ids))
            owners.append(k)
    scores = torch.zeros(len(seqs))
    for lo in range(0, len(seqs), batch_size):
        chunk = seqs[lo : lo + batch_size]
        width = max(map(len, chunk))
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, sq in enumerate(chunk):
            ids[i, : len(sq)] = torch.tensor(sq)
            mask[i, : len(sq)] = 1
        if before_forward is not None:
            before_forward(owners[lo : lo + batch_size])
        logprobs = torch.log_softmax(model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float(), -1)
        targets = ids[:, 1:].to(device)
        token_lp = logprobs[:, :-1].gather(-1, targets[..., None])[..., 0].cpu()
        for i, sq in enumerate(chunk):
            scores[lo + i] = token_lp[i, starts[lo + i] - 1 : len(sq) - 1].sum()
    correct, j = [], 0
    for ex in examples:
        n = len(ex.options)
        correct.append(int(torch.argmax(scores[j : j + n])) == ex.answer)
        j += n
    return correct


@torch.no_grad()
def _gen_correct(
    model, tokenizer, examples: list[Example], max_new_tokens: int, batch_size: int, before_forward=None
) -> list[bool]:
    """Greedy decoding, left-padded batches, no sampling (``before_forward`` as in :func:`_mc_correct`)."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    correct = []
    for lo in range(0, len(examples), batch_size):
        chunk = examples[lo : lo + batch_size]
        prompts = [tokenizer(ex.prompt, add_special_tokens=False)["input_ids"] for ex in chunk]
        width = max(map(len, prompts))
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
        if before_forward is not None:
            before_forward(list(range(lo, lo + len(chunk))))
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
        )
        for i, ex in enumerate(chunk):
            text = tokenizer.decode(out[i, width:], skip_special_tokens=True).split("\n")[0]
            correct.append(normalize(text) == normalize(str(ex.answer)))
    return correct


def correct_per_example(model, tokenizer, task: Task, batch_size: int = 64, before_forward=None) -> list[bool]:
    """Whether each example is answered correctly (``before_forward``: see :func:`_mc_correct`)."""
    if task.kind == "mc":
        return _mc_correct(model, tokenizer, task.examples, batch_size, before_forward)
    return _gen_correct(model, tokenizer, task.examples, task.max_new_tokens, batch_size, before_forward)


def score(model, tokenizer, task, batch_size: int = 64) -> float:
    """Accuracy of ``model`` on ``task`` (fraction of examples correct), batched over examples; tasks of other
    backends (``llm_merge.lm_eval_tasks.LmEvalTask``) score themselves."""
    if not isinstance(task, Task):
        return task.evaluate(model, tokenizer, batch_size)
    return sum(correct_per_example(model, tokenizer, task, batch_size)) / len(task.examples)
