"""Two processes on one merge run folder: the second is refused in one line naming the holder, before anything
loads; a lock left by ``kill -9`` is taken over; ``--restart`` neither moves the lock nor runs beside a holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="the llm_merge adapter needs the `llm` extra")
pytest.importorskip("yaml", reason="the llm_merge adapter needs the `llm` extra")

from llm_merge.run.config import load_config
from llm_merge.run.journal import LOCK, Journal, RunError
from llm_merge.run.pipeline import run_merge

from tests.test_llm_merge_run import evaluations, quiet_run, workspace, write_config  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def hold(config: Path) -> subprocess.Popen:
    """Another process that claims the run folder (as ``evogm-opt merge`` does first) and then sleeps."""
    code = textwrap.dedent(
        f"""
        import time
        from llm_merge.run.journal import Journal
        from llm_merge.run.config import load_config
        Journal.claim(load_config({str(config)!r}))
        print("holding", flush=True)
        time.sleep(120)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


def nothing_may_load(monkeypatch) -> None:
    def refuse(*_a, **_k):
        raise AssertionError("the model or the tasks loaded before the folder was claimed")

    monkeypatch.setattr("llm_merge.run.pipeline.load_tasks", refuse)
    monkeypatch.setattr("llm_merge.run.pipeline.assemble_run", refuse)


def test_a_second_process_is_refused_naming_the_holder_and_a_killed_holders_lock_is_taken_over(workspace, monkeypatch):  # noqa: F811
    path = write_config(workspace, "locked", baselines=False, save_model=False)
    out = workspace / "runs" / "locked"
    holder = hold(path)
    try:
        with monkeypatch.context() as m:
            nothing_may_load(m)
            with pytest.raises(RunError) as refused:
                quiet_run(path)
            message = str(refused.value)
            assert "\n" not in message and "in use by another evogm-opt merge" in message
            assert f"pid {holder.pid} on " in message and "since " in message
            with pytest.raises(RunError, match="in use by another"):  # --restart is refused too ...
                quiet_run(path, restart=True)
        assert (out / LOCK).is_file() and not list(out.glob("previous-*"))  # ... and moved nothing
    finally:
        holder.send_signal(signal.SIGKILL)  # kill -9: the kernel drops its lock, its record stays in the file
        holder.wait()
    assert str(holder.pid) in (out / LOCK).read_text()
    said: list[str] = []
    result = run_merge(load_config(path), progress=False, say=said.append)
    assert result.results["n_evals"] == 12 and len(evaluations(out)) == 12  # every evaluation logged once
    took = [s for s in said if f"pid {holder.pid}" in s and "ended without releasing the folder" in s]
    assert took and took[0].endswith("no checkpoint here: starting from the first evaluation"), said  # it saved none
    assert not (out / LOCK).exists()  # released at the end


def leftover_of_a_killed_writer(folder: Path) -> Path:
    """The temporary file a process killed inside an atomic write of ``folder``'s checkpoint leaves."""
    code = "import os, sys\nfrom evogm_opt.atomic import atomic_path\n"
    code += "with atomic_path(sys.argv[1]) as tmp:\n    print(tmp, flush=True)\n    os._exit(9)\n"
    r = subprocess.run(
        [sys.executable, "-c", code, str(folder / "checkpoint.evogm")], capture_output=True, text=True, cwd=ROOT
    )
    leftover = Path(r.stdout.strip())
    assert leftover.parent == folder and leftover.is_file(), r.stderr
    return leftover


def test_a_dead_writers_temporary_files_are_removed_only_where_the_folder_is_locked(workspace, monkeypatch):  # noqa: F811
    path = write_config(workspace, "leftovers", baselines=False, save_model=False)
    out = workspace / "runs" / "leftovers"
    out.mkdir(parents=True)
    leftover = leftover_of_a_killed_writer(out)
    with monkeypatch.context() as m:  # a file system without locks: another process may be writing it
        no_locks = OSError(37, "No locks available")
        m.setattr("llm_merge.run.journal._try_lock", lambda fd: (_ for _ in ()).throw(no_locks))
        journal = Journal.claim(load_config(path))
        journal.release()
    assert journal.lock.note is not None and leftover.is_file()
    Journal.claim(load_config(path)).release()  # locked: only this process works here
    assert not leftover.exists()


def test_the_lock_is_held_through_search_and_report_and_released_after_a_failure(workspace, monkeypatch):  # noqa: F811
    path = write_config(workspace, "held", baselines=False, save_model=False)
    out = workspace / "runs" / "held"
    seen = {}
    from llm_merge.run import report as report_module

    original = report_module.report

    def spy(*args, **kwargs):  # while the report is written, a second claim is refused
        with pytest.raises(RunError, match="in use by another"):
            Journal.claim(load_config(path))
        seen["report"] = True
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("llm_merge.run.pipeline.report", spy)
    with pytest.raises(OSError):
        quiet_run(path)
    assert seen == {"report": True} and not (out / LOCK).exists()  # released although the run failed
    monkeypatch.setattr("llm_merge.run.pipeline.report", original)
    assert quiet_run(path).results["n_evals"] == 12


def test_restart_moves_everything_but_the_lock_file(workspace):  # noqa: F811
    path = write_config(workspace, "restarted", baselines=False, save_model=False)
    out = workspace / "runs" / "restarted"
    quiet_run(path)
    journal = Journal.claim(load_config(path), restart=True)
    try:
        (kept,) = out.glob("previous-*")
        assert (out / LOCK).is_file() and not (kept / LOCK).exists()  # the holder keeps its lock file
        assert (kept / "log.jsonl").is_file() and (out / "run.json").is_file()
        assert os.path.samestat(os.stat(out / LOCK), os.fstat(journal.lock._fd))
    finally:
        journal.release()
