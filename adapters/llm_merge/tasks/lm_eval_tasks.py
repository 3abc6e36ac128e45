"""Tasks from EleutherAI's lm-evaluation-harness (``lm-eval`` extra), scored on the live, in-place merged model.

An :class:`LmEvalTask` names an lm-eval task (a registered one, or a YAML in ``include_path`` — a local JSON
dataset works offline) and the metric to read (``"acc,none"``, ``"exact_match,strict-match"``, …). It is scored
with ``lm_eval.simple_evaluate`` on an ``HFLM`` that wraps the *same* model object ``MergeFitness`` rebuilds in
place, so nothing is copied per candidate; lm-eval's request cache stays off, since the weights change between
calls. Use different lm-eval tasks (or splits) for ``val`` and ``test``, as with JSONL tasks. lm-eval's backend is
the base's kind (``seq2seq`` for an encoder–decoder, ``causal`` otherwise), not lm-eval's own guess.

With ``fidelity:`` (``llm_merge.run.search``) a seen lm-eval task is scored like a JSONL task, on prefixes of a
seeded permutation of its pool (the first ``limit`` evaluation documents, all without): a rung scores only its new
documents (``simple_evaluate(samples=...)`` with ``log_samples``) and their per-document 0/1 scores are added to
the candidate's count, so a promoted candidate's score is the pool's. :meth:`LmEvalTask.fidelity_problem` says
which tasks cannot be extended this way (a metric that is not a mean over documents, few-shot prompts, sampled
generation); :meth:`LmEvalTask.document_tokens` counts what each document costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from evogm_opt.cli_faults import install_hint
from llm_merge.tasks.jsonl import TaskError

_MANAGERS: dict[str | None, Any] = {}


@dataclass
class LmEvalTask:
    name: str
    task: str  # the lm-eval task name
    metric: str = "acc,none"
    limit: int | None = None  # examples per evaluation (lm-eval's ``limit``)
    include_path: str | None = None
    num_fewshot: int | None = None
    kind: str = "lm_eval"
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def _manager(self):
        # one TaskManager per include_path and process: building one indexes every lm-eval YAML (seconds)
        if self.include_path not in _MANAGERS:
            try:
                from lm_eval.tasks import TaskManager
            except ImportError as exc:
                raise TaskError(f"task {self.name!r} needs lm-eval: {install_hint('lm-eval')}") from exc
            _MANAGERS[self.include_path] = TaskManager(include_path=self.include_path, verbosity="ERROR")
        return _MANAGERS[self.include_path]

    def _wrapper(self, model, tokenizer, batch_size: int):
        key = (id(model), id(tokenizer), batch_size)
        if self._cache.get("lm_key") != key:
            from lm_eval.models.huggingface import HFLM

            backend = "seq2seq" if getattr(model.config, "is_encoder_decoder", False) else "causal"
            self._cache["lm"] = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, backend=backend)
            self._cache["lm_key"] = key
        return self._cache["lm"]

    def check(self) -> None:
        """Fail early, before any search step, if lm-eval does not know the task."""
        if self.task not in self._manager().all_tasks:
            raise TaskError(f"lm-eval has no task {self.task!r} (include_path={self.include_path!r})")

    def evaluate(self, model, tokenizer, batch_size: int) -> float:
        import lm_eval

        out = lm_eval.simple_evaluate(
            model=self._wrapper(model, tokenizer, batch_size),
            tasks=[self.task],
            task_manager=self._manager(),
            limit=self.limit,
            num_fewshot=self.num_fewshot,
            use_cache=None,
            verbosity="ERROR",
            log_samples=False,
        )
        metrics = out["results"][self.task]
        if self.metric not in metrics:
            found = sorted(k for k in metrics if "," in k and "stderr" not in k)
            raise TaskError(f"lm-eval task {self.task!r} reports {found}, not {self.metric!r}")
        return float(metrics[self.metric])

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (a Ray actor's copy, a driver's plan) without the cache: the ``HFLM`` wraps a live model and
        the built harness task holds its dataset; a copy builds its own when it needs them."""
        return {**self.__dict__, "_cache": {}}

    def harness_task(self):
        """The lm-eval ``Task`` object, built once (its documents and requests; no model is needed). Fidelity
        scores the documents of one task, so a group or a tag of several tasks is refused."""
        if "task" not in self._cache:
            self.check()
            tasks = self._manager().load([self.task])["tasks"]
            if list(tasks) != [self.task]:
                raise TaskError(
                    f"fidelity: lm-eval task {self.task!r} of {self.name!r} is a group or tag of {len(tasks)} tasks; "
                    "fidelity scores the documents of one task: name its tasks one by one, or use fidelity: off"
                )
            task = tasks[self.task]
            # the few-shot count simple_evaluate scores with (a task's own 0 stays 0; a task with none gets 0), set
            # here too, so that the requests built from this object (tokens) are the ones scored
            own = task.get_config("num_fewshot")
            if self.num_fewshot is not None and own != 0:
                task.set_config(key="num_fewshot", value=self.num_fewshot)
            elif own is None:
                task.set_config(key="num_fewshot", value=0)
            self._cache["task"] = task
        return self._cache["task"]

    def pool_size(self) -> int:
        """Documents one evaluation scores: the first ``limit`` of the task's evaluation documents (a fraction
        as lm-eval reads it), all of them without a ``limit``."""
        from lm_eval.evaluator_utils import get_sample_size

        task = self.harness_task()
        limit = get_sample_size(task, self.limit)
        return len(task.eval_docs) if limit is None else min(limit, len(task.eval_docs))

    def shots(self) -> int:
        """Few-shot examples per document, as ``simple_evaluate`` sets them: a task's own 0 stays 0, else this
        task's ``num_fewshot``, else the task's default (none: 0) — applied by :meth:`harness_task`."""
        return int(self.harness_task().get_config("num_fewshot") or 0)

    def fewshot_sampler(self) -> str:
        """How the harness picks a document's few-shot examples: ``"first_n"`` (the first n of the few-shot
        documents, the document itself left out: the same for a document whoever is scored with it) or another
        sampler (``"default"``: one random stream, drawn in document order)."""
        config = self.harness_task().config.fewshot_config  # lm-eval's FewshotConfig, or a plain mapping
        sampler = (config.get("sampler") if isinstance(config, dict) else getattr(config, "sampler", None)) or "default"
        return sampler if isinstance(sampler, str) else getattr(sampler, "__name__", str(sampler))

    def fidelity_problem(self) -> str | None:
        """Why this task's score cannot be extended document by document (``None``: it can). Fidelity adds the
        new documents' scores to a prefix's, which gives the score of the whole pool only when the metric is a
        mean of per-document scores (lm-eval's ``mean`` aggregation: ``acc``, ``acc_norm``, ``exact_match``),
        and when a document's score does not depend on which other documents are scored with it (few-shot
        examples drawn by a random sampler come from one stream in document order — ``first_n`` is fine —;
        sampled generation from one seed)."""
        from lm_eval.api.registry import get_aggregation
        from lm_eval.models.utils import normalize_gen_kwargs

        task, (metric, _, filter_key) = self.harness_task(), self.metric.partition(",")
        where = f"lm-eval task {self.task!r} of {self.name!r}"
        aggregations = task.aggregation()
        if metric not in aggregations:
            return f"fidelity: {where} has no metric {metric!r} (it has {sorted(aggregations)})"
        filters = [f["name"] for f in task.config.filter_list or []] or ["none"]
        if filter_key not in filters:
            return (
                f"fidelity: {where}, metric {self.metric!r}: the task has no filter {filter_key!r} (it has {filters})"
            )
        how = aggregations[metric]
        if how is not get_aggregation("mean"):
            return (
                f"fidelity: {where}, metric {self.metric!r}: aggregated by {getattr(how, '__name__', how)}, not as a "
                "mean of per-document scores, so a prefix's score cannot be extended by the new documents'; use a "
                "per-document 0/1 metric (acc, acc_norm, exact_match) or fidelity: off"
            )
        if self.shots() > 0 and self.fewshot_sampler() != "first_n":
            return (
                f"fidelity: {where}, metric {self.metric!r}: {self.shots()}-shot with the {self.fewshot_sampler()!r} "
                "sampler, which draws each document's examples from one random stream in document order, so a "
                "document's prompt depends on the documents scored before it; use num_fewshot: 0, a task whose "
                "fewshot_config has sampler: first_n, or fidelity: off"
            )
        generation = dict(task.config.generation_kwargs or {})
        if task.OUTPUT_TYPE == "generate_until" and normalize_gen_kwargs(generation, 256).get("do_sample"):
            return (
                f"fidelity: {where}, metric {self.metric!r}: generation samples (do_sample, or a temperature above "
                "0), so a document's score "
                "depends on the documents generated before it; use greedy generation or fidelity: off"
            )
        return None

    def document_tokens(self, tokenizer, seq2seq: bool, max_length: int | None = None) -> list[int]:
        """Tokens scoring each document of the pool costs (pool order), counted without running the model from
        the task's requests (``build_all_requests``) as lm-eval's HF backend encodes them with its defaults:
        a loglikelihood request, its context and its continuation — so a multiple-choice document costs its
        context once per option plus the options, as :func:`llm_merge.tasks.jsonl.example_tokens` counts a row —;
        a generate_until request, its context and the task's ``max_gen_toks`` (lm-eval's 256 where the task sets
        none); a request repeated ``repeats`` times, that many times. ``max_length`` (the model's, as the harness
        resolves it: :func:`harness_max_length`): what the harness truncates a request to is what is counted;
        None counts requests whole. Padding never counts, and the count is the same for every merge (kept: a run
        builds its plan twice)."""
        key = ("tokens", id(tokenizer), seq2seq, max_length)
        if key not in self._cache:
            task, n = self.harness_task(), self.pool_size()
            task.build_all_requests(limit=n)
            counts = [0] * n
            for request in task.instances:
                try:
                    tokens = request_tokens(tokenizer, request.request_type, request.args, seq2seq, max_length)
                except ValueError as exc:
                    raise TaskError(
                        f"lm-eval task {self.task!r} of {self.name!r}, document {request.doc_id}: {exc}"
                    ) from exc
                counts[request.doc_id] += request.repeats * tokens
            self._cache[key] = counts
        return list(self._cache[key])

    def correct(self, model, tokenizer, batch_size: int, docs: Sequence[int]) -> int:
        """How many of the pool's documents ``docs`` the live model gets right: the sum of their per-document
        ``metric`` values, one ``simple_evaluate`` over those documents only (``samples=``)."""
        return sum(self.document_scores(model, tokenizer, batch_size, docs).values())

    def document_scores(self, model, tokenizer, batch_size: int, docs: Sequence[int]) -> dict[int, int]:
        """Each document's ``metric`` value (by index in the evaluation documents), refused unless 0 or 1: a
        count of correct documents is what a promotion extends."""
        import lm_eval

        wanted = sorted({int(d) for d in docs})  # the harness names its i-th scored document samples[i]: sorted
        if not wanted:  # an empty samples= list would score every document
            return {}
        out = lm_eval.simple_evaluate(
            model=self._wrapper(model, tokenizer, batch_size),
            tasks=[self.task],
            task_manager=self._manager(),
            samples={self.task: wanted},
            num_fewshot=self.num_fewshot,
            use_cache=None,
            verbosity="ERROR",
            log_samples=True,
            bootstrap_iters=0,
        )
        metric, _, filter_key = self.metric.partition(",")
        scores: dict[int, int] = {}
        for record in out["samples"][self.task]:
            if record["filter"] != filter_key:
                continue
            value = record.get(metric)
            if value not in (0, 1):
                raise TaskError(
                    f"fidelity: lm-eval task {self.task!r} of {self.name!r} gave document {record['doc_id']} a "
                    f"{self.metric!r} of {value!r}, not 0 or 1; fidelity extends counts of correct documents only"
                )
            scores[int(record["doc_id"])] = int(value)
        if sorted(scores) != wanted:
            raise TaskError(f"lm-eval task {self.task!r} reports no {self.metric!r} for some of documents {wanted}")
        return scores


@dataclass(frozen=True)
class LmEvalDocs:
    """Some documents of an lm-eval task, by index into its evaluation documents: what a fidelity rung newly
    scores of it (``MergeFitness.correct_counts`` takes it where a JSONL task's new examples are a ``Task``)."""

    task: LmEvalTask
    docs: tuple[int, ...]

    @property
    def name(self) -> str:
        return self.task.name

    def __len__(self) -> int:
        return len(self.docs)

    def correct(self, model, tokenizer, batch_size: int) -> int:
        return self.task.correct(model, tokenizer, batch_size, self.docs)


def harness_max_length(model_config: Any, tokenizer: Any) -> int:
    """The length lm-eval's HF backend truncates requests to, for a model it is given without ``max_length``: the
    harness's own resolution where it has one (``lm_eval.models.utils.resolve_max_length``, recent versions: a
    nested ``text_config`` first), else what older versions' ``HFLM.max_length`` did — the first of the config's
    ``n_positions``, ``max_position_embeddings``, ``n_ctx`` it has, the tokenizer's ``model_max_length`` unless
    that is the "unset" value (≈1e30), then the default of 2048."""
    try:
        from lm_eval.models.utils import resolve_max_length
    except ImportError:
        for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
            if hasattr(model_config, attr):
                return int(getattr(model_config, attr))
        model_max_length = getattr(tokenizer, "model_max_length", None)
        unset = model_max_length is None or model_max_length >= 10**29
        return 2048 if unset else int(model_max_length)
    return int(resolve_max_length(model_config, tokenizer, default=2048))


def request_tokens(tokenizer, request_type: str, args: tuple, seq2seq: bool, max_length: int | None = None) -> int:
    """Tokens of one harness request as lm-eval's HF backend (``HFLM``, ``add_bos_token`` unset) encodes it.
    loglikelihood: a context's trailing spaces go to the continuation; a causal LM encodes context and
    continuation as one text (the tokenizer's special tokens, unless the text starts with the prefix token),
    an encoder–decoder the context with them and the continuation without; an empty context is the prefix token
    (BOS, else EOS). generate_until: the context and ``max_gen_toks``.

    With ``max_length`` L, as the backend truncates from the left: a causal loglikelihood request keeps its last
    L + 1 tokens (L in, the last one only scored), a causal generation's context its last L − max_gen_toks; an
    encoder–decoder's context is cut to L. What the backend refuses raises ``ValueError``: a continuation longer
    than L, a causal generation with max_gen_toks ≥ L."""
    if request_type == "generate_until":
        from lm_eval.models.utils import normalize_gen_kwargs

        context, gen_kwargs = args
        bos = getattr(tokenizer, "bos_token", None)
        special = seq2seq or not (bos and context.startswith(bos))
        context_tokens = len(tokenizer(context, add_special_tokens=special)["input_ids"])
        generated = int(normalize_gen_kwargs(gen_kwargs, 256)["max_gen_toks"])
        if max_length is None:
            return context_tokens + generated
        if not seq2seq and generated >= max_length:
            raise ValueError(
                f"max_gen_toks {generated} is not below the model's length {max_length}: lm-eval refuses to generate"
            )
        return min(context_tokens, max_length if seq2seq else max_length - generated) + generated
    context_tokens, continuation_tokens = _pair_lengths(tokenizer, args[0], args[1], seq2seq)
    if max_length is None:
        return context_tokens + continuation_tokens
    if continuation_tokens > max_length:
        raise ValueError(
            f"a continuation of {continuation_tokens} tokens is longer than the model's length {max_length}: "
            "lm-eval refuses to score it"
        )
    if seq2seq:
        return min(context_tokens, max_length) + continuation_tokens
    return min(context_tokens + continuation_tokens, max_length + 1)


def _pair_lengths(tokenizer, context: str, continuation: str, seq2seq: bool) -> tuple[int, int]:
    """(context, continuation) token counts of a loglikelihood request as the backend splits them."""
    prefix_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if not context:
        tokens = tokenizer(continuation, add_special_tokens=False)["input_ids"]
        return (1, len(tokens)) if tokens[:1] != [prefix_id] else (1, len(tokens) - 1)
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    if seq2seq:
        return len(tokenizer(context)["input_ids"]), len(tokenizer(continuation, add_special_tokens=False)["input_ids"])
    special = prefix_id is None or not context.startswith(tokenizer.decode(prefix_id))
    whole = len(tokenizer(context + continuation, add_special_tokens=special)["input_ids"])
    context_tokens = len(tokenizer(context, add_special_tokens=special)["input_ids"])
    return context_tokens, max(whole - context_tokens, 0)  # the continuation: what follows the context's tokens
