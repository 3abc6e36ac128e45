"""Issue 27, item 5: a full disk, a read-only folder and Ctrl-C during ``evogm-opt merge`` give one line on stderr
and an exit code (1: the file system stopped the run; 130: interrupted), never a traceback, and the same command
then resumes the run.

Faults injected three ways: an ``OSError`` from ``os.replace`` / ``os.fsync`` (monkeypatched, in-process through
``main(argv)``; runs everywhere), a real tmpfs that is full or remounted read-only (needs ``mount``, i.e. root in a
container; skipped elsewhere — as root, ``chmod`` does not stop writes, so it cannot stand in), and a real SIGINT
sent to an ``evogm-opt merge`` subprocess.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="the llm_merge adapter needs the `llm` extra")
yaml = pytest.importorskip("yaml", reason="the llm_merge adapter needs the `llm` extra")

from llm_merge.cli import main  # noqa: E402

from tests import test_llm_merge_run as shared  # noqa: E402

workspace = shared.workspace  # the shared fixture: a base, LoRA experts and task files, built once per module
config_dict, evaluations = shared.config_dict, shared.evaluations

BUDGET = 12
FULL = re.compile(
    r"^evogm-opt merge: cannot write (?P<path>\S+): No space left on device; free space and run the same command "
    r"to resume \((evaluations up to (?P<n>\d+) are saved|no evaluation was saved yet)\)$"
)
READ_ONLY = re.compile(
    r"^evogm-opt merge: cannot write (?P<path>\S+): (Read-only file system|Permission denied); make (?P<folder>\S+) "
    r"writable and run the same command to resume \((evaluations up to \d+ are saved|no evaluation was saved yet)\)$"
)
INTERRUPTED = re.compile(
    r"^evogm-opt merge: interrupted; run the same command to resume in (?P<folder>\S+) after evaluation (?P<n>\d+)$"
)


def write_config(root: Path, output: Path | str, budget: int = BUDGET, optimizer: str = "random") -> Path:
    """A config of the shared workspace (two experts, one seen task) writing to ``output``, wherever that is."""
    cfg = config_dict(
        experts=["expert0", "expert1"],
        tasks={"seen": [{"name": "mc", "val": "val/mc.jsonl"}]},
        optimizer={"name": optimizer, "budget": budget, "seed": 1},
        output=str(output),
    )
    path = root / f"config-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # not a traceback
    return lines[0]


@pytest.fixture(scope="module")
def reference(workspace) -> list[dict]:
    """The evaluations of an uninterrupted run: what every resumed run must end with."""
    out = workspace / "reference"
    assert main([str(write_config(workspace, out)), "--quiet"]) == 0
    return evaluations(out)


def _replace_fails_at(monkeypatch, name: str, err: int) -> list[str]:
    """``os.replace`` onto ``name`` (a file or folder of the run) fails with ``err``, as a full disk would make the
    write before it fail; the others go through."""
    real, hits = os.replace, []

    def replace(src, dst, *a, **kw):
        if Path(dst).name == name:
            hits.append(str(dst))
            raise OSError(err, os.strerror(err), str(dst))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)
    return hits


@pytest.mark.parametrize("point", ["run.json", "checkpoint.evogm", "convergence.png", "merged"])
def test_a_full_disk_at_each_write_point_is_one_line_exit_1_and_the_same_command_resumes(
    workspace, reference, monkeypatch, capsys, point
):
    out = workspace / f"full-{point.replace('.', '-')}"
    config = write_config(workspace, out)
    hits = _replace_fails_at(monkeypatch, point, errno.ENOSPC)
    code = main([str(config), "--quiet"])
    line = one_line(capsys.readouterr().err)
    assert hits and code == 1, line
    match = FULL.match(line)
    assert match, line
    assert match["path"] == str(out / point)
    if point in ("convergence.png", "merged"):  # the search had finished: every evaluation is kept
        assert match["n"] == str(BUDGET)
    monkeypatch.undo()  # space freed
    assert main([str(config), "--quiet"]) == 0
    assert evaluations(out) == reference


def test_interrupted_inside_fsync_is_one_line_exit_130_naming_the_resume_point(
    workspace, reference, monkeypatch, capsys
):
    """Ctrl-C can land anywhere; inside ``os.fsync`` (the log's append) is where it landed for the issue."""
    out = workspace / "fsync-interrupt"
    config = write_config(workspace, out)
    real, calls = os.fsync, [0]

    def fsync(fd):
        calls[0] += 1
        if calls[0] == 8:
            raise KeyboardInterrupt
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    code = main([str(config), "--quiet"])
    line = one_line(capsys.readouterr().err)
    assert code == 130, line
    match = INTERRUPTED.match(line)
    assert match and match["folder"] == str(out), line
    monkeypatch.undo()
    assert main([str(config), "--quiet"]) == 0
    assert evaluations(out) == reference


def test_a_folder_that_cannot_be_written_is_one_line_exit_1(workspace, monkeypatch, capsys):
    """EACCES as a non-root user meets it; the real read-only file system is the tmpfs test below."""
    out = workspace / "not-permitted"
    hits = _replace_fails_at(monkeypatch, "run.json", errno.EACCES)
    code = main([str(write_config(workspace, out)), "--quiet"])
    line = one_line(capsys.readouterr().err)
    assert hits and code == 1 and READ_ONLY.match(line), line
    assert READ_ONLY.match(line)["folder"] == str(out)


def test_permission_denied_reading_an_expert_outside_the_run_folder_is_cannot_read_exit_2(
    workspace, monkeypatch, capsys
):
    """Only a path in the run folder makes EACCES/EPERM a write to fix there; an expert (or the base) that cannot
    be read is a wrong input: 'cannot read PATH', exit 2, and nothing about making the run folder writable."""
    import llm_merge.run.assemble

    out = workspace / "expert-unreadable"
    denied = workspace / "expert1" / "adapter_model.safetensors"

    def load_expert(path, *args, **kwargs):  # root reads a chmod-000 file: the error a non-root user gets instead
        raise PermissionError(errno.EACCES, "Permission denied", str(denied))

    monkeypatch.setattr(llm_merge.run.assemble, "load_expert", load_expert)
    code = main([str(write_config(workspace, out)), "--quiet"])
    line = one_line(capsys.readouterr().err)
    assert code == 2, line
    assert line == f"evogm-opt merge: cannot read {denied}: Permission denied"


# --- real file systems: a tmpfs (root only) ---------------------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path):
    """A fresh tmpfs mount (80 KiB), unmounted afterwards; skipped where this process may not mount."""
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    if not shutil.which("mount") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=80k", "tmpfs", str(mountpoint)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def remount(mountpoint: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mountpoint)], check=True)


def test_a_real_read_only_file_system_is_one_line_and_the_run_resumes_when_writable(
    workspace, reference, tmpfs, capsys
):
    out = tmpfs / "run"
    config = write_config(workspace, out)
    remount(tmpfs, "ro")
    code = main([str(config), "--quiet"])
    line = one_line(capsys.readouterr().err)
    assert code == 1 and READ_ONLY.match(line) and "Read-only file system" in line, line
    remount(tmpfs, "rw,size=64m")
    assert main([str(config), "--quiet"]) == 0
    assert evaluations(out) == reference


def test_a_really_full_disk_is_one_line_and_the_run_resumes_after_space_is_freed(workspace, reference, tmpfs, capsys):
    """An 80 KiB tmpfs: the log, run.json, checkpoint and plot fit (about 35 KB), the merged model (107 KB) does not."""
    out = tmpfs / "run"
    config = write_config(workspace, out)
    code = main([str(config), "--quiet"])
    line = one_line(capsys.readouterr().err)
    assert code == 1 and FULL.match(line), line
    assert FULL.match(line)["n"] == str(BUDGET)  # the search finished; writing its report did not
    remount(tmpfs, "size=64m")
    assert main([str(config), "--quiet"]) == 0
    assert evaluations(out) == reference
    assert (out / "merged" / "model.safetensors").is_file()


# --- a real Ctrl-C: SIGINT to the command in a subprocess --------------------------------------------------------


def test_sigint_to_the_merge_command_is_one_line_exit_130_and_the_same_command_finishes_the_run(workspace):
    out = workspace / "sigint"
    budget = 400  # long enough to be caught mid-search
    config = write_config(workspace, out, budget=budget)
    command = [sys.executable, "-m", "evogm_opt.cli", "merge", str(config), "--quiet"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # SIGINT at its default in the child, whoever started the tests: a shell without job control starts
    # background commands (`pytest … &`) with SIGINT ignored, children inherit that, and a Python started with
    # SIGINT ignored installs no KeyboardInterrupt handler — the run would finish on its own
    proc = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            log = out / "log.jsonl"
            if log.exists() and log.read_text().count("\n") >= 20:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    # the exit code first: a run that ended on its own (the signal ignored) says so, not "no line on stderr"
    n_logged = (out / "log.jsonl").read_text().count("\n") if (out / "log.jsonl").exists() else 0
    assert proc.returncode == 130, f"exit {proc.returncode} after {n_logged} log lines, stderr {err!r}"
    line = one_line(err)
    match = INTERRUPTED.match(line)
    assert match and match["folder"] == str(out), line
    saved = int(match["n"])
    assert 0 < saved < budget
    assert len(evaluations(out)) >= saved
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    done = evaluations(out)
    assert [e["evaluation"] for e in done] == list(range(1, budget + 1))


def test_interrupted_while_reading_the_config_is_one_line_exit_130(workspace, monkeypatch, capsys):
    """Before the run folder is known there is nothing to resume; still one line, not a traceback."""
    import llm_merge.run.config

    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(llm_merge.run.config, "load_config", interrupted)
    assert main([str(write_config(workspace, workspace / "never")), "--quiet"]) == 130
    line = one_line(capsys.readouterr().err)
    assert line == "evogm-opt merge: interrupted before the run started; nothing was written"
    assert not (workspace / "never").exists()


def test_ctrl_c_with_the_progress_bar_on_ends_the_bar_before_the_message(workspace, monkeypatch, capsys):
    """Without --quiet the bar is on stderr too: it must be closed (its line ended) before the one-line message,
    not redrawn after it."""
    from llm_merge.run import search

    closed: list[bool] = []
    close = search._Progress.close
    monkeypatch.setattr(search._Progress, "close", lambda self: (closed.append(True), close(self))[1])

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(search, "optimize", interrupted)
    assert main([str(write_config(workspace, workspace / "bar-on"))]) == 130
    err = capsys.readouterr().err
    assert closed == [True]
    assert err.splitlines()[-1].startswith("evogm-opt merge: interrupted"), err[-500:]
