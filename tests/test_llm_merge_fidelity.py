"""The merge run with ``fidelity:`` (issue 30, item 2): nested prefixes of a seeded permutation of each seen task,
successive halving around the optimizer, tokens spent, exact resume; and ``fidelity: off`` changing nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
yaml = pytest.importorskip("yaml")

from llm_merge.demo.cpu_demo import char_tokenizer  # noqa: E402
from llm_merge.model.fitness import MergeFitness  # noqa: E402
from llm_merge.run.config import ConfigError, load_config  # noqa: E402
from llm_merge.run.journal import RunError  # noqa: E402
from llm_merge.run.pipeline import run_merge  # noqa: E402
from llm_merge.run.schema import FidelitySpec  # noqa: E402
from llm_merge.run.search import PrefixPlan, PrefixScorer, permutation  # noqa: E402
from llm_merge.tasks.jsonl import Task  # noqa: E402

from evogm_opt.fidelity import FidelityBatch, FidelityScheduler  # noqa: E402
from tests.test_llm_merge_experts import tiny_qwen  # noqa: E402
from tests.test_llm_merge_run import config_dict, log_without_timing, make_workspace  # noqa: E402


class Crash(Exception):
    pass


def write_sized_tasks(folder: Path) -> None:
    """Two seen tasks of different sizes (36 multiple choice, 13 generation) and a small unseen one."""
    folder.mkdir(parents=True, exist_ok=True)
    mc = [
        {"prompt": f"{i % 10}+{i // 10}=", "options": [str(i % 7), str((i + 3) % 7), str(i % 5)], "answer": i % 3}
        for i in range(36)
    ]
    gen = [{"prompt": f"{i}?", "answer": str(i % 4)} for i in range(13)]
    (folder / "mc.jsonl").write_text("\n".join(map(json.dumps, mc)))
    (folder / "gen.jsonl").write_text("\n".join(map(json.dumps, gen)))
    (folder / "small.jsonl").write_text("\n".join(map(json.dumps, mc[:4])))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("fidelity"), write_sized_tasks)


SEEN = [
    {"name": "mc", "val": "val/mc.jsonl", "test": "test/mc.jsonl"},
    {"name": "gen", "val": "val/gen.jsonl", "test": "test/gen.jsonl", "max_new_tokens": 2, "weight": 2.0},
]
UNSEEN = [{"name": "small", "val": "val/small.jsonl", "test": "test/small.jsonl"}]
FIDELITY = {"min_examples": 3, "eta": 3, "seed": 5}


def write(root: Path, name: str, **overrides) -> Path:
    settings = {"tasks": {"seen": SEEN, "unseen": UNSEEN}, "baselines": False, **overrides}
    cfg = config_dict(output=f"runs/{name}", **settings)
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def quiet(path: Path, **kw):
    return run_merge(load_config(path), progress=False, say=lambda *a: None, **kw)


def fitness_and_plan(root: Path, spec: FidelitySpec) -> tuple[MergeFitness, PrefixPlan]:
    from llm_merge.model.loading import load_expert

    model = tiny_qwen()
    tok = char_tokenizer()
    experts = [load_expert(str(root / f"expert{i}"), model, tok) for i in range(3)]
    tasks = [
        Task.from_jsonl(root / "val" / "mc.jsonl", "mc"),
        Task.from_jsonl(root / "val" / "gen.jsonl", "gen", max_new_tokens=2),
    ]
    fitness = MergeFitness(model, tok, experts, tasks, weights=[1.0, 2.0], batch_size=8)
    return fitness, PrefixPlan.of(fitness, spec)


# ---------------------------------------------------------------------------------------------- prefixes


def test_prefixes_are_nested_the_same_fraction_of_each_task_and_whole_at_full(workspace):
    _fitness, plan = fitness_and_plan(workspace, FidelitySpec(**FIDELITY))
    assert plan.sizes == [36, 13] and plan.full == 49 and plan.minimum == 6
    sched = plan.scheduler(_random(3))
    assert sched.rungs == (16, 49)  # ⌊49/3⌋ = 16 ≥ 6, ⌊49/9⌋ = 5 < 6
    assert plan.examples(16) == [11, 4] and plan.examples(49) == [36, 13]  # ⌊16·36/49⌋, ⌊16·13/49⌋
    assert plan.examples(1) == [3, 3]  # never fewer than min_examples of a task
    sizes = [plan.examples(f) for f in range(1, 50)]
    assert all(a <= b for s, t in zip(sizes, sizes[1:]) for a, b in zip(s, t))  # nested
    # one fixed permutation per task: the seed and the task's name, nothing else
    assert np.array_equal(plan.orders[0], permutation(36, 5, "mc"))
    assert not np.array_equal(permutation(36, 5, "mc"), permutation(36, 6, "mc"))
    assert sorted(plan.orders[1].tolist()) == list(range(13))
    # tokens: the rungs' new examples add up to one full measurement's
    assert plan.tokens(0, 16) + plan.tokens(16, 49) == plan.tokens(0, 49) == plan.full_tokens() > 0


def _random(dim: int, popsize: int = 6):
    from evogm_opt import registry

    return registry.create("random", dim, seed=0, popsize=popsize, maximize=True)


@pytest.mark.parametrize("path", ["rebuild", "batched"])
def test_a_promoted_score_equals_the_full_set_score_of_the_same_merge(workspace, path):
    fitness, plan = fitness_and_plan(workspace, FidelitySpec(min_examples=2, eta=2, seed=1))
    sched = plan.scheduler(_random(3, popsize=4))
    assert len(sched.rungs) >= 3  # (12, 24, 49): two promotions
    scorer = PrefixScorer(plan, fitness)
    full_scores = {}
    while sched.inner.n_evals < 4:
        batch = sched.ask()
        measured = scorer.measure(batch, path)
        values = []
        for i, row in enumerate(measured.correct):
            scores = [int(c) / n for c, n in zip(row, measured.examples)]
            values.append(fitness.combine(scores))
            if batch.fidelity[i] == plan.full:
                full_scores[int(batch.candidate[i])] = (batch.x[i], scores, values[-1])
        sched.tell(batch.x, values, fidelity=batch.fidelity)
    assert full_scores  # successive halving took at least one candidate to full fidelity, through every rung
    for x, scores, value in full_scores.values():
        assert scores == fitness.task_scores(x)  # exactly: the old examples' counts plus the new ones'
        assert value == fitness.evaluate(x)


# ---------------------------------------------------------------------------------------------- the run


def test_fidelity_off_records_and_writes_exactly_what_a_run_without_the_key_does(workspace):
    absent, off = write(workspace, "absent"), write(workspace, "off", fidelity="off")
    quiet(absent)
    quiet(off)
    a, b = workspace / "runs" / "absent", workspace / "runs" / "off"
    run_a, run_b = (json.loads((d / "run.json").read_text()) for d in (a, b))
    assert "fidelity" not in run_a["config"] and run_a["config"] == {**run_b["config"], "output": str(a)}
    assert run_a["fingerprint"] == run_b["fingerprint"]
    assert log_without_timing(a) == log_without_timing(b)
    keys = {"evaluation", "generation", "lambda", "basis_version", "coordinates", "score", "tasks", "best"}
    assert {k for e in log_without_timing(a) if "evaluation" in e for k in e} == keys
    res_a, res_b = (json.loads((d / "results.json").read_text()) for d in (a, b))
    assert not {"tokens_spent", "fidelity", "measurements"} & set(res_a)
    assert res_a["rows"] == res_b["rows"] and res_a["best"]["lambda"] == res_b["best"]["lambda"]
    for f in (a / "merged").glob("*.safetensors"):
        assert f.read_bytes() == (b / "merged" / f.name).read_bytes()


def test_a_run_with_fidelity_logs_tokens_and_recommends_a_full_fidelity_merge(workspace):
    path = write(workspace, "fid", fidelity=FIDELITY, optimizer={"name": "evogm", "budget": 12, "seed": 3})
    said = []
    result = run_merge(load_config(path), progress=False, say=said.append)
    folder = workspace / "runs" / "fid"
    lines = [e for e in log_without_timing(folder) if "evaluation" in e]
    assert [e["evaluation"] for e in lines] == list(range(1, len(lines) + 1))
    assert {e["fidelity"] for e in lines} == {16, 49} and {e["rung"] for e in lines} == {0, 1}
    for e in lines:  # a task's score is its correct answers over its prefix; tokens add up
        assert e["tasks"] == {n: e["correct"][n] / e["examples"][n] for n in ("mc", "gen")}
    assert lines[-1]["tokens_spent"] == sum(e["tokens"] for e in lines)
    assert sum(e["rung"] == 0 for e in lines) == 12  # the budget counts candidates, as without fidelity
    res = result.results
    assert res["n_evals"] == 12 and res["measurements"] == len(lines) and res["candidates"] == 12
    assert res["tokens_spent"] == lines[-1]["tokens_spent"] < res["tokens_at_full_fidelity"]
    best = res["best"]
    assert best["fidelity"] == 49 and best["score"] == max(e["score"] for e in lines if e["fidelity"] == 49)
    label = "evogm λ*"
    assert res["rows"][label]["mc/val"] == best["tasks"]["mc"]  # the report's full-set score: the same number
    assert res["rows_fidelity"] == {label: "full"}
    assert "| fidelity |" in res["table"] and "tokens spent" in res["table"]
    stop = json.loads((folder / "log.jsonl").read_text().splitlines()[-1])
    assert stop["event"] == "stop" and stop["tokens_spent"] == res["tokens_spent"] and stop["evaluations"] == 12


def crash_on_call(monkeypatch: pytest.MonkeyPatch, owner: type, name: str, n: int, message: str) -> None:
    """``owner.name`` raises :class:`Crash` on its ``n``-th call (a kill at that point), and works as before
    until then."""
    original, calls = getattr(owner, name), {"n": 0}

    def crashing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise Crash(message)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, crashing)


@pytest.mark.parametrize(("crash_in", "eval_path"), [("evaluation", "rebuild"), ("checkpoint", "batched")])
def test_a_run_with_fidelity_killed_mid_promotion_resumes_exactly(workspace, monkeypatch, crash_in, eval_path):
    settings = {"fidelity": FIDELITY, "optimizer": {"name": "cmaes", "budget": 12, "seed": 2}, "eval_path": eval_path}
    quiet(write(workspace, f"straight-{crash_in}", **settings))
    path = write(workspace, f"crashed-{crash_in}", **settings)
    if crash_in == "evaluation":  # one call per rung: generation 2's promotion, its first rung checkpointed
        crash_on_call(monkeypatch, MergeFitness, "correct_counts", 4, "killed while scoring")
    else:  # generation 2's last rung logged, its first rung's checkpoint on disk
        crash_on_call(monkeypatch, FidelityScheduler, "save", 4, "killed while checkpointing")
    with pytest.raises(Crash):
        quiet(path)
    monkeypatch.undo()
    crashed = workspace / "runs" / f"crashed-{crash_in}"
    assert FidelityScheduler.load(crashed / "checkpoint.evogm").in_flight > 0  # killed mid-promotion
    quiet(path)
    straight = workspace / "runs" / f"straight-{crash_in}"
    resumed = [e for e in log_without_timing(crashed) if e.get("event") != "log-set-aside"]
    assert len(list(crashed.glob("log-aside-*.jsonl"))) == (crash_in == "checkpoint")
    assert resumed == log_without_timing(straight)
    a, b = (json.loads((d / "results.json").read_text()) for d in (straight, crashed))
    a["best"].pop("elapsed_s"), b["best"].pop("elapsed_s")
    for key in ("best", "rows", "tokens_spent", "examples_spent", "measurements", "n_evals"):
        assert a[key] == b[key], key


def test_a_resume_with_other_fidelity_settings_is_refused_in_one_line(workspace):
    path = write(workspace, "changed", fidelity=FIDELITY)
    quiet(path)
    path.write_text(path.read_text().replace("eta: 3", "eta: 2"))
    with pytest.raises(RunError) as info:
        quiet(path)
    message = str(info.value)
    assert (
        "with fidelity: {min_examples: 3, eta: 3, seed: 5}, this config has fidelity: {min_examples: 3, eta: 2"
        in message
    )
    assert "\n" not in message
    off = write(workspace, "changed-off")
    quiet(off)
    off.write_text(yaml.safe_dump({**yaml.safe_load(off.read_text()), "fidelity": FIDELITY}))
    with pytest.raises(RunError, match=r"holds a run with fidelity: off, this config has fidelity: \{min_examples"):
        quiet(off)


@pytest.mark.parametrize(
    ("fidelity", "says"),
    [
        ({"min_examples": 5, "eta": 1}, "fidelity.eta must be an integer >= 2, got 1"),
        ({"min_examples": 0}, "fidelity.min_examples must be a positive integer (examples per task), got 0"),
        ({"eta": 3}, "fidelity: missing keys ['min_examples']"),
        ({"min_examples": 5, "min": 2}, "fidelity: unknown keys ['min']; allowed: ['eta', 'min_examples', 'seed']"),
        ("on", "fidelity must be off or a mapping with min_examples"),
        ({"min_examples": 5, "seed": 1.5}, "fidelity.seed must be an integer, got 1.5"),
    ],
)
def test_bad_fidelity_settings_are_one_line_naming_the_key_before_torch_loads(workspace, fidelity, says):
    path = write(workspace, "bad-fidelity", fidelity=fidelity)
    code = (
        "import sys; from llm_merge.run.config import load_config, ConfigError\n"
        f"try:\n    load_config({str(path)!r})\nexcept ConfigError as e:\n    print(e)\n"
        "print('torch' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    message, torch_loaded = r.stdout.strip().splitlines()
    assert says in message and torch_loaded == "False", r.stdout
    assert not (workspace / "runs" / "bad-fidelity").exists()


def test_what_fidelity_cannot_do_yet_is_refused_before_the_model_loads(workspace):
    ties = write(workspace, "fid-ties", fidelity=FIDELITY, method="ties")
    with pytest.raises(ConfigError, match="fidelity: not supported with ties under evogm"):
        load_config(ties)
    sequential = write(workspace, "fid-seq", fidelity=FIDELITY, optimizer={"name": "evogm-sequential", "budget": 12})
    with pytest.raises(ConfigError, match="evogm-sequential asks one candidate per generation"):
        load_config(sequential)
    nonlinear = write(
        workspace,
        "fid-seq-ties",
        fidelity=FIDELITY,
        method="ties",
        optimizer={"name": "evogm-sequential", "budget": 12, "popsize": 4},
    )
    assert load_config(nonlinear).optimizer.popsize == 4  # no basis coordinates to carry: allowed
    pick = write(workspace, "fid-pick", fidelity=FIDELITY)
    with pytest.raises(RunError, match="--pick: a run with fidelity has no Pareto archive"):
        quiet(pick, pick={"mc": 1.0})


def test_a_scheduler_checkpoint_of_another_run_is_refused(workspace):
    a, b = write(workspace, "own-a", fidelity=FIDELITY), write(workspace, "own-b", fidelity=FIDELITY)
    quiet(a)
    quiet(b)
    folder_b = workspace / "runs" / "own-b"
    (folder_b / "results.json").unlink()  # not complete: it would resume
    (folder_b / "checkpoint.evogm").write_bytes((workspace / "runs" / "own-a" / "checkpoint.evogm").read_bytes())
    with pytest.raises(RunError, match="is not this run's checkpoint \\(it belongs to"):
        quiet(b)


def test_batch_rows_must_share_one_rung(workspace):
    fitness, plan = fitness_and_plan(workspace, FidelitySpec(**FIDELITY))
    x = np.zeros((2, 3))
    batch = FidelityBatch(x, np.array([16, 49]), np.array([0, 16]), np.array([0, 1]))
    with pytest.raises(ValueError, match="one rung per batch"):
        PrefixScorer(plan, fitness).measure(batch, "rebuild")
