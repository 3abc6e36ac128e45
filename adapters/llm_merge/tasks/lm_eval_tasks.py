"""Tasks from EleutherAI's lm-evaluation-harness (``lm-eval`` extra), scored on the live, in-place merged model.

An :class:`LmEvalTask` names an lm-eval task (a registered one, or a YAML in ``include_path`` — a local JSON
dataset works offline) and the metric to read (``"acc,none"``, ``"exact_match,strict-match"``, …). It is scored
with ``lm_eval.simple_evaluate`` on an ``HFLM`` that wraps the *same* model object ``MergeFitness`` rebuilds in
place, so nothing is copied per candidate; lm-eval's request cache stays off, since the weights change between
calls. Use different lm-eval tasks (or splits) for ``val`` and ``test``, as with JSONL tasks. lm-eval's backend is
the base's kind (``seq2seq`` for an encoder–decoder, ``causal`` otherwise), not lm-eval's own guess.
"""

from __future__ import annotations

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
