"""``evogm-opt bench research``: the experiments of docs/research.md that look inside runs, on tiny inputs."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from evogm_bench.landscapes import merge_suite

from evogm_opt.cli import main

RESEARCH = Path(__file__).resolve().parent.parent / "benchmarks" / "research"


def test_oracle_gap_replays_the_bench_runs_and_the_oracle_is_never_below_the_recommendation(tmp_path, capsys):
    out = tmp_path / "oracle.jsonl"
    assert (
        main(["bench", "research", "oracle-gap", str(out), "--optimizer", "random", "--seeds", "0:1", "--dims", "2"])
        == 0
    )
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(merge_suite()) * 2  # one per landscape and checkpoint (10·N, 20·N)
    assert {r["checkpoint"] for r in records} == {10, 20}
    assert all(r["oracle"] >= r["recommended"] - 1e-12 for r in records)  # random recommends a point it evaluated
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("F N=2   10·N: mean gap")


def test_oracle_gap_refuses_an_unknown_peer_in_one_line(tmp_path, capsys):
    assert main(["bench", "research", "oracle-gap", str(tmp_path / "o.jsonl"), "--optimizer", "nope"]) == 2
    assert "unknown optimizer 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_step_at_ceiling_counts_the_generations_after_the_first_iteration(capsys):
    assert main(["bench", "research", "step-at-ceiling", "--seeds", "1", "--dims", "2"]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.startswith("N=2: σ within 5 % of its ceiling after ") and line.endswith("%)")


def test_the_research_modules_read_and_patch_nothing_private():
    """Research lives on the core's public seams: no ``obj._name`` read or written (not even its own), no
    ``setattr``, so no private method of the core is patched."""
    for path in sorted(RESEARCH.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                raise AssertionError(f"{path.name}:{node.lineno} uses the private {node.attr}")
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setattr":
                raise AssertionError(f"{path.name}:{node.lineno} patches with setattr")
