"""What every ``evogm-opt`` command says when the file system or the user stops it: one line, an exit code.

Shared by the dispatcher (``evogm_opt.cli``) and the subcommands (``evogm-opt merge``, ``evogm-opt bench``), so
that a full disk, a folder that cannot be written, a file that cannot be read and Ctrl-C read the same in each:

- :func:`file_system_fault` finds the full-disk / not-writable / not-readable ``OSError`` behind an exception
  (its cause chain included, and the ``(os error N)`` that writers in Rust, such as safetensors', put in their
  message), or ``None`` for anything else;
- :func:`fault_line` words it (``cannot write X: No space left on device; free space and …``);
- :data:`EXIT_INTERRUPTED` (130: 128 + SIGINT, what a shell reports for Ctrl-C) and :func:`sigint_ignored`, for
  composing the line without a second Ctrl-C cutting it;
- :func:`saved_evaluations`: a checkpoint's evaluation count, read without building the optimizer;
- :func:`install_hint`: the command that installs an extra (from a clone: no package index serves evogm-opt yet).

Nothing here imports more than the standard library at import time (``numpy`` only inside
:func:`saved_evaluations`), so ``evogm-opt --help`` stays fast.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "EXIT_FILE_SYSTEM",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "NOT_WRITABLE",
    "NO_SPACE",
    "FileSystemFault",
    "fail",
    "fault_line",
    "file_system_fault",
    "install_hint",
    "missing_modules",
    "saved_evaluations",
    "sigint_ignored",
]

# exit codes: 2 the command line, the config or the inputs are wrong; 1 the file system stopped a run that had
# started (full, not writable); 130 interrupted (128 + SIGINT, as a shell reports it)
EXIT_USAGE, EXIT_FILE_SYSTEM, EXIT_INTERRUPTED = 2, 1, 130
NO_SPACE = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
NOT_WRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
_PERMISSION = frozenset({errno.EACCES, errno.EPERM})  # from a read as well as a write: the path tells which


@dataclass(frozen=True)
class FileSystemFault:
    """A file-system error as a command reports it. ``kind``: ``"no-space"``, ``"not-writable"`` or
    ``"not-readable"`` (permission denied on a path outside what the command writes)."""

    kind: str
    error: OSError

    @property
    def exit_code(self) -> int:
        """1 when the file system stopped a write (free space or permissions, then the same command resumes);
        2 for an input that cannot be read (like any other wrong input)."""
        return EXIT_USAGE if self.kind == "not-readable" else EXIT_FILE_SYSTEM


def file_system_fault(exc: BaseException, writes_under: str | os.PathLike[str] | None = None) -> FileSystemFault | None:
    """The full-disk or permission ``OSError`` behind ``exc`` — itself, one it was raised from, or one its message
    names (``… (os error 28)``, as safetensors' writer raises it) — classified; ``None`` for anything else.

    ``EACCES``/``EPERM`` are a failed write only on a path under ``writes_under`` (the command's output folder or
    file), on one of its parents (created for it) or on no path at all; elsewhere (an expert, a base model, a
    results file the command only reads) they are ``"not-readable"``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        error: OSError | None = None
        if isinstance(current, OSError) and current.errno in NO_SPACE | NOT_WRITABLE:
            error = current
        else:
            found = re.search(r"\(os error (\d+)\)", str(current))
            if found and int(found[1]) in NO_SPACE | NOT_WRITABLE:
                error = OSError(int(found[1]), os.strerror(int(found[1])))
        if error is not None:
            if error.errno in NO_SPACE:
                return FileSystemFault("no-space", error)
            if error.errno in _PERMISSION and not _is_written(error.filename, writes_under):
                return FileSystemFault("not-readable", error)
            return FileSystemFault("not-writable", error)
        current = current.__cause__ or current.__context__
    return None


def _is_written(filename: object, writes_under: str | os.PathLike[str] | None) -> bool:
    if filename is None or writes_under is None:
        return True  # nothing to tell a read from: as before, a write
    try:
        path, root = Path(os.fsdecode(filename)).resolve(), Path(writes_under).resolve()
    except (OSError, TypeError, ValueError, RuntimeError):
        return True
    # in the folder, or one of its parents (created for it: `mkdir -p`)
    return path == root or root in path.parents or path in root.parents


def fault_line(fault: FileSystemFault, folder: str | os.PathLike[str], then: str) -> str:
    """One line: ``cannot write X: REASON; free space and THEN`` (``make FOLDER writable and THEN`` when not
    writable), or ``cannot read X: REASON`` (``then`` unused: fixing the input is the user's call). ``X`` is the
    file named by the error — the folder for a hidden temporary file beside the one being written — or
    ``folder`` when the error names none."""
    exc = fault.error
    path = Path(os.fsdecode(exc.filename)) if exc.filename is not None else Path(folder)
    if path.name.startswith(".") and fault.kind != "not-readable":
        path = path.parent
    reason = exc.strerror or str(exc)
    if fault.kind == "not-readable":
        return f"cannot read {path}: {reason}"
    fix = "free space" if fault.kind == "no-space" else f"make {folder} writable"
    return f"cannot write {path}: {reason}; {fix} and {then}"


def fail(prog: str, message: str, code: int) -> int:
    """Print ``PROG: MESSAGE`` on stderr; return ``code`` (for ``return fail(...)`` in a command's ``main``)."""
    print(f"{prog}: {message}", file=sys.stderr)
    return code


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """Ctrl-C ignored inside: a second one while the interrupted command composes its line does not cut it.
    (Outside the main thread, where signal handlers cannot be set, nothing changes.)"""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def saved_evaluations(checkpoint: str | os.PathLike[str]) -> int | None:
    """How many evaluations the checkpoint at ``checkpoint`` holds (``core.n_evals``), or ``None`` where there is
    no readable checkpoint. For messages ("evaluations up to N are saved") printed after Ctrl-C or a full disk.

    Reads and verifies the file (:func:`evogm_opt._state.read_checkpoint`: numpy and json, a few hundredths of a
    second for a 1000-dim CMA-ES) but does not build the optimizer, which takes seconds there and imports torch
    or cma."""
    from evogm_opt import _state

    try:
        n = _state.read_checkpoint(checkpoint).state["core"]["n_evals"]
    except (ValueError, OSError, KeyError, TypeError):  # missing, damaged, foreign: no number to give
        return None
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else None


def install_hint(extra: str) -> str:
    """The command that installs ``extra``, as README.md gives it: from a clone of the repository, until a
    release is on a package index."""
    return f'pip install -e ".[{extra}]" (in a clone of the evogm-opt repository)'


def missing_modules(*names: str) -> list[str]:
    """Which of the top-level modules ``names`` cannot be imported here, found without importing them
    (``importlib.util.find_spec``; a module that is blocked or whose finder fails counts as missing)."""
    from importlib.util import find_spec

    missing = []
    for name in names:
        try:
            found = find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing
