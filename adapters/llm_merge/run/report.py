"""After the search: the recommended merge and the baselines scored on every task split, the tables, the Pareto
front, the convergence plot, ``results.json`` and ``merged/`` — or, with ``--pick``, one archived Pareto point
chosen by task weights, scored and saved (nothing searched again).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evogm_opt import Optimizer
from evogm_opt.atomic import atomic_path, atomic_write, default_file_mode
from evogm_opt.fidelity import FidelityScheduler
from llm_merge.merges import get_method
from llm_merge.merges.base import MergeMethod
from llm_merge.model.fitness import MergeFitness
from llm_merge.run.assemble import Assembly
from llm_merge.run.baselines import per_task_table, score_tasks, standard_baselines, summary_table
from llm_merge.run.config import MergeRunConfig
from llm_merge.run.identity import GONE, input_change
from llm_merge.run.journal import RESULTS, Journal, RunError
from llm_merge.run.pareto_report import pareto_summary, pareto_table, plot_front
from llm_merge.run.recipes import CARD, RECIPE, model_card, recipe_text
from llm_merge.run.search import Searched, with_fidelity_column

UNIFORM = "uniform TA (λ = 1/N)"  # the baseline the recommended merge is compared with


def best_entry(opt: Optimizer, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The log entry of the optimizer's recommendation (``recommend().evaluation`` is its log index)."""
    reco = opt.recommend()
    if reco is None:
        raise RunError("every evaluation failed (non-finite scores); nothing to report")
    n = reco.evaluation
    if not 1 <= n <= len(entries) or entries[n - 1]["evaluation"] != n or entries[n - 1]["score"] is None:
        raise RunError(f"the recommended evaluation {n} is not in the log; the log does not belong to this checkpoint")
    return entries[n - 1]


def shifts_of(opt: Optimizer) -> list[Any]:
    """The basis shifts the optimizer has made (EvoGM's ``shift_rows``; none for the others)."""
    return list(getattr(opt, "shift_rows", []))


def apply_entry(fitness: MergeFitness, shift_rows: Sequence[Any], entry: dict[str, Any]) -> None:
    """Put the entry's merge into the model (replaying the basis shifts ``shift_rows`` — the optimizer's, or those
    ``evogm_merge.json`` records — for a nonlinear merge)."""
    if entry["basis_version"] is None:
        fitness.apply(entry["lambda"])
        return
    if len(shift_rows) < entry["basis_version"]:
        raise RunError(f"the merge is at basis version {entry['basis_version']} but {len(shift_rows)} shifts are known")
    fitness.reset_basis()
    for rows in shift_rows[: entry["basis_version"]]:
        fitness.rebase(np.asarray(rows, dtype=np.float64))
    fitness.apply(entry["coordinates"])


def save_merged(asm: Assembly, folder: Path) -> None:
    """The model as it is now (a merge applied), as a Hugging Face folder with the tokenizer."""
    asm.model.save_pretrained(folder, safe_serialization=True)
    asm.tokenizer.save_pretrained(folder)
    mode = default_file_mode(folder)  # safetensors writes 0600 whatever the umask; a teammate must read the model
    for path in folder.iterdir():
        if path.is_file():
            path.chmod(mode)


def plot_convergence(entries: list[dict[str, Any]], path: Path, title: str) -> bool:
    """Every evaluation's score and the best so far; ``False`` where matplotlib is missing."""
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
    try:
        with atomic_path(path) as tmp:  # a fault mid-write leaves the old plot or none, never half of one
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)
    return True


class _NotDrawn(Exception):
    """Nothing to draw (no matplotlib, or one task): the temporary file is dropped, no plot is written."""


def _plot_front_atomically(summary: dict[str, Any], entries: list[dict[str, Any]], path: Path, chosen: int) -> None:
    try:
        with atomic_path(path) as tmp:
            if not plot_front(summary, entries, tmp, chosen):
                raise _NotDrawn
    except _NotDrawn:
        pass


def staging_folder(target: Path) -> Path:
    """A new hidden folder beside ``target`` to write a model folder into before :func:`publish` renames it."""
    staging = target.with_name(f".{target.name}.partial-{os.getpid()}-{time.time_ns()}")
    staging.mkdir()  # the umask's permissions (mkdtemp's would be 0700)
    return staging


def publish(staging: Path, target: Path) -> None:
    """Put the finished ``staging`` folder at ``target``; an earlier one there (this run's previous report) is
    replaced whole. A fault before the first rename leaves ``target`` as it was; one between the two renames
    leaves the earlier folder as ``.<name>.replaced-*``, which the next report puts back first
    (:func:`clear_leftovers`). Replaced copies are deleted only once the new folder is in place."""
    if target.exists():
        os.replace(target, target.with_name(f".{target.name}.replaced-{os.getpid()}-{time.time_ns()}"))
    os.replace(staging, target)
    _remove_replaced(target)


MODEL_FOLDERS = ("merged", "merged-pick")  # the model folders a report publishes


def _replaced(target: Path) -> list[Path]:
    """The earlier copies of ``target`` that :func:`publish` moved aside, oldest first."""

    def written(path: Path) -> int:
        stamp = path.name.rsplit("-", 1)[-1]
        return int(stamp) if stamp.isdigit() else 0

    return sorted(target.parent.glob(f".{target.name}.replaced-*"), key=lambda p: (written(p), p.name))


def _remove_replaced(target: Path) -> None:
    if target.exists():  # never the only copy left
        for path in _replaced(target):
            shutil.rmtree(path, ignore_errors=True)


def clear_leftovers(folder: Path) -> None:
    """Tidy the model folders a killed report left (the caller holds the run folder's lock, so no other process
    is writing them): a ``merged/`` (or ``merged-pick/``) missing because the kill fell between :func:`publish`'s
    two renames is put back from its newest replaced copy; half-written staging folders are removed, and replaced
    copies only where the folder is in place."""
    for name in MODEL_FOLDERS:
        target = folder / name
        copies = _replaced(target)
        if copies and not target.exists():
            os.replace(copies[-1], target)
        _remove_replaced(target)
        for path in folder.glob(f".{name}.partial-*"):
            shutil.rmtree(path, ignore_errors=True)


def score_baselines(cfg: MergeRunConfig, asm: Assembly, tasks: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Score every standard baseline; one fitness per merge method, freed before the next method's."""
    rows: dict[str, dict[str, float]] = {}
    current: tuple[str, MergeFitness] | None = None
    for b in standard_baselines([e.name for e in asm.experts]):
        key = json.dumps([b.method, b.options], sort_keys=True)
        if current is None or current[0] != key:
            current = None  # drop the previous method's fitness before the next one allocates its tensors
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            current = (key, _baseline_fitness(cfg, asm, b.method, b.options))
        current[1].apply(b.weights)
        rows[b.label] = score_tasks(asm.model, asm.tokenizer, tasks, cfg.batch_size)
        current[1].restore()
    return rows


def _baseline_fitness(cfg: MergeRunConfig, asm: Assembly, method: str, options: dict[str, Any]) -> MergeFitness:
    """The run's own fitness where it computes this baseline's merge (one λ per expert); a new one otherwise."""
    fitness = asm.fitness
    reuse = method == cfg.method and not options and fitness.method.linear and fitness.dim == len(asm.experts)
    if reuse and not fitness.layout.simplex:
        return fitness
    return MergeFitness(asm.model, asm.tokenizer, asm.experts, fitness.tasks, get_method(method, **options))


RECORD, RECORD_FORMAT = "evogm_merge.json", 2  # format 1 (before the rebuild command) lacked dtype, layout, kinds


def merge_record(
    cfg: MergeRunConfig,
    method: MergeMethod,
    best: dict[str, Any],
    shift_rows: Sequence[Any],
    inputs: dict[str, Any] | None = None,
) -> dict:
    """What ``evogm_merge.json`` holds: everything ``evogm-opt merge --rebuild`` needs besides the base and expert
    folders it names — how they load, the method with every option resolved (DARE's seed included), the layout,
    the best entry (λ, or the coordinates and the shift rows after EvoGM basis shifts). With ``inputs`` (``run.json``'s
    content identities): per expert and for the base, what the run loaded and whether it is still there, unchanged,
    when the report is written (``--rebuild`` refuses an expert that changed)."""
    record = {
        "format": RECORD_FORMAT,
        "base": cfg.base,
        "model_type": cfg.model_type,
        "tokenizer": cfg.tokenizer,
        "dtype": cfg.dtype,
        "device": cfg.device,
        "experts": [e.path for e in cfg.experts],
        "expert_names": [e.name for e in cfg.experts],
        "expert_kinds": [e.kind for e in cfg.experts],
        "on_other_base": cfg.on_other_base,
        "method": cfg.method,
        "method_options": dict(method.options),
        "layout": {
            "name": cfg.layout,
            "groups": cfg.layout_groups,
            "simplex": cfg.simplex,
            "sharpness": cfg.simplex_sharpness,
        },
        **best,
    }
    if best["basis_version"]:  # a nonlinear merge after basis shifts: the shifts rebuild its experts
        record["shift_rows"] = [np.asarray(r).tolist() for r in shift_rows[: best["basis_version"]]]
    if inputs is not None:
        experts = inputs.get("experts", {})
        record["base_input"] = _input_record(cfg.base, inputs.get("base"))
        record["expert_inputs"] = [{"name": e.name, **_input_record(e.path, experts.get(e.name))} for e in cfg.experts]
    return record


def _input_record(source: str, identity: dict[str, Any] | None) -> dict[str, Any]:
    """An input as the run loaded it and as it is now (an expert moved or deleted after loading is noted)."""
    entry: dict[str, Any] = {"path": source, "identity": identity}
    if identity is None or "hub" in identity:
        return entry
    change = input_change(source, identity)
    entry["present_at_report"] = change != GONE
    entry["unchanged_at_report"] = change is None
    return entry


def save_run_merge(
    cfg: MergeRunConfig, opt: Optimizer, asm: Assembly, best: dict[str, Any], folder: Path, journal: Journal
) -> None:
    """Into ``folder`` (the staging folder of ``merged/``): the model as it is now (``best`` applied),
    ``evogm_merge.json`` (what rebuilds it) and ``mergekit.yml`` (mergekit's recipe for it, or why there is none)."""
    save_merged(asm, folder)
    record = merge_record(cfg, asm.fitness.method, best, shifts_of(opt), journal.inputs())
    atomic_write(folder / RECORD, json.dumps(record, indent=2))
    atomic_write(folder / RECIPE, recipe_text(cfg, asm.experts, best, asm.fitness.layout, asm.model.config))


def invoking_command(journal: Journal) -> str:
    """The ``evogm-opt merge`` command line of this process, or (run from Python) its equivalent."""
    if "merge" in sys.argv[1:]:
        return shlex.join(["evogm-opt", *sys.argv[sys.argv.index("merge") :]])
    return f"evogm-opt merge CONFIG.yaml  # run from Python; the resolved config is {journal.folder / 'run.json'}"


def report(
    cfg: MergeRunConfig, opt: Optimizer, searched: Searched, asm: Assembly, tasks: dict[str, Any], journal: Journal
) -> tuple[dict[str, Any], str]:
    """Score the recommended merge (saved to ``merged/``) and the baselines; write results, Pareto and plots."""
    best = best_entry(opt, searched.entries)
    if best["basis_version"] is None:  # the coefficients per group and expert, for the report
        coefficients = asm.fitness.layout.describe(np.asarray(best["lambda"]), [e.name for e in asm.experts])
        best = {**best, "coefficients": coefficients}
    label = f"{cfg.optimizer.name} λ*"
    clear_leftovers(journal.folder)
    apply_entry(asm.fitness, shifts_of(opt), best)
    rows = {label: score_tasks(asm.model, asm.tokenizer, tasks, cfg.batch_size)}
    staging = staging_folder(journal.folder / "merged") if cfg.save_model else None
    try:
        if staging is not None:
            save_run_merge(cfg, opt, asm, best, staging, journal)
        asm.fitness.restore()
        if cfg.baselines:
            rows.update(score_baselines(cfg, asm, tasks))
        table = _summary(cfg, rows, label, searched.cost)
        results = {
            "fingerprint": cfg.fingerprint(),
            "optimizer": cfg.optimizer.name,
            "method": cfg.method,
            "budget": cfg.optimizer.budget,
            "stopping": cfg.stopping.model_dump(),
            "n_evals": candidates_told(opt),
            "stop_reason": searched.reason,
            "best": best,
            "rows": rows,
            "search_seconds": searched.entries[-1]["elapsed_s"] if searched.entries else 0.0,
            "table": table,
        }
        if searched.cost is not None:  # only with fidelity: a run without it writes what it always wrote
            results.update(searched.cost)
            results["rows_fidelity"] = {name: "full" for name in rows}
        if getattr(opt, "archive", None) is not None:
            results["pareto"] = _pareto(cfg, opt, searched.entries, journal, best["evaluation"])
            results["table"] = table = table + _pareto_section(results["pareto"])
        if staging is not None:
            card = model_card(cfg, asm.experts, asm.fitness.layout, results, invoking_command(journal))
            atomic_write(staging / CARD, card)
            publish(staging, journal.folder / "merged")
        title = f"{cfg.optimizer.name} · {cfg.method} · {len(asm.experts)} experts"
        plot_convergence(searched.entries, journal.folder / "convergence.png", title)
        journal.write_json(RESULTS, results)  # last: results.json marks the run complete
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return results, table


def candidates_told(opt: Any) -> int:
    """Evaluations as ``optimizer.budget`` counts them: the candidates told to the optimizer (a fidelity
    scheduler's inner optimizer's; its measurements, one per rung, are counted apart)."""
    return opt.inner.n_evals if isinstance(opt, FidelityScheduler) else opt.n_evals


def _summary(
    cfg: MergeRunConfig, rows: dict[str, dict[str, float]], label: str, cost: dict[str, Any] | None = None
) -> str:
    """The summary and per-task tables, and with baselines the verdict against uniform task arithmetic. With
    fidelity (``cost``), each row says at which fidelity it was measured (every row of the report is scored on
    every example of its split) and a line says what the search spent."""
    seen, unseen = [t.name for t in cfg.seen], [t.name for t in cfg.unseen]
    summary, per_task = summary_table(rows, seen, unseen), per_task_table(rows)
    if cost is not None:
        summary, per_task = (with_fidelity_column(t, "full") for t in (summary, per_task))
    table = summary + "\n\nPer task:\n\n" + per_task
    if cost is not None:
        table += "\n\n" + cost_line(cost)
    if not cfg.baselines:
        return table
    gaps = [rows[label][f"{n}/test"] - rows[UNIFORM][f"{n}/test"] for n in seen if f"{n}/test" in rows[label]]
    gap = np.mean(gaps or [np.nan])
    return table + (
        f"\n\n{label} vs uniform task arithmetic, seen tasks, test split: {gap:+.3f} "
        f"({'better' if gap > 0 else 'not better'})."
    )


def cost_line(cost: dict[str, Any]) -> str:
    """What a search with fidelity spent, in words (the report's last line before the verdict)."""
    plan = cost["fidelity"]
    full = cost["tokens_at_full_fidelity"]
    share = f" ({cost['tokens_spent'] / full:.0%})" if full else ""
    rungs = ", ".join(str(f) for f in plan["rungs"])
    return (
        f"Every row is measured at full fidelity (every example of its split). The search: {cost['candidates']} "
        f"candidates, {cost['measurements']} measurements at rungs of {rungs} of {plan['full']} validation examples "
        f"(eta {plan['eta']}, at least {plan['min_examples']} per task); {cost['tokens_spent']} tokens spent"
        f"{share} of the {full} that scoring every candidate on every example would cost; {cost['examples_spent']} "
        "examples."
    )


def _pareto(
    cfg: MergeRunConfig, opt: Optimizer, entries: list[dict[str, Any]], journal: Journal, chosen: int
) -> dict[str, Any]:
    """The front of the seen tasks as ``pareto.json`` and ``pareto.png`` (``chosen``: the reported evaluation)."""
    summary = pareto_summary(opt, entries, [t.name for t in cfg.seen])
    journal.write_json("pareto.json", summary)
    _plot_front_atomically(summary, entries, journal.folder / "pareto.png", chosen)
    return summary


def _pareto_section(summary: dict[str, Any]) -> str:
    return (
        f"\n\nPareto front of the seen tasks (validation), {len(summary['front'])} points — pick one for other "
        f"task weights with --pick:\n\n" + pareto_table(summary)
    )


def pick_refusal(cfg: MergeRunConfig, weights: dict[str, float]) -> str | None:
    """Why ``--pick`` with these weights cannot be answered from this config (``None``: it can): a task that is
    not a seen task, or a single seen task (no Pareto front). Known from the config alone, so it is said before
    the model loads."""
    names = [t.name for t in cfg.seen]
    if cfg.fidelity is not None:
        return "--pick: a run with fidelity has no Pareto archive (its optimizer is told the tasks' weighted mean)"
    unknown = sorted(set(weights) - set(names))
    if unknown:
        return f"--pick: unknown seen tasks {unknown}; seen tasks: {names}"
    if len(names) < 2:
        return f"--pick: the run has no Pareto archive (one seen task); seen tasks: {names}"
    return None


def pick(
    cfg: MergeRunConfig,
    weights: dict[str, float],
    opt: Optimizer,
    entries: list[dict[str, Any]],
    asm: Assembly,
    tasks: dict[str, Any],
    journal: Journal,
) -> tuple[dict[str, Any], str]:
    """The archived point that is best for the user's task weights, scored and saved; nothing re-searched."""
    names = [t.name for t in cfg.seen]
    refusal = pick_refusal(cfg, weights)
    if refusal is not None or opt.archive is None:
        raise RunError(refusal or f"--pick: the run has no Pareto archive; seen tasks: {names}")
    point = opt.archive.pick([float(weights.get(n, 0.0)) for n in names])
    entry = entries[point.evaluation - 1]
    clear_leftovers(journal.folder)
    apply_entry(asm.fitness, shifts_of(opt), entry)
    row = score_tasks(asm.model, asm.tokenizer, tasks, cfg.batch_size)
    if cfg.save_model:
        staging = staging_folder(journal.folder / "merged-pick")
        try:
            save_merged(asm, staging)
            publish(staging, journal.folder / "merged-pick")
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already where it was published
    asm.fitness.restore()
    label = "picked (" + ", ".join(f"{n}={weights.get(n, 0.0):g}" for n in names) + ")"
    result = {"weights": {n: float(weights.get(n, 0.0)) for n in names}, "entry": entry, "rows": {label: row}}
    journal.write_json("pick.json", result)
    table = summary_table({label: row}, names, [t.name for t in cfg.unseen]) + "\n\n" + per_task_table({label: row})
    return result, table
