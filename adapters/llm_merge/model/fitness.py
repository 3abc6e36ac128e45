"""``MergeFitness``: λ -> merged model -> task accuracy, usable in any ask/tell loop of the core.

The model is rebuilt **in place** per candidate: the pristine weights W₀ of every touched parameter and the
experts' factors stay on the model's device; a candidate writes W ← W₀ + merged delta into the live parameter
(no disk, no host copies, no unmerge). For task arithmetic over LoRA experts the delta is one GEMM per module
from the concatenated factors, B_cat · diag(λ ⊗ s) · A_cat (fp32 accumulate, one cast); for nonlinear methods
(TIES, DARE) the λ-independent part (trim, drop masks) is prepared once and the merge runs per candidate.
The cached W₀ and expert tensors are never modified.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from evogm_opt.objectives import weighted_mean
from llm_merge.merges import get_method
from llm_merge.merges.base import MergeMethod
from llm_merge.model.batched import BatchedLora
from llm_merge.model.experts import Expert, ExpertError, LoraExpert
from llm_merge.model.layouts import CoefficientLayout, make_layout
from llm_merge.tasks.jsonl import Task, correct_per_example, score


def merged_parameters(model: torch.nn.Module, experts: Sequence[Expert], method: MergeMethod) -> list[str]:
    """The parameters a candidate rewrites: those some expert changes, or every floating-point parameter where the
    method does not give θ₀ back when all experts equal it (mergekit's linear, slerp-like methods)."""
    touched = set().union(*(e.params for e in experts))
    if not method.keeps_untouched:
        touched |= {name for name, p in model.named_parameters() if p.is_floating_point()}
    return sorted(touched)


class MergeFitness:
    """Mean task accuracy of θ₀ ⊕ λ·experts (to maximise).

    Args:
        model: the base causal LM (its touched weights are rebuilt in place; call :meth:`restore` to get θ₀).
        tokenizer: its tokenizer.
        experts: task vectors from :func:`llm_merge.load_lora_expert` / :func:`llm_merge.dense_expert`.
        tasks: the tasks that drive the search (use separate test tasks for the report).
        method: a merge method name (``task_arithmetic``, ``ties``, ``dare_linear``, ``dare_ties``, or a method of
            mergekit's registry) or instance.
        weights: optional per-task weights for the mean.
        batch_size: examples per forward when scoring.
        layout: how the optimizer's flat vector maps to per-tensor coefficients (``llm_merge.model.layouts``);
            default one λ per expert.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        experts: Sequence[Expert],
        tasks: Sequence[Task],
        method: str | MergeMethod = "task_arithmetic",
        weights: Sequence[float] | None = None,
        batch_size: int = 64,
        layout: CoefficientLayout | None = None,
    ) -> None:
        if not experts:
            raise ExpertError("MergeFitness needs at least one expert")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.experts, self.tasks = list(experts), list(tasks)
        self.method = get_method(method) if isinstance(method, str) else method
        self.batch_size = int(batch_size)
        self.weights = np.ones(len(self.tasks)) if weights is None else np.asarray(weights, dtype=float)
        if len(self.weights) != len(self.tasks):
            raise ValueError("one weight per task")
        params = dict(model.named_parameters())
        touched = merged_parameters(model, self.experts, self.method)
        missing = [p for p in touched if p not in params]
        if missing:
            raise ExpertError(f"experts touch parameters the model does not have: {missing[:3]}")
        self._params = {name: params[name] for name in touched}
        self._pristine = {name: p.detach().clone() for name, p in self._params.items()}
        device = next(model.parameters()).device
        self._factored = self.method.linear and all(isinstance(e, LoraExpert) for e in self.experts)
        self._device = torch.device(device)
        self._cache: dict[str, object] = {}
        self.layout = layout or make_layout("per_expert", touched, len(self.experts))
        if self.layout.n_experts != len(self.experts) or set(self.layout.assignment) != set(touched):
            raise ValueError("the layout was built for other experts or parameters than these")
        self.reset_basis()

    @property
    def dim(self) -> int:
        return self.layout.dim

    def _group_weights(self, flat) -> torch.Tensor:
        """Optimizer coordinates → (…, G, N) coefficients (fp32), with a clear error for a wrong shape."""
        flat = np.asarray(flat, dtype=np.float64)
        if flat.shape[-1:] != (self.dim,) or not np.isfinite(flat).all():
            raise ValueError(f"λ must be {self.dim} finite numbers per candidate, got {flat.tolist()}")
        return torch.from_numpy(self.layout.group_weights(flat).astype(np.float32))

    def _delta_or_zero(self, expert: Expert, name: str) -> torch.Tensor:
        d = expert.delta(name)
        return torch.zeros_like(self._pristine[name], dtype=torch.float32) if d is None else d

    def _concat_factors(self, name: str, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, bool]:
        a_parts, b_parts, owner, scale = [], [], [], []
        fan = False
        for i, e in enumerate(self.experts):
            f = e.factors.get(name)
            if f is None:
                continue
            a_parts.append(f.a)
            b_parts.append(f.b)
            owner += [i] * f.a.shape[0]
            scale += [f.scaling] * f.a.shape[0]
            fan = f.fan_in_fan_out
        a_cat = torch.cat(a_parts).to(device)
        b_cat = torch.cat(b_parts, dim=1).to(device)
        return a_cat, b_cat, torch.tensor(owner, device=device), torch.tensor(scale, device=device), fan

    @torch.no_grad()
    def apply(self, lam: Sequence[float]) -> None:
        """Write θ₀ ⊕ λ into the model's parameters (in place)."""
        groups = self._group_weights(np.asarray(lam, dtype=np.float64).reshape(-1))
        for name, param in self._params.items():
            base = self._pristine[name]
            lam_t = groups[self.layout.group_of(name)]  # this tensor's λ, one per expert
            if self._factored:
                a_cat, b_cat, owner, scale, fan = self._cache[name]
                coeff = lam_t.to(a_cat.device)[owner] * scale  # λ ⊗ s, one entry per rank row
                delta = (b_cat * coeff) @ a_cat  # B_cat · diag(λ ⊗ s) · A_cat, fp32
                param.copy_((base.float() + (delta.T if fan else delta)).to(param.dtype))
            else:
                param.copy_(self.method.merge(base, self._cache[name], lam_t.to(base.device)).to(param.dtype))

    def reset_basis(self) -> None:
        """(Re)build the per-parameter cache from the original experts (basis version 0)."""
        self.basis_version = 0  # how many basis shifts the experts of a nonlinear merge have been rebased through
        for name in self._params:
            if self._factored:
                self._cache[name] = self._concat_factors(name, self._device)
            else:
                deltas = [self._delta_or_zero(e, name).to(self._device) for e in self.experts]
                self._cache[name] = self.method.prepare_with_base(name, deltas, self._pristine[name])

    @torch.no_grad()
    def rebase(self, rows: np.ndarray) -> None:
        """EvoGM's basis shift for a nonlinear merge: expert j becomes the merge at ``rows[j]``.

        ``rows`` are the shift's top points in the coordinates of the experts in use (the optimizer's
        ``shift_rows[k]``). For TIES/DARE, merging merges is not a linear map of the original experts, so the new
        experts are materialised as dense task vectors and prepared again (trimmed / re-dropped with masks
        seeded by the basis version); afterwards candidates are the optimizer's *current* coordinates.
        Task arithmetic needs none of this: its effective coefficients c @ B are exact.
        """
        if self.method.linear:
            raise ValueError(f"{self.method.name} is linear: evaluate the effective coefficients, no rebase needed")
        if len(self.layout.group_names) != 1:
            raise ValueError(
                f"a basis shift of a nonlinear merge needs one coefficient per expert; the {self.layout.name} layout "
                "has several groups (use task_arithmetic, or an optimizer without basis shifts)"
            )
        rows = np.asarray(rows, dtype=np.float64)
        if rows.shape != (self.dim, self.dim) or not np.isfinite(rows).all():
            raise ValueError(f"rebase needs a finite {self.dim}×{self.dim} matrix, got shape {rows.shape}")
        weights = self._group_weights(rows)[:, 0]  # (N, N): expert j's coefficients over the experts in use
        self.basis_version += 1
        for name in self._params:
            prepared = self._cache[name]
            device = self._pristine[name].device
            merged = [self.method.merged_delta(prepared, row.to(device)) for row in weights]
            basis = f"{name}#basis{self.basis_version}"
            self._cache[name] = self.method.prepare_with_base(basis, merged, self._pristine[name])

    @torch.no_grad()
    def restore(self) -> None:
        for name, param in self._params.items():
            param.copy_(self._pristine[name])

    def task_scores(self, lam: Sequence[float]) -> list[float]:
        self.apply(lam)
        return [score(self.model, self.tokenizer, t, self.batch_size) for t in self.tasks]

    def combine(self, scores: Sequence[float]) -> float:
        """The fitness of per-task scores: their weighted mean (the optimizer's own, so the value it ranks and the
        score logged are the same float)."""
        return float(weighted_mean(np.asarray(scores, dtype=float), self.weights))

    def evaluate(self, lam: Sequence[float]) -> float:
        return self.combine(self.task_scores(lam))

    def rows_per_candidate(self) -> int:
        """Forward rows one candidate needs per task at most (options for multiple choice, prompts otherwise)."""
        return max(sum(len(e.options) for e in t.examples) if t.kind == "mc" else len(t.examples) for t in self.tasks)

    def choose_path(self, n_candidates: int) -> str:
        """``"batched"`` on a GPU when one candidate's rows do not fill a forward of ``batch_size`` rows, so that
        stacking candidates fills the device; ``"rebuild"`` otherwise: full forwards need no LoRA side
        computation, and a CPU's throughput does not grow with the batch (measured: docs/performance.md)."""
        if not self._factored or n_candidates < 2 or not self.tasks or self._device.type != "cuda":
            return "rebuild"
        if not all(isinstance(t, Task) for t in self.tasks):  # other backends run their own forwards
            return "rebuild"
        return "batched" if self.rows_per_candidate() < self.batch_size else "rebuild"

    def batched_lora(self) -> BatchedLora:
        """The batched-λ hooks over this fitness's device-resident factors, one coefficient group per tensor
        (enter it with the model at W₀; ``set_rows`` takes (rows, G, N) coefficients)."""
        if not self._factored:
            raise ValueError("the batched-λ forward needs task arithmetic over LoRA experts")
        factors = {name: (*entry[:4], self.layout.group_of(name)) for name, entry in self._cache.items()}
        return BatchedLora(self.model, factors)

    def task_scores_batched(self, lams: np.ndarray) -> list[list[float]]:
        """Per-candidate task scores with every candidate in the same forwards (batched-λ LoRA, W₀ untouched)."""
        if not self._factored:
            raise ValueError("the batched-λ forward needs task arithmetic over LoRA experts")
        if not all(isinstance(t, Task) for t in self.tasks):
            raise ValueError("the batched-λ forward scores JSONL tasks only (lm-eval tasks run their own forwards)")
        lams = np.atleast_2d(np.asarray(lams, dtype=np.float64))
        scores = np.zeros((len(lams), len(self.tasks)))
        for j, correct in enumerate(self._correct_batched(lams, self.tasks)):
            scores[:, j] = np.asarray(correct, dtype=float).mean(axis=1)
        return scores.tolist()

    def _correct_batched(self, lams: np.ndarray, tasks: Sequence[Task]) -> list[np.ndarray]:
        """Per task, whether each candidate (row) answers each example correctly, (P, m) booleans, with every
        candidate in the same forwards (batched-λ LoRA, W₀ untouched)."""
        lam_t = self._group_weights(lams)  # (P, G, N)
        self.restore()
        out = []
        with self.batched_lora() as lora:
            for task in tasks:
                m = len(task.examples)
                stacked = Task(task.name, task.kind, task.examples * len(lams), task.max_new_tokens)

                def set_rows(examples: list[int], m: int = m) -> None:
                    lora.set_rows(lam_t[[k // m for k in examples]])

                correct = correct_per_example(self.model, self.tokenizer, stacked, self.batch_size, set_rows)
                out.append(np.asarray(correct, dtype=bool).reshape(len(lams), m))
        return out

    def correct_counts(self, lams: np.ndarray, tasks: Sequence, path: str = "rebuild") -> np.ndarray:
        """How many examples of each of ``tasks`` each candidate answers correctly, (P, len(tasks)) integers: a
        JSONL task is a :class:`Task` (a subset of this fitness's, e.g. a prefix's new examples), an lm-eval
        task's documents an ``LmEvalDocs`` (which scores itself on the live model); ``path`` as in
        :meth:`evaluate_batch` ("auto" already resolved; "batched" for JSONL tasks only). An empty task counts 0
        without a forward."""
        lams = np.atleast_2d(np.asarray(lams, dtype=np.float64))
        counts = np.zeros((len(lams), len(tasks)), dtype=np.int64)
        live = [j for j, t in enumerate(tasks) if (len(t.examples) if isinstance(t, Task) else len(t))]
        if not live:
            return counts
        if path == "batched":
            if not all(isinstance(tasks[j], Task) for j in live):
                raise ValueError("the batched-λ forward scores JSONL tasks only (lm-eval tasks run their own forwards)")
            for j, correct in zip(live, self._correct_batched(lams, [tasks[j] for j in live])):
                counts[:, j] = correct.sum(axis=1)
            return counts
        for i, row in enumerate(lams):
            self.apply(row)
            for j in live:
                counts[i, j] = self._correct(tasks[j])
        return counts

    def _correct(self, task) -> int:
        """Correct answers of the model as it stands on a JSONL task, or on an lm-eval task's documents."""
        if isinstance(task, Task):
            return sum(correct_per_example(self.model, self.tokenizer, task, self.batch_size))
        return int(task.correct(self.model, self.tokenizer, self.batch_size))

    def evaluate_batch(self, lams: np.ndarray, path: str = "auto") -> list[float]:
        """Fitness of each row of Λ. ``path``: ``"rebuild"`` (one in-place rebuild per candidate),
        ``"batched"`` (all candidates in shared forwards, TA over LoRA only) or ``"auto"`` (:meth:`choose_path`)."""
        lams = np.atleast_2d(lams)
        if path == "auto":
            path = self.choose_path(len(lams))
        if path == "rebuild":
            return [self.evaluate(row) for row in lams]
        if path != "batched":
            raise ValueError(f"path must be auto, rebuild or batched, got {path!r}")
        return [self.combine(s) for s in self.task_scores_batched(lams)]
