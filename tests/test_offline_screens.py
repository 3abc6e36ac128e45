"""scripts/offline_screens.py reproduces research ablation 19: its patches must act, and act the same in every job
of a worker (a patch applied once per job nested its wrappers, so a run's result depended on the jobs before it).

Run as subprocesses: the patches replace the optimizer's methods in the process that runs them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "offline_screens.py"


def _run(tmp_path: Path, variant: str, *args: str) -> dict:
    out = tmp_path / f"{variant}-{'-'.join(args)}.jsonl"
    cmd = [sys.executable, str(SCRIPT), "run", variant, "--dims", "2", "--workers", "1", "--out", str(out), *args]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    return {(r["landscape"], r["seed"]): (r["true_10N"], r["true_20N"]) for r in records}


def test_ascent_changes_runs_and_does_not_depend_on_earlier_jobs(tmp_path: Path) -> None:
    default = _run(tmp_path, "default", "--seeds", "1", "--first-seed", "1")
    alone = _run(tmp_path, "ei-ascent", "--seeds", "1", "--first-seed", "1")
    after_others = _run(tmp_path, "ei-ascent", "--seeds", "2")  # seed 1's jobs follow others in one worker
    assert len(default) == len(alone) == 10
    assert any(default[key] != alone[key] for key in default), "the ascent patch changed no run"
    assert all(after_others[key] == alone[key] for key in alone)


def test_unknown_variant_is_refused_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "run", "ei-ascnet", "--out", str(tmp_path / "x.jsonl")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("unknown variant 'ei-ascnet'")
    assert not (tmp_path / "x.jsonl").exists()
