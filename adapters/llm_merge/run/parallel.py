"""Population evaluation on several GPUs (or machines) with Ray: one persistent actor per device.

Each actor builds its :class:`MergeFitness` once — base model and experts' factors on its own GPU — and then
only λ vectors go in and scores come out. ``evaluate_batch(Λ)`` and ``correct_counts(Λ, tasks)`` (a multi-fidelity
search's prefix counts, with ``PrefixScorer(FitnessSpec.prefix_plan(...), pool)``) split the population into one
shard per live actor and gather the results by row index, so a result can only land on the candidate it was
computed for.
Ray does the scheduling and fault handling: an actor that dies is restarted and its call retried
(``max_restarts`` / ``max_task_retries``); once an actor is out of restarts its shard is re-queued on a live
actor. Locally ``ray.init()`` is enough (CPU actors in the tests); on a cluster run ``ray start --head`` on one
machine, ``ray start --address=HEAD:6379`` on the others, and ``ray.init(address="auto")`` in the driver.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from llm_merge.run.schema import FidelitySpec
    from llm_merge.run.search import PrefixPlan


@dataclass(frozen=True)
class FitnessSpec:
    """How an actor builds its fitness: paths and settings only, so the spec is cheap to ship to any machine."""

    base: str
    experts: Sequence[str]
    # the tasks that drive the search: JSONL files, or ``LmEvalTask`` objects (pickled without their harness
    # objects: each actor builds its own over its own model)
    tasks: Sequence[Any]
    method: str = "task_arithmetic"
    method_options: dict[str, Any] = field(default_factory=dict)
    dtype: str = "bfloat16"
    device: str = "auto"
    batch_size: int = 32
    max_new_tokens: int = 16
    weights: Sequence[float] | None = None
    model_type: str = "auto"  # auto | causal | seq2seq (llm_merge.model.loading.load_base)

    def load_tasks(self) -> list[Any]:
        """The tasks as every actor reads them (their names seed a fidelity plan's permutations): a JSONL file
        read, an lm-eval task as given."""
        from llm_merge.tasks.jsonl import Task
        from llm_merge.tasks.lm_eval_tasks import LmEvalTask

        return [
            t if isinstance(t, LmEvalTask) else Task.from_jsonl(t, max_new_tokens=self.max_new_tokens)
            for t in self.tasks
        ]

    def build(self):
        """The actor's fitness, built as ``evogm-opt merge`` builds a run's (``llm_merge.run.assemble``)."""
        from pathlib import Path

        from llm_merge.run.assemble import assemble
        from llm_merge.run.schema import ExpertSpec

        experts = [ExpertSpec(path=str(path), name=Path(path).name) for path in self.experts]
        return assemble(
            self.base,
            experts,
            self.load_tasks(),
            method=self.method,
            method_options=self.method_options,
            dtype=self.dtype,
            device=self.device,
            weights=self.weights,
            batch_size=self.batch_size,
            model_type=self.model_type,
        ).fitness

    def prefix_plan(self, fidelity: FidelitySpec) -> PrefixPlan:
        """The plan ``PrefixPlan.of(fitness, fidelity)`` gives the actors' fitness, built in the driver from the
        tokenizer, the tasks and the base's config only (an lm-eval task's documents and requests, built by the
        harness): no weights are loaded where no GPU may be."""
        from transformers import AutoConfig, AutoTokenizer

        from llm_merge.model.names import base_model_type
        from llm_merge.run.search import PrefixPlan

        config = AutoConfig.from_pretrained(self.base)
        kind = base_model_type(getattr(config, "is_encoder_decoder", False), self.model_type, repr(self.base))
        tokenizer = AutoTokenizer.from_pretrained(self.base)  # load_base's (padding never counts as tokens)
        return PrefixPlan(self.load_tasks(), fidelity, tokenizer, kind == "seq2seq", config)


class _Worker:
    """The actor: holds one fitness for its lifetime."""

    def __init__(self, spec: FitnessSpec) -> None:
        self.fitness = spec.build()

    def evaluate(self, lams: np.ndarray) -> list[float]:
        return self.fitness.evaluate_batch(lams)

    def correct_counts(self, lams: np.ndarray, tasks: Sequence[Any], path: str) -> np.ndarray:
        # "auto" is resolved here: only the actor knows its device and the size of its shard
        if path == "auto":
            path = self.fitness.choose_path(len(lams))
        return self.fitness.correct_counts(lams, tasks, path)

    def device(self) -> str:
        return str(self.fitness._device)


class RayMergeEvaluator:
    """``evaluate_batch(Λ) -> scores`` and ``correct_counts(Λ, tasks)`` over a pool of persistent Ray actors.

    Args:
        spec: what each actor loads.
        num_workers: actors to start (one per GPU with ``num_gpus=1``).
        num_gpus / num_cpus: resources each actor reserves.
        max_restarts: restarts Ray grants a crashed actor (its in-flight call is retried on the restarted one).
    """

    def __init__(
        self, spec: FitnessSpec, num_workers: int, num_gpus: float = 0, num_cpus: float = 1, max_restarts: int = 2
    ) -> None:
        import ray

        if num_workers < 1:
            raise ValueError("num_workers must be >= 1")
        actor = ray.remote(_Worker).options(
            num_gpus=num_gpus, num_cpus=num_cpus, max_restarts=max_restarts, max_task_retries=max_restarts
        )
        self.workers = [actor.remote(spec) for _ in range(num_workers)]
        self.requeued = 0  # shards moved to another actor after theirs was lost for good

    def devices(self) -> list[str]:
        import ray

        return ray.get([w.device.remote() for w in self.workers])

    def evaluate_batch(self, lams: np.ndarray) -> list[float]:
        """Fitness of each row of Λ (each actor's ``MergeFitness.evaluate_batch`` on its shard, path "auto")."""
        lams = np.atleast_2d(np.asarray(lams, dtype=float))
        scores = np.full(len(lams), np.nan)
        for idx, values in self._sharded(lams, lambda worker, rows: worker.evaluate.remote(rows)):
            scores[idx] = values
        return scores.tolist()

    def correct_counts(self, lams: np.ndarray, tasks: Sequence[Any], path: str = "rebuild") -> np.ndarray:
        """``MergeFitness.correct_counts`` over the pool, (P, len(tasks)) integers: what
        ``llm_merge.run.search.PrefixScorer`` calls, so a multi-fidelity search can score its rungs here
        (``path`` "auto" is chosen by each actor for its shard; an lm-eval task's documents go as indices)."""
        lams = np.atleast_2d(np.asarray(lams, dtype=float))
        counts = np.zeros((len(lams), len(tasks)), dtype=np.int64)
        for idx, values in self._sharded(lams, lambda worker, rows: worker.correct_counts.remote(rows, tasks, path)):
            counts[idx] = values
        return counts

    def _sharded(self, lams: np.ndarray, submit: Callable[[Any, np.ndarray], Any]) -> list[tuple[np.ndarray, Any]]:
        """Each shard's row indices and what ``submit(actor, rows)`` returned for it: one shard per actor; a
        shard whose actor is lost for good goes to a live one (the caller puts the results back by row index)."""
        import ray
        from ray.exceptions import RayActorError

        done: list[tuple[np.ndarray, Any]] = []
        queue = [idx for idx in np.array_split(np.arange(len(lams)), len(self.workers)) if len(idx)]
        live = list(self.workers)
        pending: dict[Any, tuple[np.ndarray, Any]] = {}
        while queue or pending:
            while queue and len(pending) < len(live):
                busy = {id(w) for _, w in pending.values()}
                worker = next(w for w in live if id(w) not in busy)
                idx = queue.pop()
                pending[submit(worker, lams[idx])] = (idx, worker)
            if not pending:
                raise RuntimeError("every Ray actor is lost; no worker left to evaluate on")
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            idx, worker = pending.pop(ref)
            try:
                done.append((idx, ray.get(ref)))
            except RayActorError:
                live = [w for w in live if w is not worker]
                queue.append(idx)
                self.requeued += 1
                if not live:
                    raise RuntimeError("every Ray actor is lost; no worker left to evaluate on") from None
        return done

    def shutdown(self) -> None:
        import ray

        for w in self.workers:
            ray.kill(w)
        self.workers = []
