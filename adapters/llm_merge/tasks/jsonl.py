"""Tasks as JSONL files, scored on a causal LM or an encoder–decoder (seq2seq) LM.

Schema, one JSON object per line:

- multiple choice: ``{"prompt": str, "options": [str, ...], "answer": int}`` — scored by the summed
  log-likelihood of each option's tokens after the prompt, all options of a batch of examples in one forward;
  correct when the argmax is ``answer``.
- generation: ``{"prompt": str, "answer": str}`` — greedy decoding for ``max_new_tokens``; correct on exact
  match after :func:`normalize` (strip, lower-case, collapse internal whitespace), comparing against the
  generated text up to the first newline.

On a causal LM the prompt and the option are one sequence, tokenized without special tokens. On a seq2seq LM
(``model.config.is_encoder_decoder``: T5, FLAN-T5, BART) the prompt is the encoder input, tokenized as the
tokenizer does by default (T5's appends ``</s>``), and the option is the decoder target after the decoder start
token, without special tokens — as lm-evaluation-harness scores seq2seq models (tested: the same accuracies as its
``acc``). Generation encodes the prompt the same way (right-padded) and decodes from the decoder start token.

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


def is_seq2seq(model) -> bool:
    """Whether ``model`` is an encoder–decoder (scored with the prompt in the encoder)."""
    return bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))


def _pad_token(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def _padded(rows: list[list[int]], pad: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id rows as one (rows, width) tensor and its attention mask."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


def _argmax_correct(examples: list[Example], scores: torch.Tensor) -> list[bool]:
    correct, j = [], 0
    for ex in examples:
        n = len(ex.options)
        correct.append(int(torch.argmax(scores[j : j + n])) == ex.answer)
        j += n
    return correct


@torch.no_grad()
def _mc_correct(model, tokenizer, examples: list[Example], batch_size: int, before_forward=None) -> list[bool]:
    """All options of all examples, right-padded, in forwards of ``batch_size`` sequences.

    ``before_forward(rows)`` is called with the example index of each row of the next forward (the batched-λ
    path sets each row's coefficients there).
    """
    if is_seq2seq(model):
        return _mc_correct_seq2seq(model, tokenizer, examples, batch_size, before_forward)
    device = next(model.parameters()).device
    pad = _pad_token(tokenizer)
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
        ids, mask = _padded(chunk, pad)
        if before_forward is not None:
            before_forward(owners[lo : lo + batch_size])
        logprobs = torch.log_softmax(model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float(), -1)
        targets = ids[:, 1:].to(device)
        token_lp = logprobs[:, :-1].gather(-1, targets[..., None])[..., 0].cpu()
        for i, sq in enumerate(chunk):
            scores[lo + i] = token_lp[i, starts[lo + i] - 1 : len(sq) - 1].sum()
    return _argmax_correct(examples, scores)


def _decoder_inputs(model, labels: torch.Tensor) -> torch.Tensor:
    """The decoder's inputs for target ``labels``: shifted right behind the decoder start token, by the model's own
    rule (what passing ``labels=`` does, without the loss, and without BART's warning that it turns the cache off)."""
    if hasattr(model, "prepare_decoder_input_ids_from_labels"):
        return model.prepare_decoder_input_ids_from_labels(labels=labels)
    start = model.config.decoder_start_token_id
    if start is None:
        raise TaskError(f"{type(model).__name__} has no decoder_start_token_id to score decoder targets from")
    return torch.cat([torch.full_like(labels[:, :1], start), labels[:, :-1]], dim=1)


@torch.no_grad()
def _mc_correct_seq2seq(model, tokenizer, examples: list[Example], batch_size: int, before_forward) -> list[bool]:
    """Encoder: the prompt (with the tokenizer's special tokens); decoder: the option (without), shifted right by
    the model's rule; the option's tokens' summed log-likelihood. Rows are (example, option) pairs, as on a
    causal LM."""
    device = next(model.parameters()).device
    pad = _pad_token(tokenizer)
    prompts, targets, owners = [], [], []
    for k, ex in enumerate(examples):
        prompt_ids = tokenizer(ex.prompt)["input_ids"]
        for option in ex.options:
            option_ids = tokenizer(option, add_special_tokens=False)["input_ids"]
            if not option_ids:
                raise TaskError(f"option {option!r} of {ex.prompt!r} tokenizes to nothing")
            prompts.append(prompt_ids)
            targets.append(option_ids)
            owners.append(k)
    scores = torch.zeros(len(targets))
    for lo in range(0, len(targets), batch_size):
        ids, mask = _padded(prompts[lo : lo + batch_size], pad)
        labels, label_mask = _padded(targets[lo : lo + batch_size], pad)
        if before_forward is not None:
            before_forward(owners[lo : lo + batch_size])
        labels = labels.to(device)
        logits = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            decoder_input_ids=_decoder_inputs(model, labels),
            use_cache=False,
        ).logits
        token_lp = torch.log_softmax(logits.float(), -1).gather(-1, labels[..., None])[..., 0].cpu()
        scores[lo : lo + len(labels)] = (token_lp * label_mask).sum(dim=1)
    return _argmax_correct(examples, scores)


@torch.no_grad()
def _gen_correct(
    model, tokenizer, examples: list[Example], max_new_tokens: int, batch_size: int, before_forward=None
) -> list[bool]:
    """Greedy decoding, no sampling (``before_forward`` as in :func:`_mc_correct`): a causal LM's prompts
    left-padded and continued; a seq2seq LM's prompts right-padded in the encoder, decoded from the start token."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    seq2seq = is_seq2seq(model)
    correct = []
    for lo in range(0, len(examples), batch_size):
        chunk = examples[lo : lo + batch_size]
        if seq2seq:
            prompts = [tokenizer(ex.prompt)["input_ids"] for ex in chunk]
        else:
            prompts = [tokenizer(ex.prompt, add_special_tokens=False)["input_ids"] for ex in chunk]
        ids, mask = _padded(prompts, pad, left=not seq2seq)
        if before_forward is not None:
            before_forward(list(range(lo, lo + len(chunk))))
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=pad,
        )
        new = out[:, 1:] if seq2seq else out[:, ids.shape[1] :]  # a seq2seq output starts with the decoder start
        for i, ex in enumerate(chunk):
            text = tokenizer.decode(new[i], skip_special_tokens=True).split("\n")[0]
            correct.append(normalize(text) == normalize(str(ex.answer)))
    return correct


def correct_per_example(model, tokenizer, task: Task, batch_size: int = 64, before_forward=None) -> list[bool]:
    """Whether each example is answered correctly (``before_forward``: see :func:`_mc_correct`)."""
    if task.kind == "mc":
        return _mc_correct(model, tokenizer, task.examples, batch_size, before_forward)
    return _gen_correct(model, tokenizer, task.examples, task.max_new_tokens, batch_size, before_forward)


def example_tokens(tokenizer, task: Task, seq2seq: bool) -> list[int]:
    """Tokens scoring each example costs, counted from the example as the scorer tokenizes it (padding never
    counts, and the count is the same for every merge): multiple choice, every (prompt, option) row — the prompt
    as input (an encoder-decoder's with its special tokens), the option as the scored target; generation, the
    prompt and ``max_new_tokens`` (what greedy decoding may generate and is compared)."""
    special = {} if seq2seq else {"add_special_tokens": False}
    counts = []
    for ex in task.examples:
        prompt = len(tokenizer(ex.prompt, **special)["input_ids"])
        if task.kind == "mc":
            options = [len(tokenizer(o, add_special_tokens=False)["input_ids"]) for o in ex.options]
            counts.append(prompt * len(options) + sum(options))
        else:
            counts.append(prompt + task.max_new_tokens)
    return counts


def score(model, tokenizer, task, batch_size: int = 64) -> float:
    """Accuracy of ``model`` on ``task`` (fraction of examples correct), batched over examples; tasks of other
    backends (``llm_merge.tasks.lm_eval_tasks.LmEvalTask``) score themselves."""
    if not isinstance(task, Task):
        return task.evaluate(model, tokenizer, batch_size)
    return sum(correct_per_example(model, tokenizer, task, batch_size)) / len(task.examples)
