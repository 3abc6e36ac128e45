"""Every Python block in the quickstart and integrations pages runs as written, and api.md's fidelity example; the
merge config example parses."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).parents[1] / "docs" / "quickstart.md"


def test_quickstart_code_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    assert namespace["resumed"].n_evals >= 64
    assert namespace["opt"].best.y > 0.5


def merge_demo_layout(root: Path) -> None:
    """What the Ray Tune merge example reads, in the demo's layout, with a tiny untrained model (fast)."""
    from llm_merge.demo.cpu_demo import char_tokenizer

    from tests.test_llm_merge_experts import make_adapter, tiny_qwen
    from tests.test_llm_merge_fitness import write_tasks

    demo = root / "merge-demo"
    tiny_qwen().save_pretrained(demo / "base")
    char_tokenizer().save_pretrained(demo / "base")
    (demo / "tasks").mkdir(parents=True)
    write_tasks(demo / "tasks")
    for i, name in enumerate(("inc", "next", "mirror", "cycle")):
        make_adapter(demo / f"expert-{name}", seed=i + 1)
        kind = "mc" if i % 2 == 0 else "gen"
        (demo / "tasks" / f"{name}-val.jsonl").write_text((demo / "tasks" / f"{kind}.jsonl").read_text())


def test_integrations_code_blocks_run(tmp_path, monkeypatch):
    import numpy as np

    merge_demo_layout(tmp_path)
    monkeypatch.chdir(tmp_path)
    page = Path(__file__).parents[1] / "docs" / "integrations.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    assert len(blocks) == 6
    namespace: dict = {"np": np}
    for block in blocks:
        exec(compile(block, str(page), "exec"), namespace)
    assert namespace["result"].n_evals == 80 and namespace["result"].y < 0.2
    assert namespace["ng_opt"].num_tell == 80 and namespace["loss"](namespace["ng_best"].value) < 0.1
    assert len(namespace["study"].trials) == 40
    assert len(namespace["grid_study"].trials) == 96  # the no-repeat example asserts its own distinct count
    assert set(namespace["best"].config) == {"x", "lr"}
    merge = namespace["merge_result"]
    assert set(merge.config) == {"w0", "w1", "w2", "w3"} and 0.0 <= merge.metrics["score"] <= 1.0
    assert namespace["searcher"].optimizer.n_evals == 16  # every trial's score reached the optimizer


def test_llm_merge_config_example_follows_the_schema(tmp_path):
    import pytest

    yaml = pytest.importorskip("yaml", reason="the llm extra")
    from llm_merge.run.config import parse_config

    page = Path(__file__).parents[1] / "docs" / "llm-merge.md"
    block = re.findall(r"```yaml\n(.*?)```", page.read_text(), flags=re.S)[0]  # the first: the Qwen example
    data = yaml.safe_load(block)  # (the FLAN-T5 one: tests/test_llm_merge_seq2seq.py)
    for expert in data["experts"]:  # the folders and files a user of this config has (checked before loading)
        (tmp_path / (expert if isinstance(expert, str) else expert["path"])).mkdir(parents=True)
    for task in [*data["tasks"]["seen"], *data["tasks"].get("unseen", [])]:
        for split in ("val", "test"):
            if split in task and "lm_eval" not in task:
                (tmp_path / task[split]).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / task[split]).touch()
    cfg = parse_config(data, tmp_path)
    assert cfg.base == "Qwen/Qwen2.5-1.5B" and [e.kind for e in cfg.experts] == ["auto", "auto", "dense"]
    assert cfg.seen[1].weight == 2.0 and cfg.unseen[0].name == "medqa" and cfg.optimizer.budget == 200
    assert cfg.stopping.patience == 10 and cfg.eval_path == "auto"
    assert cfg.layout == "per_expert" and not cfg.simplex and cfg.model_type == "auto"


def test_architecture_worked_examples_run_and_the_new_names_work_everywhere(tmp_path):
    """The optimizer example registers a name that minimize, checkpoints and the merge method registry accept.

    Run in a fresh interpreter: registering is global and final (a second registration is an error by design).
    """
    import subprocess
    import sys

    page = Path(__file__).parents[1] / "docs" / "architecture.md"
    optimizer_block, method_block = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    check = f"""
{optimizer_block}
import numpy as np
import evogm_opt
from evogm_opt import minimize
result = minimize(lambda x: float(np.sum((x - 0.3) ** 2)), dim=3, budget=60, optimizer="hill-climber", seed=0)
assert result.n_evals == 60 and result.y < 0.3, result
result.optimizer.save({str(tmp_path / "h.ckpt")!r})
assert type(evogm_opt.load({str(tmp_path / "h.ckpt")!r})).__name__ == "HillClimber"

import torch
from llm_merge.merges import get_method
{method_block}
deltas = [torch.ones(2, 2), 3 * torch.ones(2, 2)]
merged = get_method("average").merge(torch.zeros(2, 2), deltas, torch.tensor([1.0, 1.0]))
assert torch.equal(merged, 2 * torch.ones(2, 2))
print("ok")
"""
    run = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr


README = Path(__file__).parents[1] / "README.md"


def test_the_readme_quickstart_runs_and_its_links_point_inside_the_repository(tmp_path, monkeypatch):
    """A newcomer copies the README's block first; every relative link of the README (the results table's
    sources included) must name a file that exists."""
    text = README.read_text()
    monkeypatch.chdir(tmp_path)  # the block saves run.ckpt where it runs
    namespace: dict = {}
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["opt"].n_evals == 120 and (tmp_path / "run.ckpt").is_file()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert links and not [link for link in links if "://" in link or not (README.parent / link).exists()]


def test_the_api_pages_fidelity_example_runs_as_written(capsys):
    """api.md's FidelityScheduler block, executed: the example budget stops it, and what it recommends was
    measured at full fidelity."""
    page = (Path(__file__).parents[1] / "docs" / "api.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", page, flags=re.S) if "FidelityScheduler(" in b]
    namespace: dict = {}
    exec(compile(block, "docs/api.md", "exec"), namespace)
    sched = namespace["sched"]
    assert sched.rungs == (22, 66, 200)
    assert 10_000 - sched.generation_cost(1) < sched.examples <= 10_000
    best = sched.recommend()
    m = sched.measurements
    assert m.fidelity[best.evaluation - 1] == 200 and m.y[best.evaluation - 1] == best.y
    assert str(sched.examples) in capsys.readouterr().out
