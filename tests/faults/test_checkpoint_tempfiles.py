"""A kill inside ``save`` leaves a temporary file beside the checkpoint; the first save of that checkpoint in a
later process removes it (and :func:`evogm_opt.atomic.remove_leftovers` a folder's), but never the temporary file
of a save another live process is making, nor one another host (a shared NFS folder, another container) wrote."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from evogm_opt import RandomSearch, atomic

# A writer whose np.savez writes a little and then blocks, so the test can kill it inside the save.
BLOCKING_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from evogm_opt import RandomSearch

    def stuck(fh, **arrays):
        fh.write(b"PK partial")
        fh.flush()
        Path(sys.argv[2]).write_text("inside")
        time.sleep(600)

    np.savez = stuck
    RandomSearch(2, seed=0).save(sys.argv[1])
    """
)


def _start_stuck_writer(target: Path, marker: Path) -> subprocess.Popen:
    root = Path(__file__).parents[2]
    proc = subprocess.Popen([sys.executable, "-c", BLOCKING_WRITER, str(target), str(marker)], cwd=root)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, "the writer ended before blocking"
        assert time.monotonic() < deadline, "the writer never reached its save"
        time.sleep(0.05)
    return proc


def _temporaries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.startswith(".run.")}


def test_a_leftover_of_a_killed_save_is_removed_and_a_live_one_kept(tmp_path: Path):
    target = tmp_path / "run.ckpt"
    killed = _start_stuck_writer(target, tmp_path / "killed")
    leftover = _temporaries(tmp_path)
    assert len(leftover) == 1 and str(killed.pid) in next(iter(leftover))
    killed.send_signal(signal.SIGKILL)
    killed.wait()

    live = _start_stuck_writer(target, tmp_path / "live")
    try:
        in_progress = _temporaries(tmp_path) - leftover
        assert len(in_progress) == 1
        # a save from another process (this one)
        opt = RandomSearch(2, seed=1)
        x = opt.ask()
        opt.tell(x, [float(np.sum(r**2)) for r in x])
        opt.save(target)
        assert _temporaries(tmp_path) == in_progress, "the dead writer's file stays, or the live one's went"
        assert RandomSearch.load(target).n_evals == len(x)
    finally:
        live.kill()
        live.wait()
    # now that writer is dead too; this process cleaned run.ckpt's leftovers at its first save and does not look
    # again at every save, but the folder-level cleanup (what a run does when it starts) finds it
    assert atomic.remove_leftovers(tmp_path) == [tmp_path / name for name in in_progress]
    assert _temporaries(tmp_path) == set()
    assert sorted(os.listdir(tmp_path)) == ["killed", "live", "run.ckpt"]


def test_a_thread_of_this_process_writing_the_same_target_is_left_alone(tmp_path: Path):
    target = tmp_path / "run.ckpt"
    with atomic.atomic_path(target) as tmp:  # in use by this process while the inner write happens
        tmp.write_bytes(b"half")
        atomic.atomic_write(target, b"other")
        assert atomic.remove_leftovers(tmp_path) == []
        assert tmp.exists()
    assert target.read_bytes() == b"half"
    stray = _name("run", ".ckpt", os.getpid())  # ours by pid, but no longer being written
    (tmp_path / stray).write_bytes(b"left over")
    assert atomic.remove_leftovers(tmp_path) == [tmp_path / stray]
    atomic.atomic_write(target, b"again")
    assert target.read_bytes() == b"again"


DEAD = 999_999_999  # above any pid_max (2**22 at most on Linux): no process has this id


def _name(stem: str, suffix: str, pid: int, host: str | None = None, token: str = "0123456789ab") -> str:
    """A temporary name as evogm_opt.atomic writes it (``host`` None: this host's)."""
    return f".{stem}.{atomic._host() if host is None else host}-{pid}.{token}.tmp{suffix}"


def test_the_temporary_name_carries_this_host_and_pid(tmp_path: Path):
    with atomic.atomic_path(tmp_path / "model.safetensors") as tmp:
        match = atomic._TEMP_NAME.fullmatch(tmp.name)
        assert match is not None, tmp.name
        assert (match["stem"], match["host"], match["pid"], match["suffix"]) == (
            "model",
            atomic._host(),
            str(os.getpid()),
            ".safetensors",
        )


@pytest.mark.parametrize(
    "hostname", ["gpu-node-07.cluster.example.org", "a" * 200, "---", "ünïcode-höst", "node_1"], ids=str.__len__
)
def test_the_host_in_the_name_is_short_and_keeps_names_parseable(monkeypatch, hostname: str):
    monkeypatch.setattr(atomic.socket, "gethostname", lambda: hostname)
    monkeypatch.setattr(atomic, "_HOST", None)
    host = atomic._host()
    name = host.split("_ns")[0]  # a container's own pid namespace adds its id
    assert name and len(name) <= 24 and all(c.isascii() and (c.isalnum() or c == "_") for c in host)
    match = atomic._TEMP_NAME.fullmatch(_name("run-3.v2", ".ckpt", 42))
    assert match is not None and (match["stem"], match["host"], match["pid"]) == ("run-3.v2", host, "42")


def test_only_this_hosts_leftovers_of_dead_writers_are_removed(tmp_path: Path):
    """Another host's writer cannot be looked up here (its pid means nothing on this machine, or in this
    container), and a name without a host could be anyone's: both stay, whatever their pid."""
    target = tmp_path / "run.ckpt"
    ours_dead = _name("run", ".ckpt", DEAD)
    ours_alive = _name("run", ".ckpt", os.getppid())  # a live process of this host (this one's parent)
    other_host = _name("run", ".ckpt", DEAD, host="otherhost")
    other_container = _name("run", ".ckpt", DEAD, host=f"{atomic._host()}_ns1234")
    old_format = f".run.{DEAD}.0123456789ab.tmp.ckpt"  # written before names carried a host
    other_target = _name("run", ".json", DEAD)
    for name in (ours_dead, ours_alive, other_host, other_container, old_format, other_target):
        (tmp_path / name).write_bytes(b"partial")

    RandomSearch(2, seed=0).save(target)  # the first save of run.ckpt here cleans its leftovers
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"run.ckpt", ours_alive, other_host, other_container, old_format, other_target}

    assert atomic.remove_leftovers(tmp_path) == [tmp_path / other_target]  # the folder: every target's
    assert {p.name for p in tmp_path.iterdir()} == left - {other_target}


def test_a_target_is_cleaned_once_per_process_not_at_every_write(tmp_path: Path, monkeypatch):
    """A leftover comes only from a kill, so listing the folder after every save would cost and find nothing."""
    listed = []
    real_scandir = os.scandir

    def counting_scandir(path=None):
        listed.append(Path(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", counting_scandir)
    opt = RandomSearch(2, seed=0)
    for _ in range(5):
        opt.save(tmp_path / "run.ckpt")
        atomic.atomic_write(tmp_path / "log.txt", "x")
    assert sorted(listed) == [tmp_path, tmp_path]  # once for run.ckpt, once for log.txt


def test_remove_leftovers_of_a_folder_that_cannot_be_listed_is_empty(tmp_path: Path):
    assert atomic.remove_leftovers(tmp_path / "missing") == []
    assert atomic.remove_leftovers(tmp_path) == []
