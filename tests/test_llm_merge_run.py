"""``evogm-opt merge CONFIG.yaml``: schema checks, outputs, exact resume after crashes, expert folders, rebase."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the llm_merge adapter needs the `llm` extra")
yaml = pytest.importorskip("yaml", reason="the llm_merge adapter needs the `llm` extra")

from llm_merge import ExpertError, get_method, load_lora_expert  # noqa: E402
from llm_merge.demo.cpu_demo import char_tokenizer  # noqa: E402
from llm_merge.model.fitness import MergeFitness  # noqa: E402
from llm_merge.model.loading import load_expert  # noqa: E402
from llm_merge.run.config import ConfigError, load_config, parse_config  # noqa: E402
from llm_merge.run.pipeline import RunError, run_merge  # noqa: E402

from evogm_opt import Optimizer  # noqa: E402
from tests.test_llm_merge_experts import base_shapes, make_adapter, tiny_qwen  # noqa: E402
from tests.test_llm_merge_fitness import write_tasks  # noqa: E402


def make_workspace(root: Path, write: Callable[[Path], None]) -> Path:
    """A base folder, three LoRA expert folders and val/test task files (``write(folder)`` writes a split's), as a
    user would have them."""
    tiny_qwen().save_pretrained(root / "base")
    char_tokenizer().save_pretrained(root / "base")
    for i in range(3):
        make_adapter(root / f"expert{i}", seed=i + 1)
    for split in ("val", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
        write(root / split)
    return root


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("merge"), write_tasks)


def config_dict(**overrides) -> dict:
    cfg = {
        "base": "base",
        "dtype": "float32",
        "device": "cpu",
        "experts": ["expert0", {"path": "expert1", "name": "second"}, "expert2"],
        "tasks": {
            "seen": [{"name": "mc", "val": "val/mc.jsonl", "test": "test/mc.jsonl"}],
            "unseen": [{"name": "gen", "val": "val/gen.jsonl", "test": "test/gen.jsonl", "max_new_tokens": 3}],
        },
        "optimizer": {"name": "evogm", "budget": 12, "seed": 3},
        "output": "run",
    }
    cfg.update(overrides)
    return cfg


def write_config(root: Path, name: str, **overrides) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config_dict(output=f"runs/{name}", **overrides)))
    return path


def quiet_run(path: Path, **kw):
    return run_merge(load_config(path), progress=False, say=lambda *a: None, **kw)


def log_without_timing(folder: Path) -> list[dict]:
    """Evaluation lines without their timing, and the stop event(s)."""
    entries = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in e.items() if k != "elapsed_s"} for e in entries]


def evaluations(folder: Path) -> list[dict]:
    return [e for e in log_without_timing(folder) if "evaluation" in e]


def test_schema_errors_name_the_problem(workspace):
    with pytest.raises(ConfigError, match="unknown keys \\['optimiser'\\]"):
        parse_config({**config_dict(), "optimiser": {}}, workspace)
    with pytest.raises(ConfigError, match="missing keys \\['experts'\\]"):
        parse_config({k: v for k, v in config_dict().items() if k != "experts"}, workspace)
    with pytest.raises(ConfigError, match="not one of"):
        parse_config(config_dict(method="slurp"), workspace)
    with pytest.raises(ConfigError, match="density"):
        parse_config(config_dict(method={"name": "ties", "density": 1.5}), workspace)
    with pytest.raises(ConfigError, match=r"optimizer\.name"):
        parse_config(config_dict(optimizer={"name": "adam"}), workspace)
    with pytest.raises(ConfigError, match="budget"):
        parse_config(config_dict(optimizer={"budget": 0}), workspace)
    with pytest.raises(ConfigError, match="unique"):
        parse_config(config_dict(experts=["expert0", "expert0"]), workspace)
    with pytest.raises(ConfigError, match="both seen and unseen"):
        tasks = {"seen": [{"name": "a", "val": "val/mc.jsonl"}], "unseen": [{"name": "a", "val": "val/gen.jsonl"}]}
        parse_config(config_dict(tasks=tasks), workspace)
    cfg = parse_config(config_dict(method={"name": "ties", "density": 0.5}), workspace)
    assert cfg.base == str(workspace / "base") and cfg.experts[1].name == "second"
    assert cfg.seen[0].val == str(workspace / "val/mc.jsonl") and cfg.method_options == {"density": 0.5}
    hub = parse_config(config_dict(base="Qwen/Qwen2.5-1.5B"), workspace)
    assert hub.base == "Qwen/Qwen2.5-1.5B"  # not a folder: a hub id, left alone


@pytest.mark.parametrize("name", ["evogm-paper-no-rounds", "evogm-paper-single-generator"])
def test_a_registry_name_removed_in_0_2_says_where_it_went_and_how_to_merge_with_it(workspace, name):
    """The refusal names the bench variant and the optimizer block that builds the same configuration in a merge;
    that block, pasted into a config, is accepted and builds the bench's configuration exactly."""
    from evogm_bench.research import variants

    from evogm_opt import registry

    with pytest.raises(ConfigError) as refused:
        parse_config(config_dict(optimizer={"name": name}), workspace)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"optimizer.name: {name!r} is not one of [")
    assert f"bench variant (evogm-opt bench --optimizers {name})" in message
    block = yaml.safe_load(message.split("in a merge, write ")[1])["optimizer"]
    cfg = parse_config(config_dict(optimizer=block), workspace)
    opt = registry.create(cfg.optimizer.name, 4, seed=0, maximize=True, **cfg.optimizer.options)
    assert opt.config == variants.VARIANTS[name].config


def test_a_run_writes_log_checkpoint_results_plot_and_a_loadable_merged_model(workspace):
    umask = os.umask(0o022)
    try:
        result = quiet_run(write_config(workspace, "full"))
    finally:
        os.umask(umask)
    out = workspace / "runs" / "full"
    for name in ("run.json", "checkpoint.evogm", "log.jsonl", "results.json", "convergence.png"):
        assert (out / name).is_file(), name
    for path in (out / "checkpoint.evogm", out / "results.json", out / "merged" / "model.safetensors"):
        assert path.stat().st_mode & 0o777 == 0o644, path  # readable by a teammate under umask 022
    log = evaluations(out)
    assert log_without_timing(out)[-1] == {
        "event": "stop",
        "reason": "evaluation budget: 12 of 12 evaluations used",
        "evaluations": 12,
    }
    assert [e["evaluation"] for e in log] == list(range(1, 13))
    assert all(b["best"] >= a["best"] for a, b in zip(log, log[1:]))
    assert log[-1]["best"] == max(e["score"] for e in log)
    res = json.loads((out / "results.json").read_text())
    assert res["n_evals"] == 12 and res["best"]["score"] == log[-1]["best"]
    labels = set(res["rows"])
    assert {"evogm λ*", "base", "expert second", "uniform TA (λ = 1/N)"} <= labels
    assert {"TIES (density 0.2, λ = 1)", "DARE (density 0.5, λ = 1/N)"} <= labels
    assert set(res["rows"]["base"]) == {"mc/val", "mc/test", "gen/val", "gen/test"}
    assert res["rows"]["evogm λ*"]["mc/val"] == pytest.approx(res["best"]["score"])
    assert "| model | seen val |" in result.table

    # the saved folder is the merge at the best λ: equal to applying it to a fresh base
    merged = transformers.AutoModelForCausalLM.from_pretrained(out / "merged")
    shapes = base_shapes(tiny_qwen())
    experts = [load_lora_expert(workspace / f"expert{i}", shapes) for i in range(3)]
    reference = tiny_qwen()
    MergeFitness(reference, char_tokenizer(), experts, []).apply(res["best"]["lambda"])
    for k, v in reference.state_dict().items():
        torch.testing.assert_close(merged.state_dict()[k], v, rtol=0, atol=0)
    saved, base_tok = (transformers.AutoTokenizer.from_pretrained(d) for d in (out / "merged", workspace / "base"))
    assert saved.get_vocab() == base_tok.get_vocab()


class Crash(RuntimeError):
    pass


def finished_run(root: Path, name: str, **overrides) -> tuple[Path, Path]:
    """A run of a config written as :func:`write_config` does, run to its end: (its config file, its folder)."""
    path = write_config(root, name, **overrides)
    quiet_run(path)
    return path, root / "runs" / name


def crash_at_save(monkeypatch, n: int, error: BaseException | None = None) -> None:
    """Make the ``n``-th ``Optimizer.save`` from now raise ``error`` (by default a :class:`Crash`, as a kill while
    checkpointing would stop the run: the log already holds that generation)."""
    original, calls = Optimizer.save, {"n": 0}

    def save(self, path, **kw):  # **kw: the run's owner string
        calls["n"] += 1
        if calls["n"] == n:
            raise error or Crash("simulated crash while checkpointing")
        return original(self, path, **kw)

    monkeypatch.setattr(Optimizer, "save", save)


@pytest.mark.parametrize(
    ("method", "optimizer", "budget", "crash_in"),
    [
        # one rebuild per candidate (forced below), under the sequential shape (3 experts, 18 <= 20·3)
        ("task_arithmetic", {"name": "evogm"}, 18, "evaluation"),
        # through the batched-λ forward (set below) with generations of 6: the population shape, by name
        ("task_arithmetic", {"name": "evogm", "options": {"preset": "default"}}, 18, "checkpoint"),
        # the paper preset shifts the basis after 24 evaluations: TIES experts are rebased and must be replayed
        ("ties", {"name": "evogm-paper"}, 36, "evaluation"),
        ("ties", {"name": "evogm-paper"}, 36, "checkpoint"),
        ("dare_ties", {"name": "cmaes"}, 18, "checkpoint"),
    ],
)
def test_crash_then_resume_continues_bit_identically(workspace, monkeypatch, method, optimizer, budget, crash_in):
    name = f"{method}-{optimizer['name']}-{crash_in}"
    settings = {"method": method, "optimizer": {**optimizer, "budget": budget, "seed": 1}, "baselines": False}
    if method == "task_arithmetic":  # the crash mid-evaluation is injected into the per-candidate path
        settings["eval_path"] = "rebuild" if crash_in == "evaluation" else "batched"
    quiet_run(write_config(workspace, f"{name}-straight", **settings))
    straight = workspace / "runs" / f"{name}-straight"

    path = write_config(workspace, f"{name}-crashed", **settings)
    calls = {"n": 0}
    if crash_in == "evaluation":  # a crash mid-generation: the half-evaluated generation is lost and re-run
        original = MergeFitness.task_scores

        def flaky(self, lam):
            calls["n"] += 1
            if calls["n"] == budget - 7:  # mid-generation (after the basis shift for the paper preset)
                raise Crash("simulated crash while evaluating")
            return original(self, lam)

        monkeypatch.setattr(MergeFitness, "task_scores", flaky)
    else:  # a crash after the log was written but before the checkpoint: the log is cut back and the step re-run
        crash_at_save(monkeypatch, 3)
    with pytest.raises(Crash):
        quiet_run(path)
    monkeypatch.undo()
    crashed = workspace / "runs" / f"{name}-crashed"
    with open(crashed / "log.jsonl", "a") as fh:
        fh.write('{"evaluation": 99, "gener')  # and a torn line
    before = (crashed / "log.jsonl").read_bytes()
    quiet_run(path)
    # the old log is kept whole beside the new one, and the new one says so in one event line
    (aside,) = crashed.glob("log-aside-*.jsonl")
    assert aside.read_bytes() == before
    resumed = log_without_timing(crashed)
    (event,) = [e for e in resumed if e.get("event") == "log-set-aside"]
    assert event["file"] == aside.name and "torn" in event["reason"]
    assert [e for e in resumed if e is not event] == log_without_timing(straight)
    a, b = (json.loads((d / "results.json").read_text()) for d in (straight, crashed))
    assert a["best"]["lambda"] == b["best"]["lambda"] and a["rows"] == b["rows"]
    if optimizer["name"] == "evogm-paper":
        versions = {e["basis_version"] for e in evaluations(straight)}
        assert versions == {0, 1}  # the run went through a basis shift


def test_resume_refuses_another_config_and_restart_keeps_the_old_run(workspace):
    path = write_config(workspace, "guarded", baselines=False)
    quiet_run(path)
    out = workspace / "runs" / "guarded"
    path.write_text(yaml.safe_dump(config_dict(output="runs/guarded", method="ties", baselines=False)))
    with pytest.raises(RunError, match="different config"):
        quiet_run(path)
    quiet_run(path, restart=True)
    assert list(out.glob("previous-*/log.jsonl")) and json.loads((out / "results.json").read_text())["method"] == "ties"
    # a larger budget resumes the same run instead of starting over
    path.write_text(
        yaml.safe_dump(
            config_dict(output="runs/guarded", method="ties", baselines=False, optimizer={"budget": 18, "seed": 3})
        )
    )
    quiet_run(path)
    assert len(evaluations(out)) == 18
    (out / "checkpoint.evogm").write_bytes(b"not a checkpoint")
    assert quiet_run(path).complete  # finished: nothing to resume, the checkpoint is not read
    path.write_text(
        yaml.safe_dump(
            config_dict(output="runs/guarded", method="ties", baselines=False, optimizer={"budget": 24, "seed": 3})
        )
    )
    with pytest.raises(RunError, match="cannot resume"):
        quiet_run(path)


def test_rebase_makes_the_shift_merges_the_new_experts(workspace):
    shapes = base_shapes(tiny_qwen())
    experts = [load_lora_expert(workspace / f"expert{i}", shapes) for i in range(3)]
    model = tiny_qwen()
    pristine = {k: v.clone() for k, v in model.state_dict().items()}
    fitness = MergeFitness(model, char_tokenizer(), experts, [], method="ties")
    rows = np.array([[0.5, -0.2, 0.9], [0.1, 0.7, 0.0], [-0.4, 0.3, 0.3]])
    fitness.rebase(rows)
    c = np.array([0.6, -0.5, 0.25])
    fitness.apply(c)
    ties = get_method("ties")
    name = "model.layers.0.mlp.down_proj.weight"
    original = ties.prepare(name, [e.delta(name) for e in experts])
    materialised = [ties.merged_delta(original, torch.tensor(r, dtype=torch.float32)) for r in rows]
    expected = ties.merge(pristine[name], ties.prepare(name, materialised), torch.tensor(c, dtype=torch.float32))
    torch.testing.assert_close(fitness._params[name].detach(), expected, atol=1e-6, rtol=1e-5)
    fitness.reset_basis()
    fitness.apply(c)
    direct = ties.merge(pristine[name], original, torch.tensor(c, dtype=torch.float32))
    torch.testing.assert_close(fitness._params[name].detach(), direct, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="linear"):
        MergeFitness(tiny_qwen(), char_tokenizer(), experts, []).rebase(rows)


def test_full_checkpoint_experts_load_as_differences_and_mismatches_are_refused(tmp_path):
    base, tok = tiny_qwen(), char_tokenizer()
    tuned = tiny_qwen()
    with torch.no_grad():
        tuned.model.layers[1].mlp.up_proj.weight.add_(0.25)
    tuned.save_pretrained(tmp_path / "dense")
    expert = load_expert(tmp_path / "dense", base, tok)
    assert set(expert.deltas) == {"model.layers.1.mlp.up_proj.weight"}
    torch.testing.assert_close(expert.deltas["model.layers.1.mlp.up_proj.weight"], torch.full((64, 32), 0.25))

    tiny_qwen(hidden=48).save_pretrained(tmp_path / "other")
    with pytest.raises(ExpertError, match="hidden_size"):
        load_expert(tmp_path / "other", base, tok)
    tiny_qwen(vocab=80).save_pretrained(tmp_path / "resized")
    with pytest.raises(ExpertError, match="resized embeddings"):
        load_expert(tmp_path / "resized", base, tok)
    (tmp_path / "pickle").mkdir()
    (tmp_path / "pickle" / "config.json").write_text((tmp_path / "dense" / "config.json").read_text())
    (tmp_path / "pickle" / "pytorch_model.bin").write_bytes(b"\x80")
    with pytest.raises(ExpertError, match="pickle"):
        load_expert(tmp_path / "pickle", base, tok)


def test_an_expert_with_another_tokenizer_is_refused(tmp_path):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    make_adapter(tmp_path / "same", seed=1)
    char_tokenizer().save_pretrained(tmp_path / "same")
    assert load_expert(tmp_path / "same", tiny_qwen(), char_tokenizer()).name == "same"
    make_adapter(tmp_path / "other", seed=1)
    vocab = {"<pad>": 0, "<eos>": 1, "hello": 2}
    other = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<pad>")))
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(ExpertError, match="tokenizer differs"):
        load_expert(tmp_path / "other", tiny_qwen(), char_tokenizer())


def test_cli_reports_config_errors_with_exit_code_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: x\nexperts: []\ntasks: {seen: []}\n")
    r = subprocess.run([sys.executable, "-m", "evogm_opt.cli", "merge", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "experts: expected a non-empty list" in r.stderr
    r = subprocess.run([sys.executable, "-m", "evogm_opt.cli", "merge"], capture_output=True, text=True)
    assert r.returncode == 2 and "give one of CONFIG.yaml, --demo or --rebuild RUN" in r.stderr


def test_stagnation_and_wall_clock_stop_the_search_and_the_reason_is_logged(workspace):
    stuck = {"patience": 2, "min_improvement": 1.0}  # nothing improves accuracy by more than 1: stops after 3 gens
    population = {"budget": 60, "options": {"preset": "default"}}  # generations of 6 (at 3 experts, 60 <= 20·3)
    path = write_config(workspace, "stagnant", baselines=False, optimizer=population, stopping=stuck)
    result = quiet_run(path)
    out = workspace / "runs" / "stagnant"
    reason = "no improvement larger than 1 for 2 generations (patience 2)"
    assert result.results["stop_reason"] == reason and result.results["n_evals"] == 18
    assert log_without_timing(out)[-1] == {"event": "stop", "reason": reason, "evaluations": 18}
    quiet_run(path)  # resuming counts the logged generations again: it stops at once, nothing re-evaluated
    assert len(evaluations(out)) == 18 and [e.get("event") for e in log_without_timing(out)].count("stop") == 1
    path.write_text(
        yaml.safe_dump(
            config_dict(
                output="runs/stagnant",
                baselines=False,
                optimizer=population,
                stopping={"patience": 4, "min_improvement": 1.0},
            )
        )
    )
    assert quiet_run(path).results["n_evals"] == 30  # more patience: the same run continues two generations

    timed = write_config(workspace, "timed", baselines=False, optimizer={"budget": 600}, stopping={"max_seconds": 1})
    result = quiet_run(timed)
    assert result.results["stop_reason"].startswith("wall-clock budget") and result.results["n_evals"] < 600
    with pytest.raises(ConfigError, match="patience"):
        parse_config(config_dict(stopping={"patience": 0}), workspace)


def test_evogm_takes_the_sequential_shape_at_three_experts_and_a_run_keeps_the_shape_it_began_with(
    workspace, monkeypatch
):
    from evogm_opt.evogm import pick

    quiet_run(write_config(workspace, "shapes", baselines=False))  # 3 experts, budget 12: sequential
    out = workspace / "runs" / "shapes"
    assert [e["generation"] for e in evaluations(out)] == list(range(1, 13))  # one candidate per generation
    # a run begun when "evogm" was the population shape here (as before the rule) resumes in that shape
    monkeypatch.setattr(pick, "choose", lambda dim, options: "population")
    quiet_run(write_config(workspace, "older", baselines=False))
    monkeypatch.undo()
    path = write_config(workspace, "older", baselines=False, optimizer={"budget": 18, "seed": 3})
    said: list[str] = []
    run_merge(load_config(path), progress=False, say=said.append)
    generations = [e["generation"] for e in evaluations(workspace / "runs" / "older")]
    assert len(generations) == 18 and generations[-1] == 3  # three generations of six: still the population
    assert any("resuming from" in line for line in said)


def test_layer_group_layout_with_simplex_weights_end_to_end(workspace):
    settings = {"layout": {"name": "per_layer_group", "groups": 2}, "simplex": {"sharpness": 3}, "baselines": False}
    result = quiet_run(write_config(workspace, "grouped", **settings))
    out = workspace / "runs" / "grouped"
    assert all(len(e["lambda"]) == 6 for e in evaluations(out))  # 2 layer groups × 3 experts
    coefficients = result.results["best"]["coefficients"]
    assert list(coefficients) == ["layers 0", "layers 1"]
    for group in coefficients.values():
        assert list(group) == ["expert0", "second", "expert2"] and sum(group.values()) == pytest.approx(1.0)
    merged = transformers.AutoModelForCausalLM.from_pretrained(out / "merged")
    experts = [load_lora_expert(workspace / f"expert{i}", base_shapes(tiny_qwen())) for i in range(3)]
    reference = tiny_qwen().state_dict()
    for name in set().union(*(e.params for e in experts)):
        w = coefficients["layers 0" if ".layers.0." in name else "layers 1"]
        lam = [w["expert0"], w["second"], w["expert2"]]
        expected = reference[name] + sum(c * e.delta(name) for c, e in zip(lam, experts) if e.delta(name) is not None)
        torch.testing.assert_close(merged.state_dict()[name], expected, atol=1e-6, rtol=1e-5)

    refused = write_config(workspace, "grouped-ties", method="ties", layout="per_module_type", baselines=False)
    with pytest.raises(RunError, match="basis shifts"):
        quiet_run(refused)
    allowed = write_config(
        workspace, "grouped-ties-cma", method="ties", layout="per_module_type", optimizer={"name": "cmaes", "budget": 8}
    )
    assert quiet_run(allowed).results["n_evals"] == 8
    handed_off = write_config(  # EvoGM that hands off to sep-CMA-ES never shifts its basis, so it may drive TIES
        workspace,
        "grouped-ties-handoff",
        method="ties",
        layout="per_module_type",
        baselines=False,
        optimizer={"name": "evogm", "budget": 30, "seed": 3, "options": {"config": {"handoff_dim": 2}}},
    )
    done = quiet_run(handed_off).results
    assert done["n_evals"] == 30 and done["best"]["basis_version"] == 0
    searched = Optimizer.load(workspace / "runs" / "grouped-ties-handoff" / "checkpoint.evogm")
    assert searched.handoff is not None and searched.never_shifts  # sep-CMA-ES searched; it was not refused
    with pytest.raises(ConfigError, match="groups"):
        parse_config(config_dict(layout={"name": "per_module_type", "groups": 2}), workspace)


def test_two_seen_tasks_give_a_pareto_front_and_a_pick_by_weights_reruns_nothing(workspace):
    for split in ("val", "test"):  # a task that wants the other option: the two tasks conflict
        rows = [json.loads(line) for line in (workspace / split / "mc.jsonl").read_text().splitlines()]
        flipped = [{**r, "answer": 1 - r["answer"]} for r in rows]
        (workspace / split / "flip.jsonl").write_text("\n".join(map(json.dumps, flipped)))
    tasks = {
        "seen": [
            {"name": "mc", "val": "val/mc.jsonl", "test": "test/mc.jsonl"},
            {"name": "flip", "val": "val/flip.jsonl", "test": "test/flip.jsonl", "weight": 2.0},
        ]
    }
    path = write_config(workspace, "pareto", tasks=tasks, baselines=False, optimizer={"budget": 24})
    result = quiet_run(path)
    out = workspace / "runs" / "pareto"
    summary = json.loads((out / "pareto.json").read_text())
    assert summary["tasks"] == ["mc", "flip"] and summary["objective_weights"] == [1.0, 2.0]
    front = np.array([[f["tasks"]["mc"], f["tasks"]["flip"]] for f in summary["front"]])
    every = np.array([[e["tasks"]["mc"], e["tasks"]["flip"]] for e in evaluations(out)])
    for point in front:  # non-dominated among everything evaluated, and nothing non-dominated is missing
        assert not np.any(np.all(every >= point, axis=1) & np.any(every > point, axis=1))
    dominated = [p for p in every if np.any(np.all(every >= p, axis=1) & np.any(every > p, axis=1))]
    assert len(np.unique(every, axis=0)) - len(np.unique(np.array(dominated).reshape(-1, 2), axis=0)) == len(front)
    assert (out / "pareto.png").is_file() and "Pareto front" in result.table
    # the best weighted point (weights 1:2) is the reported best
    assert result.results["best"]["score"] == pytest.approx(max(every @ np.array([1 / 3, 2 / 3])))

    picked = quiet_run(path, pick={"mc": 1.0})
    assert len(evaluations(out)) == 24  # nothing evaluated again
    assert picked.results["entry"]["tasks"]["mc"] == pytest.approx(every[:, 0].max())
    assert (out / "merged-pick" / "model.safetensors").is_file() and (out / "pick.json").is_file()
    assert set(next(iter(picked.results["rows"].values()))) == {"mc/val", "mc/test", "flip/val", "flip/test"}
    with pytest.raises(RunError, match="unknown seen tasks"):
        quiet_run(path, pick={"gen": 1.0})


def test_a_pick_naming_no_seen_task_is_refused_before_the_folder_or_the_model(workspace, monkeypatch):
    """The seen tasks are in the config: a typo in --pick is said at once, not after the model has loaded."""
    from llm_merge.run import pipeline

    def loads(*args, **kwargs):
        raise AssertionError("the model was loaded before --pick was checked")

    monkeypatch.setattr(pipeline, "assemble_run", loads)
    path = write_config(workspace, "pick-typo")
    with pytest.raises(RunError, match=r"--pick: unknown seen tasks \['mcc'\]; seen tasks: \['mc'\]"):
        quiet_run(path, pick={"mcc": 1.0})
    with pytest.raises(RunError, match="no Pareto archive"):
        quiet_run(path, pick={"mc": 1.0})
    assert not (workspace / "runs" / "pick-typo").exists()  # no folder claimed, nothing written


def test_the_merge_search_keeps_the_optimizers_default_stopping_rules_off():
    """The run has a budget and stopping rules of its own (as ``optimize`` gives a bare optimizer): a flat
    landscape runs to the budget, past the 100·dim evaluations and 25 stale generations of the default rules."""
    from llm_merge.run.search import _Asking

    from evogm_opt import registry
    from evogm_opt.loop import optimize

    opt = registry.create("random", 2, seed=0)
    reason = optimize(_Asking(opt, coordinates=False), lambda x: [0.5] * len(x), budget=300)
    assert opt.n_evals == 300 and reason == "evaluation budget: 300 of 300 evaluations used"
    asking = _Asking(opt, coordinates=False)
    assert opt.stop() and asking.stop() and not asking.stop(default_rules=False)  # the loop passes the flag through


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"base": "./no-such-base"}, "base: no such folder"),
        ({"experts": ["expert0", "missing-expert"]}, "experts[1].path: no such folder"),
        ({"tasks": {"seen": [{"name": "mc", "val": "val/nope.jsonl"}]}}, "tasks.seen[0].val: no such file"),
        ({"method": {"name": "ties", "densty": 0.2}}, "method ties: unknown parameter 'densty'; allowed:"),
        ({"method": {"name": "dare_linear", "drop": 0.5}}, "method dare_linear: unknown parameter 'drop'"),
        ({"optimizer": {"name": "evogm", "options": {"preset": "papr"}}}, "unknown preset 'papr'"),
        ({"optimizer": {"name": "cmaes", "options": {"sigma": 0.3}}}, "unexpected keyword argument 'sigma'"),
        ({"threads": 0}, "threads must be a positive integer or auto"),
        ({"on_other_base": "maybe"}, "on_other_base must be one of warn, error, ignore"),
    ],
)
def test_a_bad_config_is_one_line_naming_the_key_before_anything_loads_or_is_written(workspace, overrides, says):
    path = workspace / "bad.yaml"
    path.write_text(yaml.safe_dump(config_dict(output="runs/never-written", **overrides)))
    r = subprocess.run([sys.executable, "-m", "evogm_opt.cli", "merge", str(path)], capture_output=True, text=True)
    assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (workspace / "runs" / "never-written").exists()


def test_a_finished_run_run_again_says_it_is_complete_and_rewrites_nothing(workspace):
    path = write_config(workspace, "finished", baselines=False)
    quiet_run(path)
    out = workspace / "runs" / "finished"
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}
    said = []
    again = run_merge(load_config(path), progress=False, say=said.append)
    assert again.complete and again.results["n_evals"] == 12
    assert "holds a complete run of this config" in said[0] and "raise optimizer.budget (now 12)" in said[0]
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()} == before


def test_restart_after_a_killed_run_moves_every_old_file_byte_for_byte(workspace, monkeypatch):
    quiet_run(write_config(workspace, "killed", baselines=False, optimizer={"budget": 12, "seed": 2}))  # a run
    path = write_config(workspace, "killed", baselines=False, optimizer={"budget": 24, "seed": 2})
    out = workspace / "runs" / "killed"
    crash_at_save(monkeypatch, 2)  # then a longer one killed mid-way: merged/, plots and a half-written log all exist
    with pytest.raises(Crash):
        quiet_run(path)
    monkeypatch.undo()
    old = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert {Path("merged/model.safetensors"), Path("convergence.png"), Path("log.jsonl")} <= set(old)
    quiet_run(path, restart=True)
    (kept,) = out.glob("previous-*")
    assert {p.relative_to(kept): p.read_bytes() for p in kept.rglob("*") if p.is_file()} == old
    assert len(evaluations(out)) == 24


def test_threads_runs_the_model_on_that_many_torch_threads_and_restores_the_callers(workspace, monkeypatch):
    from llm_merge.run import search

    seen = []
    original = search.search

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr("llm_merge.run.pipeline.search", spy)
    before = torch.get_num_threads()
    quiet_run(write_config(workspace, "one-thread", baselines=False, save_model=False, threads=1))
    assert seen == [1] and torch.get_num_threads() == before


def test_run_json_records_the_thread_count_and_a_resume_on_another_says_so(workspace):
    path, out = finished_run(workspace, "threads-change", baselines=False, save_model=False, threads=1)
    assert json.loads((out / "run.json").read_text())["threads"] == 1
    said: list[str] = []
    more = {"baselines": False, "save_model": False, "optimizer": {"budget": 18, "seed": 3}}
    path = write_config(workspace, "threads-change", threads=2, **more)  # the same fingerprint: resumed
    assert run_merge(load_config(path), progress=False, say=said.append).results["n_evals"] == 18
    (line,) = [s for s in said if "torch thread" in s]
    assert "this run started on 1 torch thread(s), this resume runs on 2 (threads: 2)" in line
    assert "last bits" in line and "\n" not in line
    said.clear()
    path = write_config(workspace, "threads-change", threads=1, **{**more, "optimizer": {"budget": 24, "seed": 3}})
    run_merge(load_config(path), progress=False, say=said.append)
    assert not [s for s in said if "torch thread" in s]  # back on the count it started on: nothing to say
