"""``evogm_opt.cli_faults``: the one place every ``evogm-opt`` command takes its file-system and Ctrl-C wording
from (issue 27, item 5, after review): which errors are a full disk, a folder that cannot be written or an input
that cannot be read; the checkpoint count for the message, read without building the optimizer; the install line.
"""

from __future__ import annotations

import errno
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from evogm_opt.cli_faults import (
    EXIT_FILE_SYSTEM,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    fault_line,
    file_system_fault,
    install_hint,
    saved_evaluations,
)

ROOT = Path(__file__).resolve().parents[2]


class SafetensorError(Exception):
    """Stands in for safetensors' own error type, which carries the errno only in its message."""


def test_full_disk_and_not_writable_are_found_behind_the_cause_chain_and_in_a_rust_message(tmp_path):
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "log.jsonl"))
    try:
        try:
            raise full
        except OSError as exc:
            raise RuntimeError("saving failed") from exc
    except RuntimeError as wrapped:
        fault = file_system_fault(wrapped, writes_under=tmp_path / "run")
    assert fault is not None and fault.kind == "no-space" and fault.error is full
    assert fault.exit_code == EXIT_FILE_SYSTEM
    rust = file_system_fault(SafetensorError("Error while serializing: IoError(Os { .. }) (os error 30)"))
    assert rust is not None and rust.kind == "not-writable" and rust.error.errno == errno.EROFS
    assert file_system_fault(ValueError("bad value")) is None
    assert file_system_fault(OSError(errno.ENOENT, "No such file or directory", "x")) is None


def test_permission_denied_is_a_write_only_under_the_folder_written(tmp_path):
    run = tmp_path / "run"
    inside = OSError(errno.EACCES, "Permission denied", str(run / "checkpoint.evogm"))
    outside = OSError(errno.EACCES, "Permission denied", str(tmp_path / "experts" / "a" / "adapter_model.safetensors"))
    nameless = OSError(errno.EPERM, "Operation not permitted")
    assert file_system_fault(inside, writes_under=run).kind == "not-writable"
    assert file_system_fault(nameless, writes_under=run).kind == "not-writable"
    parent = OSError(errno.EACCES, "Permission denied", str(tmp_path))  # creating the run folder's parents
    assert file_system_fault(parent, writes_under=run / "sub").kind == "not-writable"
    read = file_system_fault(outside, writes_under=run)
    assert read.kind == "not-readable" and read.exit_code == EXIT_USAGE
    assert fault_line(read, run, "unused") == f"cannot read {outside.filename}: Permission denied"
    # a read-only file system is only ever met writing, wherever the path is
    assert file_system_fault(OSError(errno.EROFS, "Read-only file system", "/elsewhere"), run).kind == "not-writable"


def test_the_write_line_names_the_folder_for_a_hidden_temporary_file(tmp_path):
    fault = file_system_fault(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".run.json.tmp1")))
    assert fault_line(fault, tmp_path, "run it again") == (
        f"cannot write {tmp_path}: No space left on device; free space and run it again"
    )
    fault = file_system_fault(OSError(errno.EROFS, "Read-only file system", str(tmp_path / "run.json")))
    assert fault_line(fault, tmp_path, "run it again") == (
        f"cannot write {tmp_path / 'run.json'}: Read-only file system; make {tmp_path} writable and run it again"
    )
    assert EXIT_INTERRUPTED == 130


def test_install_hint_is_the_from_a_clone_line_the_readme_gives():
    hint = install_hint("llm")
    assert hint.startswith('pip install -e ".[llm]"') and "clone" in hint
    assert 'pip install -e ".[EXTRA]"' in (ROOT / "README.md").read_text()
    # no runtime message or doc names a package index install of evogm-opt that no index serves
    needle, offenders = "evogm-opt" + "[", []
    for folder in ("evogm_opt", "adapters", "benchmarks", "docs", "tests"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".md") and needle in path.read_text(errors="replace"):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def _big_cmaes_checkpoint(path: Path) -> int:
    from evogm_opt import registry

    opt = registry.create("cmaes", 1000, seed=0)
    x = opt.ask()
    opt.tell(x, (x**2).sum(axis=1))
    opt.save(path)
    return opt.n_evals


def test_saved_evaluations_reads_the_count_without_building_the_optimizer(tmp_path):
    """A 1000-dim CMA-ES took seconds to load (with Ctrl-C ignored) only to print its count. The count alone is
    read from the metadata: neither cma nor torch (nor the optimizers package) is imported."""
    folder = tmp_path / "run"
    n = _big_cmaes_checkpoint(folder / "checkpoint.evogm")
    probe = textwrap.dedent(
        f"""
        import sys
        from evogm_opt.cli_faults import saved_evaluations
        from llm_merge.cli import _saved_evaluations
        print("N", saved_evaluations({str(folder / "checkpoint.evogm")!r}), _saved_evaluations(
            __import__("pathlib").Path({str(folder)!r})))
        heavy = ("torch", "cma", "matplotlib", "transformers", "evogm_opt.optimizers", "evogm_opt.evogm")
        print("LOADED", ",".join(m for m in heavy if m in sys.modules))
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"N {n} {n}" in done.stdout, done.stdout
    assert re.search(r"^LOADED $", done.stdout, re.M), done.stdout


def test_saved_evaluations_is_none_for_a_missing_damaged_or_foreign_file(tmp_path):
    assert saved_evaluations(tmp_path / "absent.evogm") is None
    (tmp_path / "damaged.evogm").write_bytes(b"PK\x03\x04 not really a zip")
    assert saved_evaluations(tmp_path / "damaged.evogm") is None
    import numpy as np

    np.savez(tmp_path / "foreign.npz", a=np.zeros(3))
    assert saved_evaluations(tmp_path / "foreign.npz") is None


def test_a_reader_that_leaves_the_pipe_early_gets_no_traceback(tmp_path):
    """``evogm-opt … | head``: the command's next write raises BrokenPipeError; the dispatcher ends quietly."""
    import subprocess
    import sys

    script = """
import sys
from evogm_opt import cli

class Leaving:
    name = "talk"
    def load(self):
        def talk(argv):
            for i in range(100000):
                print("line", i)
            return 0
        return talk

cli.commands = lambda: {"talk": Leaving()}
sys.exit(cli.main(["talk"]))
"""
    run = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run.stdout.readline()
    run.stdout.close()  # the reader leaves, as `head -1` does
    err = run.stderr.read().decode()
    assert run.wait() == 1 and "Traceback" not in err and "BrokenPipe" not in err, err
