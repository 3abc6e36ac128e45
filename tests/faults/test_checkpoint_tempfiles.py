"""A kill inside ``save`` leaves a temporary file beside the checkpoint; the next save of that checkpoint removes
it, but never the temporary file of a save another live process is making."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from evogm_opt import RandomSearch

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
    opt.save(target)  # now that writer is dead too
    assert _temporaries(tmp_path) == set()
    assert sorted(os.listdir(tmp_path)) == ["killed", "live", "run.ckpt"]


def test_a_thread_of_this_process_writing_the_same_target_is_left_alone(tmp_path: Path):
    from evogm_opt import atomic

    target = tmp_path / "run.ckpt"
    with atomic.atomic_path(target) as tmp:  # in use by this process while the inner write happens
        tmp.write_bytes(b"half")
        atomic.atomic_write(target, b"other")
        assert tmp.exists()
    assert target.read_bytes() == b"half"
    stray = tmp_path / f".run.{os.getpid()}.0123456789ab.tmp.ckpt"  # ours by pid, but no longer being written
    stray.write_bytes(b"left over")
    atomic.atomic_write(target, b"again")
    assert not stray.exists() and target.read_bytes() == b"again"
