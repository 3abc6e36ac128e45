"""Atomic file writes that give the file the permissions any new file would get (the umask is honoured).

A crash leaves either the old file or the new one, never half of one; the temporary file a kill leaves behind is
removed by the next write of the same file (never one that another live process is writing). The temporary file
is created beside the target with mode ``0o666`` and the kernel applies the umask (and a folder's default ACL)
to it, exactly as for ``open(path, "w")`` — so under ``umask 022`` a checkpoint is ``0644`` and a teammate can
read it, where ``tempfile.mkstemp``'s fixed ``0600`` would have made it owner-only.

Why the umask is never *read* here: the only portable way, ``old = os.umask(0); os.umask(old)``, changes the
process-wide umask for a moment, and a file another thread creates in that moment is world-writable;
``/proc/self/status`` is Linux-only; a value cached at import misses a later ``os.umask``. Creating a file and
letting the kernel apply the mask has none of those problems, and :func:`default_file_mode` uses the same trick
for writers that ignore the umask (``safetensors.save_file`` writes ``0600``).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write", "default_file_mode"]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


_IN_USE: set[str] = set()  # temporary files this process is writing now (another thread's must not be removed)
_IN_USE_LOCK = threading.Lock()


def _create_beside(target: Path) -> tuple[int, Path]:
    """A new, empty, uniquely named hidden file in ``target``'s folder, opened for writing, as (fd, path).

    The name keeps the target's suffix, so writers that look at it (``np.savez`` adds ``.npz`` otherwise) see
    the same one, and carries this process's id, so a later write can tell a leftover of a killed writer from a
    file another live process is writing (:func:`_remove_leftovers`). The caller must :func:`_release` it.
    """
    for _ in range(100):
        tmp = target.with_name(f".{target.stem}.{os.getpid()}.{secrets.token_hex(6)}.tmp{target.suffix}")
        try:
            fd = os.open(tmp, _FLAGS, 0o666)
        except FileExistsError:
            continue
        with _IN_USE_LOCK:
            _IN_USE.add(str(tmp))
        return fd, tmp
    raise FileExistsError(f"could not create a temporary file beside {target}")


def _release(tmp: Path) -> None:
    with _IN_USE_LOCK:
        _IN_USE.discard(str(tmp))


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (on Windows, where ``os.kill(pid, 0)`` would terminate it, assume so)."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, and belongs to someone else
        return True
    return True


def _remove_leftovers(target: Path) -> None:
    """Remove temporary files of ``target`` that a killed writer left (a kill inside a save leaves one).

    A leftover is one whose writer's process no longer exists, or is this process but no thread of it is writing
    that file now; a file another live process is writing is never touched. (A writer's id reused by an unrelated
    live process keeps its leftover until that process ends: a leftover kept is harmless, one removed mid-write is
    not.) Failures to list or remove are ignored: cleaning up must never fail a write that succeeded.
    """
    pattern = re.compile(re.escape(f".{target.stem}.") + r"(\d+)\.[0-9a-f]{12}" + re.escape(f".tmp{target.suffix}"))
    try:
        names = [entry.name for entry in os.scandir(target.parent)]
    except OSError:
        return
    for name in names:
        match = pattern.fullmatch(name)
        if match is None:
            continue
        pid, leftover = int(match.group(1)), target.parent / name
        if pid == os.getpid():
            with _IN_USE_LOCK:
                stale = str(leftover) not in _IN_USE
        else:
            stale = not _pid_alive(pid)
        if stale:
            with contextlib.suppress(OSError):
                leftover.unlink()


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable too (POSIX); Windows cannot open a folder, and its rename is durable already."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes | str, *, encoding: str = "utf-8") -> Path:
    """Write ``data`` (bytes, or text encoded with ``encoding``) to ``path`` atomically; return the path.

    The folder must exist. An existing file is replaced; the new one gets the mode a new file gets (``0o666``
    less the umask), not the old file's.
    """
    target = Path(path)
    payload = data.encode(encoding) if isinstance(data, str) else bytes(data)
    fd, tmp = _create_beside(target)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        _release(tmp)
    _fsync_folder(target.parent)
    _remove_leftovers(target)
    return target


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that wants a file name; on success it becomes ``path``.

    For ``np.savez``, ``torch.save``, ``safetensors.torch.save_file`` and the like::

        with atomic_path(folder / "model.safetensors") as tmp:
            save_file(tensors, tmp)

    The temporary file already exists (empty) when the block starts; the writer may overwrite or replace it.
    Afterwards it gets the mode a new file gets here whatever the writer did, is fsynced and renamed onto
    ``path``. If the block raises, the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    fd, tmp = _create_beside(target)
    mode = stat.S_IMODE(os.fstat(fd).st_mode)  # what the kernel made of 0o666: the umask (or default ACL) applied
    os.close(fd)
    try:
        yield tmp
        if stat.S_IMODE(tmp.stat().st_mode) != mode:
            os.chmod(tmp, mode)
        fd = os.open(tmp, os.O_RDWR | getattr(os, "O_BINARY", 0))  # write access: Windows' fsync needs it
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        _release(tmp)
    _fsync_folder(target.parent)
    _remove_leftovers(target)


def default_file_mode(folder: str | os.PathLike[str] = ".") -> int:
    """The permission bits a new file created in ``folder`` gets (``0o666`` less the umask, e.g. ``0o644``).

    For files written by code that ignores the umask: ``os.chmod(path, default_file_mode(path.parent))``.
    Found by creating and removing an empty hidden file there, which never changes the process's umask.
    """
    fd, probe = _create_beside(Path(folder) / "mode-probe")
    try:
        return stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)
        _release(probe)
