"""``evogm-opt merge CONFIG.yaml``: search merge coefficients, checkpointing every step, and report.

The output folder holds:

- ``run.json`` — the resolved config and its fingerprint (a resume with another config is refused);
- ``checkpoint.evogm`` — the optimizer, saved atomically after every ``tell``;
- ``log.jsonl`` — one line per evaluation (λ, per-task scores, best so far), written *before* the ``tell`` it
  belongs to, so after a crash the log is cut back to the checkpoint and the step is re-run; since evaluation is
  deterministic and the optimizer resumes exactly, the continuation is the same as an uninterrupted run (on the
  same device and torch thread count);
- at the end: ``results.json`` (best λ and baselines on val/test of seen and unseen tasks), ``convergence.png``
  and ``merged/`` (the best merge as a Hugging Face folder: safetensors, config, tokenizer).

For nonlinear merges (TIES, DARE) under EvoGM, a basis shift materialises the round's top merges as the new
experts (:meth:`MergeFitness.rebase`) and candidates are the optimizer's current coordinates; the shifts are
recorded in the checkpoint, so a resume replays them.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evogm_opt import GenerativeOptimizer, Optimizer
from evogm_opt.minimize import OPTIMIZERS
from evogm_opt.stopping import StoppingMonitor, StoppingRules
from llm_merge.baselines import per_task_table, score_tasks, standard_baselines, summary_table
from llm_merge.fitness import MergeFitness
from llm_merge.layouts import make_layout
from llm_merge.loading import load_base, load_expert
from llm_merge.merges import get_method
from llm_merge.pareto_report import pareto_summary, pareto_table, plot_front
from llm_merge.run_config import MergeRunConfig
from llm_merge.tasks import Task

CHECKPOINT, LOG, RUN, RESULTS = "checkpoint.evogm", "log.jsonl", "run.json", "results.json"


class RunError(RuntimeError):
    """A run that cannot continue without losing or mixing up results (the message says what to do)."""


@dataclass
class RunResult:
    results: dict[str, Any]
    table: str
    output: Path
    seconds: float


# ---------------------------------------------------------------------- output folder
def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _claim_output(cfg: MergeRunConfig, restart: bool) -> Path:
    """Create the output folder, or check that it holds a run of this very config."""
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    run_file = out / RUN
    if run_file.exists() and restart:
        keep = out / f"previous-{time.strftime('%Y%m%d-%H%M%S')}"
        keep.mkdir()
        for name in (RUN, CHECKPOINT, LOG, RESULTS):
            if (out / name).exists():
                shutil.move(str(out / name), str(keep / name))
    elif run_file.exists():
        try:
            previous = json.loads(run_file.read_text())["fingerprint"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise RunError(f"{run_file} is unreadable ({exc}); use another output folder or --restart") from exc
        if previous != cfg.fingerprint():
            raise RunError(
                f"{out} holds a run of a different config (fingerprint {previous}, this one {cfg.fingerprint()}); "
                "use another output folder, or --restart to set the old run aside (it is moved, not deleted)"
            )
    if not run_file.exists():
        _atomic_write(run_file, json.dumps({"fingerprint": cfg.fingerprint(), "config": cfg.to_dict()}, indent=2))
    return out


def _read_log(path: Path, n_evals: int) -> list[dict[str, Any]]:
    """The log's first ``n_evals`` entries (lines past the checkpoint are from a step that is re-run)."""
    if not path.exists():
        entries: list[dict[str, Any]] = []
    else:
        entries = []
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                break  # a line torn by the crash: it and anything after it belong to the re-run step
            if "evaluation" in entry:  # event lines (why the last invocation stopped) are written again
                entries.append(entry)
    if len(entries) < n_evals:
        raise RunError(
            f"{path} has {len(entries)} evaluations but the checkpoint {n_evals}: the log was edited or lost; "
            "restore it or use --restart"
        )
    entries = entries[:n_evals]
    _atomic_write(path, "".join(json.dumps(e) + "\n" for e in entries))
    return entries


# ---------------------------------------------------------------------- loading
def _load_tasks(cfg: MergeRunConfig) -> dict[str, Any]:
    tasks: dict[str, Any] = {}
    for spec in (*cfg.seen, *cfg.unseen):
        for split in ("val", "test"):
            source = getattr(spec, split)
            if source is None:
                continue
            if spec.lm_eval is not None:
                from llm_merge.lm_eval_tasks import LmEvalTask

                task = LmEvalTask(spec.name, source, **spec.lm_eval)
                task.check()
            else:
                task = Task.from_jsonl(source, name=spec.name, max_new_tokens=spec.max_new_tokens)
            tasks[f"{spec.name}/{split}"] = task
    return tasks


def _new_optimizer(cfg: MergeRunConfig, dim: int) -> Optimizer:
    spec = cfg.optimizer
    kwargs: dict[str, Any] = {"seed": spec.seed, "maximize": True, **spec.options}
    if spec.popsize is not None:
        kwargs["popsize"] = spec.popsize
    opt = OPTIMIZERS[spec.name](dim, **kwargs)
    if len(cfg.seen) >= 2:  # told one score per task: searched on their weighted mean, the front archived
        opt.objective_weights = np.array([t.weight for t in cfg.seen])
    return opt


# ---------------------------------------------------------------------- the search
def _monitor(cfg: MergeRunConfig, entries: list[dict[str, Any]]) -> tuple[StoppingMonitor, str | None]:
    """The stopping monitor, fed the logged generations again (so a resumed run counts stagnation exactly)."""
    s = cfg.stopping
    monitor = StoppingMonitor(StoppingRules(cfg.optimizer.budget, s.max_seconds, s.patience, s.min_improvement), True)
    reason = None
    for i, e in enumerate(entries):
        if i + 1 == len(entries) or entries[i + 1]["generation"] != e["generation"]:
            reason = monitor.update(e["best"], e["evaluation"], e["elapsed_s"])
    return monitor, reason


def _search(cfg, fitness: MergeFitness, opt: Optimizer, out: Path, progress: bool) -> tuple[list[dict], str | None]:
    from tqdm.auto import tqdm

    log_path, ckpt = out / LOG, out / CHECKPOINT
    entries = _read_log(log_path, opt.n_evals)
    rebasing = isinstance(opt, GenerativeOptimizer) and not fitness.method.linear
    if rebasing:
        for rows in opt.shift_rows:  # replay the shifts a resumed run has been through
            fitness.rebase(rows)
        opt.on_basis_shift = lambda _matrix: fitness.rebase(opt.shift_rows[-1])
    generation = entries[-1]["generation"] if entries else 0
    best = max((e["score"] for e in entries if e["score"] is not None), default=float("-inf"))
    start = time.perf_counter() - (entries[-1]["elapsed_s"] if entries else 0.0)
    monitor, reason = _monitor(cfg, entries)
    bar = tqdm(total=cfg.optimizer.budget, initial=opt.n_evals, unit="eval", desc="merge search", disable=not progress)
    if np.isfinite(best):
        bar.set_postfix(best=f"{best:.4f}", generation=generation)
    while reason is None and opt.n_evals < cfg.optimizer.budget and not opt.stop():
        x = opt.ask(min(opt.popsize, cfg.optimizer.budget - opt.n_evals))
        version, coords = None, None
        if rebasing:
            versions, coords = opt.pending_coordinates(x)
            if not (versions == fitness.basis_version).all():
                raise RunError(f"asked rows of basis {set(versions.tolist())}, experts are at {fitness.basis_version}")
            version = fitness.basis_version
        generation += 1
        path = "rebuild" if rebasing else cfg.eval_path
        if path == "auto":
            path = fitness.choose_path(len(x))
        if path == "batched":
            all_scores = fitness.task_scores_batched(x)
        else:
            all_scores = [fitness.task_scores(coords[i] if rebasing else row) for i, row in enumerate(x)]
        lines, values = [], []
        for i, row in enumerate(x):
            scores = all_scores[i]
            value = fitness.combine(scores)
            values.append(value)
            if np.isfinite(value):
                best = max(best, value)
            lines.append(
                {
                    "evaluation": opt.n_evals + i + 1,
                    "generation": generation,
                    "lambda": row.tolist(),
                    "basis_version": version,
                    "coordinates": None if coords is None else coords[i].tolist(),
                    "score": value if np.isfinite(value) else None,
                    "tasks": {t.name: s for t, s in zip(fitness.tasks, scores)},
                    "best": best if np.isfinite(best) else None,
                    "elapsed_s": round(time.perf_counter() - start, 3),
                }
            )
        with open(log_path, "a") as fh:  # the log first: a crash before the checkpoint re-runs this step
            fh.write("".join(json.dumps(e) + "\n" for e in lines))
            fh.flush()
            os.fsync(fh.fileno())
        opt.tell(x, np.asarray(all_scores, dtype=float) if len(fitness.tasks) >= 2 else values)
        opt.save(ckpt)
        entries += lines
        bar.update(len(x))
        bar.set_postfix(best=f"{best:.4f}", generation=generation)
        reason = monitor.update(lines[-1]["best"], opt.n_evals, lines[-1]["elapsed_s"])
    bar.close()
    fitness.restore()
    reason = reason or opt.stop_reason or f"evaluation budget: {opt.n_evals} of {cfg.optimizer.budget} used"
    with open(log_path, "a") as fh:
        fh.write(json.dumps({"event": "stop", "reason": reason, "evaluations": opt.n_evals}) + "\n")
    return entries, reason


def _best_entry(opt: Optimizer, entries: list[dict[str, Any]]) -> dict[str, Any]:
    reco = opt.recommend()
    if reco is None:
        raise RunError("every evaluation failed (non-finite scores); nothing to report")
    matches = [e for e in entries if np.array_equal(np.asarray(e["lambda"]), reco.x) and e["score"] is not None]
    if not matches:
        raise RunError("the recommended point is not in the log; the log does not belong to this checkpoint")
    return max(matches, key=lambda e: e["score"])


def _apply_entry(fitness: MergeFitness, opt: Optimizer, entry: dict[str, Any]) -> None:
    """Put the entry's merge into the model (replaying basis shifts for a nonlinear merge)."""
    if entry["basis_version"] is None:
        fitness.apply(entry["lambda"])
        return
    fitness.reset_basis()
    for rows in opt.shift_rows[: entry["basis_version"]]:
        fitness.rebase(rows)
    fitness.apply(entry["coordinates"])


def _plot(entries: list[dict[str, Any]], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    n = [e["evaluation"] for e in entries]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.scatter(n, [np.nan if e["score"] is None else e["score"] for e in entries], s=10, alpha=0.45, label="evaluated")
    ax.step(n, [np.nan if e["best"] is None else e["best"] for e in entries], where="post", color="C3", label="best")
    ax.set_xlabel("evaluation")
    ax.set_ylabel("validation score (seen tasks)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _baselines(cfg, model, tok, experts, fitness: MergeFitness, tasks) -> dict[str, dict[str, float]]:
    """Score every standard baseline; one fitness per merge method, freed before the next method's."""
    rows: dict[str, dict[str, float]] = {}
    current: tuple[str, MergeFitness] | None = None
    for b in standard_baselines([e.name for e in experts]):
        key = json.dumps([b.method, b.options], sort_keys=True)
        if current is None or current[0] != key:
            current = None  # drop the previous method's fitness before the next one allocates its tensors
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            reuse = b.method == cfg.method and not b.options and fitness.method.linear and fitness.dim == len(experts)
            reuse = reuse and not fitness.layout.simplex
            method = get_method(b.method, **b.options)
            current = (key, fitness if reuse else MergeFitness(model, tok, experts, fitness.tasks, method))
        current[1].apply(b.weights)
        rows[b.label] = score_tasks(model, tok, tasks, cfg.batch_size)
        current[1].restore()
    return rows


# ---------------------------------------------------------------------- entry point
def run_merge(
    cfg: MergeRunConfig,
    *,
    restart: bool = False,
    progress: bool = True,
    say=print,
    pick: dict[str, float] | None = None,
) -> RunResult:
    """Search (or resume), then report. With ``pick`` (task -> weight), no search step is added: the archived
    Pareto point with the best weighted mean is scored on every task and saved to ``merged-pick/``."""
    start = time.perf_counter()
    out = _claim_output(cfg, restart)
    model, tok = load_base(cfg.base, cfg.dtype, cfg.device, cfg.tokenizer)
    experts = [load_expert(e.path, model, tok, e.name, e.kind) for e in cfg.experts]
    tasks = _load_tasks(cfg)
    seen_val = [tasks[f"{t.name}/val"] for t in cfg.seen]
    method = get_method(cfg.method, **cfg.method_options)
    touched = sorted(set().union(*(e.params for e in experts)))
    layout = make_layout(
        cfg.layout,
        touched,
        len(experts),
        groups=cfg.layout_groups,
        n_layers=getattr(model.config, "num_hidden_layers", None),
        simplex=cfg.simplex,
        sharpness=cfg.simplex_sharpness,
    )
    weights = [t.weight for t in cfg.seen]
    fitness = MergeFitness(model, tok, experts, seen_val, method, weights, cfg.batch_size, layout)
    say(f"{len(experts)} experts ({', '.join(e.name for e in experts)}), {len(tasks)} task splits, on {model.device}")

    ckpt = out / CHECKPOINT
    if ckpt.exists():
        try:
            opt = Optimizer.load(ckpt)
        except (ValueError, KeyError, OSError) as exc:
            raise RunError(f"{ckpt}: cannot resume ({exc}); use --restart to set it aside") from exc
        if opt.dim != fitness.dim:
            raise RunError(f"{ckpt} searches {opt.dim} coefficients but this config has {fitness.dim}")
        say(f"resuming from {ckpt} at evaluation {opt.n_evals}")
    else:
        opt = _new_optimizer(cfg, fitness.dim)
    shifts = isinstance(opt, GenerativeOptimizer) and opt.config.n_rounds != 1
    if shifts and not method.linear and len(layout.group_names) > 1:
        raise RunError(
            f"{cfg.method} with the {cfg.layout} layout under EvoGM's basis shifts is not defined (a shift makes "
            "whole merges the new experts); use task_arithmetic, layout per_expert, or an optimizer without shifts"
        )
    entries, stop_reason = _search(cfg, fitness, opt, out, progress)
    say(f"search ended: {stop_reason}")
    seen_names = [t.name for t in cfg.seen]
    if pick is not None:
        return _pick(cfg, pick, opt, entries, fitness, model, tok, tasks, out, start)
    search_seconds = entries[-1]["elapsed_s"] if entries else 0.0

    best = _best_entry(opt, entries)
    if best["basis_version"] is None:  # the coefficients per group and expert, for the report
        best = {**best, "coefficients": layout.describe(np.asarray(best["lambda"]), [e.name for e in experts])}
    label = f"{cfg.optimizer.name} λ*"
    _apply_entry(fitness, opt, best)
    rows = {label: score_tasks(model, tok, tasks, cfg.batch_size)}
    if cfg.save_model:
        merged = out / "merged"
        model.save_pretrained(merged, safe_serialization=True)
        tok.save_pretrained(merged)
        provenance = {"base": cfg.base, "experts": [e.path for e in cfg.experts], "method": cfg.method, **best}
        _atomic_write(merged / "evogm_merge.json", json.dumps(provenance, indent=2))
    fitness.restore()
    if cfg.baselines:
        rows.update(_baselines(cfg, model, tok, experts, fitness, tasks))

    seen, unseen = [t.name for t in cfg.seen], [t.name for t in cfg.unseen]
    table = summary_table(rows, seen, unseen) + "\n\nPer task:\n\n" + per_task_table(rows)
    if cfg.baselines:
        gap = np.mean(
            [
                rows[label][f"{n}/test"] - rows["uniform TA (λ = 1/N)"][f"{n}/test"]
                for n in seen
                if f"{n}/test" in rows[label]
            ]
            or [np.nan]
        )
        table += (
            f"\n\n{label} vs uniform task arithmetic, seen tasks, test split: {gap:+.3f} "
            f"({'better' if gap > 0 else 'not better'})."
        )
    results = {
        "fingerprint": cfg.fingerprint(),
        "optimizer": cfg.optimizer.name,
        "method": cfg.method,
        "budget": cfg.optimizer.budget,
        "n_evals": opt.n_evals,
        "stop_reason": stop_reason,
        "best": best,
        "rows": rows,
        "search_seconds": search_seconds,
        "table": table,
    }
    if opt.archive is not None:
        summary = pareto_summary(opt, entries, seen_names)
        results["pareto"] = summary
        _atomic_write(out / "pareto.json", json.dumps(summary, indent=2))
        plot_front(summary, entries, out / "pareto.png")
        table += (
            f"\n\nPareto front of the seen tasks (validation), {len(summary['front'])} points — pick one for other "
            f"task weights with --pick:\n\n" + pareto_table(summary)
        )
        results["table"] = table
    _atomic_write(out / RESULTS, json.dumps(results, indent=2))
    _plot(entries, out / "convergence.png", f"{cfg.optimizer.name} · {cfg.method} · {len(experts)} experts")
    return RunResult(results, table, out, time.perf_counter() - start)


def _pick(cfg, pick, opt, entries, fitness, model, tok, tasks, out: Path, start: float) -> RunResult:
    """The archived point that is best for the user's task weights, scored and saved; nothing re-searched."""
    names = [t.name for t in cfg.seen]
    unknown = sorted(set(pick) - set(names))
    if unknown or opt.archive is None:
        why = f"unknown seen tasks {unknown}" if unknown else "the run has no Pareto archive (one seen task)"
        raise RunError(f"--pick: {why}; seen tasks: {names}")
    point = opt.archive.pick([float(pick.get(n, 0.0)) for n in names])
    entry = entries[point.evaluation - 1]
    _apply_entry(fitness, opt, entry)
    row = score_tasks(model, tok, tasks, cfg.batch_size)
    if cfg.save_model:
        model.save_pretrained(out / "merged-pick", safe_serialization=True)
        tok.save_pretrained(out / "merged-pick")
    fitness.restore()
    label = "picked (" + ", ".join(f"{n}={pick.get(n, 0.0):g}" for n in names) + ")"
    result = {"weights": {n: float(pick.get(n, 0.0)) for n in names}, "entry": entry, "rows": {label: row}}
    _atomic_write(out / "pick.json", json.dumps(result, indent=2))
    table = summary_table({label: row}, names, [t.name for t in cfg.unseen]) + "\n\n" + per_task_table({label: row})
    return RunResult(result, table, out, time.perf_counter() - start)
