"""A resume never cuts or rewrites log lines it did not write: lines past the checkpoint are set aside (the
whole old log kept under a new name), a log that disagrees with the checkpoint is refused and left as it is,
and the stopping monitor is rebuilt from the agreed lines only."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="the llm_merge adapter needs the `llm` extra")
yaml = pytest.importorskip("yaml", reason="the llm_merge adapter needs the `llm` extra")

from llm_merge.run.config import load_config  # noqa: E402
from llm_merge.run.journal import RunError  # noqa: E402
from llm_merge.run.pipeline import run_merge  # noqa: E402

from tests.test_llm_merge_run import (  # noqa: E402, F401
    evaluations,
    finished_run,
    log_without_timing,
    quiet_run,
    workspace,
    write_config,
)

SETTINGS = {"baselines": False, "save_model": False}


def raise_budget(root: Path, name: str, budget: int, **settings) -> Path:
    return write_config(root, name, optimizer={"budget": budget, "seed": 3}, **SETTINGS, **settings)


def lines(folder: Path) -> list[bytes]:
    return (folder / "log.jsonl").read_bytes().splitlines(keepends=True)


def test_lines_past_the_checkpoint_are_set_aside_whole_and_the_agreed_lines_stay_byte_for_byte(workspace):  # noqa: F811
    straight = write_config(workspace, "ahead-straight", optimizer={"budget": 18, "seed": 3}, **SETTINGS)
    quiet_run(straight)
    path, out = finished_run(workspace, "ahead", **SETTINGS)
    finished = lines(out)  # 12 evaluation lines and the stop event
    # what a crash between the log and the checkpoint leaves, with forged scores: they must not reach the monitor
    forged = [{**json.loads(finished[i]), "evaluation": 13 + i, "score": 9.0, "best": 9.0} for i in range(3)]
    with open(out / "log.jsonl", "a") as fh:
        fh.write("".join(json.dumps(e) + "\n" for e in forged))
    before = (out / "log.jsonl").read_bytes()
    raise_budget(workspace, "ahead", 18, stopping={"patience": 1, "min_improvement": 0.5})
    said: list[str] = []
    run_merge(load_config(path), progress=False, say=said.append)
    (aside,) = out.glob("log-aside-*.jsonl")
    assert aside.read_bytes() == before  # nothing lost
    assert lines(out)[: len(finished)] == finished  # the agreed lines (and their event) as they were written
    assert any("3 evaluation line(s) past the checkpoint's 12" in s and aside.name in s for s in said), said
    # the monitor saw only the agreed lines: fed the forged bests of 9.0 it would have seen an improvement
    assert len(evaluations(out)) == 12
    stop = log_without_timing(out)[-1]
    # two experts and a budget of 12: the sequential shape, one evaluation per generation; accuracies cannot
    # improve by 0.5 after the first, so the 11 agreed generations after it count (the forged 9.0s would reset it)
    assert stop == {
        "event": "stop",
        "reason": "no improvement larger than 0.5 for 11 generations (patience 1)",
        "evaluations": 12,
    }
    raise_budget(workspace, "ahead", 18)  # and the search then continues as an uninterrupted one
    quiet_run(path)
    assert evaluations(out) == evaluations(workspace / "runs" / "ahead-straight")


@pytest.mark.parametrize("damage", ["duplicated", "edited-lambda", "edited-score", "renumbered", "garbage-inside"])
def test_a_log_that_disagrees_with_the_checkpoint_is_refused_and_left_as_it_is(workspace, damage):  # noqa: F811
    path, out = finished_run(workspace, f"disagree-{damage}", **SETTINGS)
    old = lines(out)
    entries = [json.loads(line) for line in old]
    if damage == "duplicated":  # what two processes on one folder wrote before the lock
        new = old[:6] + old[:6] + old[6:]
    elif damage == "edited-lambda":
        entries[4]["lambda"][0] += 1e-9
        new = [(json.dumps(e) + "\n").encode() for e in entries]
    elif damage == "edited-score":
        entries[4]["score"] = 0.123
        new = [(json.dumps(e) + "\n").encode() for e in entries]
    elif damage == "renumbered":
        entries[4]["evaluation"] = 40
        new = [(json.dumps(e) + "\n").encode() for e in entries]
    else:
        new = [*old[:3], b"not json\n", *old[3:]]
    (out / "log.jsonl").write_bytes(b"".join(new))
    raise_budget(workspace, f"disagree-{damage}", 18)
    with pytest.raises(RunError) as refused:
        quiet_run(path)
    message = str(refused.value)
    assert "\n" not in message and "--restart" in message
    expected = {
        "duplicated": "numbered 1",
        "edited-lambda": "evaluation 5: λ differs",
        "edited-score": "evaluation 5: score 0.123",
        "renumbered": "numbered 40",
        "garbage-inside": "line 4 is not a log line",
    }[damage]
    assert expected in message, message
    assert (out / "log.jsonl").read_bytes() == b"".join(new) and not list(out.glob("log-aside-*"))


def test_a_log_shorter_than_the_checkpoint_is_refused(workspace):  # noqa: F811
    path, out = finished_run(workspace, "short", **SETTINGS)
    (out / "log.jsonl").write_bytes(b"".join(lines(out)[:5]))
    raise_budget(workspace, "short", 18)
    with pytest.raises(RunError, match="has 5 evaluations but the checkpoint 12"):
        quiet_run(path)


def test_a_multi_task_run_resumes_against_its_weighted_mean_record(workspace):  # noqa: F811
    for split in ("val", "test"):  # a second task that wants the other option
        rows = [json.loads(line) for line in (workspace / split / "mc.jsonl").read_text().splitlines()]
        (workspace / split / "flip.jsonl").write_text(
            "\n".join(json.dumps({**r, "answer": 1 - r["answer"]}) for r in rows)
        )
    tasks = {
        "seen": [
            {"name": "mc", "val": "val/mc.jsonl", "test": "test/mc.jsonl", "weight": 0.7},
            {"name": "flip", "val": "val/flip.jsonl", "test": "test/flip.jsonl", "weight": 2.0},
        ]
    }
    straight = write_config(workspace, "two-straight", tasks=tasks, optimizer={"budget": 18, "seed": 3}, **SETTINGS)
    quiet_run(straight)
    path, _ = finished_run(workspace, "two", tasks=tasks, **SETTINGS)
    raise_budget(workspace, "two", 18, tasks=tasks)
    assert quiet_run(path).results["n_evals"] == 18  # the log agreed with the checkpoint's weighted means
    assert evaluations(workspace / "runs" / "two") == evaluations(workspace / "runs" / "two-straight")


def test_a_disk_full_while_the_log_is_copied_aside_leaves_no_partial_copy(workspace, monkeypatch):  # noqa: F811
    path, out = finished_run(workspace, "aside-full", **SETTINGS)
    ahead = {**json.loads(lines(out)[0]), "evaluation": 13}
    with open(out / "log.jsonl", "a") as fh:
        fh.write(json.dumps(ahead) + "\n")  # a line past the checkpoint: the resume sets the log aside
    before = (out / "log.jsonl").read_bytes()
    raise_budget(workspace, "aside-full", 18)
    original = shutil.copyfileobj

    def full(src, dst, *args):
        if getattr(src, "name", None) == str(out / "log.jsonl"):
            dst.write(src.read(100))  # part of the copy reaches the disk, then it is full
            dst.flush()
            raise OSError(errno.ENOSPC, "No space left on device: injected")
        return original(src, dst, *args)

    with monkeypatch.context() as m:
        m.setattr(shutil, "copyfileobj", full)
        with pytest.raises(OSError, match="injected"):
            quiet_run(path)
    # no file named like a whole copy of the log, no temporary file, and the log as it was
    assert [p.name for p in out.iterdir() if "log" in p.name] == ["log.jsonl"]
    assert (out / "log.jsonl").read_bytes() == before
    quiet_run(path)  # the disk has room again
    (aside,) = out.glob("log-aside-*.jsonl")
    assert aside.read_bytes() == before and len(evaluations(out)) == 18
