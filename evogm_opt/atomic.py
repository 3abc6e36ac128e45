"""Atomic file writes that give the file the permissions any new file would get (the umask is honoured).

A crash leaves either the old file or the new one, never half of one. The temporary file is created beside the
target with mode ``0o666`` and the kernel applies the umask (and a folder's default ACL) to it, exactly as for
``open(path, "w")`` — so under ``umask 022`` a checkpoint is ``0644`` and a teammate can read it, where
``tempfile.mkstemp``'s fixed ``0600`` would have made it owner-only.

Leftovers: a kill inside a write leaves its temporary file, named ``.<stem>.<host>-<pid>.<12 hex>.tmp<suffix>``.
The first write of a target in a process removes that target's leftovers (later writes do not look again: a
leftover only comes from a kill), and :func:`remove_leftovers` removes a whole folder's. Only leftovers written
on *this* host are ever removed, and only when their writer is gone: its process no longer exists, or it is this
process and no thread of it is writing that file. ``host`` is this machine's name (sanitised, shortened) and, in
a container's own pid namespace, that namespace — a process id means nothing elsewhere, so a file another machine
(on a shared NFS folder) or another container is writing is never touched. Names without a host (written before
hosts were recorded) are never removed either: whose they are cannot be told.

Why the umask is never *read* here: the only portable way, ``old = os.umask(0); os.umask(old)``, changes the
process-wide umask for a moment, and a file another thread creates in that moment is world-writable;
``/proc/self/status`` is Linux-only; a value cached at import misses a later ``os.umask``. Creating a file and
letting the kernel apply the mask has none of those problems, and :func:`default_file_mode` uses the same trick
for writers that ignore the umask (``safetensors.save_file`` writes ``0600``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write", "default_file_mode", "remove_leftovers"]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)

# A temporary name: "." + the target's stem, the writer's host and pid, a random token, ".tmp" + the target's
# suffix. The host is [A-Za-z0-9_]+ (see _host), so the "-" before the pid is unambiguous.
_TEMP_NAME = re.compile(
    r"\.(?P<stem>.+)\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>[0-9]+)\.[0-9a-f]{12}\.tmp(?P<suffix>(?:\.[^.]*)?)"
)
_HOST_LIMIT = 24
_INITIAL_PID_NAMESPACE = 0xEFFFFFFC  # PROC_PID_INIT_INO: the pid namespace of a process outside any container

_IN_USE: set[str] = set()  # temporary files this process is writing now (another thread's must not be removed)
_CLEANED: set[str] = set()  # targets (absolute paths) whose leftovers this process has already removed
_LOCK = threading.Lock()  # guards both sets
_HOST: str | None = None


def _host() -> str:
    """Where a process id means the same as here, as a name part: this machine's name with every run of
    characters outside ``[A-Za-z0-9]`` made ``_`` (a long name shortened, with a hash of the whole kept so two
    long names stay apart), plus the pid namespace's id when this process runs in a container's own."""
    global _HOST
    if _HOST is None:
        name = socket.gethostname()
        host = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or "host"
        if len(host) > _HOST_LIMIT:
            host = f"{host[:15]}_{hashlib.sha256(name.encode('utf-8', 'replace')).hexdigest()[:8]}"
        try:
            namespace = os.stat("/proc/self/ns/pid").st_ino
        except OSError:  # not Linux, or no /proc: the host name alone
            namespace = _INITIAL_PID_NAMESPACE
        if namespace != _INITIAL_PID_NAMESPACE:
            host = f"{host}_ns{namespace:x}"
        _HOST = host
    return _HOST


def _create_beside(target: Path) -> tuple[int, Path]:
    """A new, empty, uniquely named hidden file in ``target``'s folder, opened for writing, as (fd, path).

    The name keeps the target's suffix, so writers that look at it (``np.savez`` adds ``.npz`` otherwise) see
    the same one, and carries this host and process id, so a later write can tell a leftover of a killed writer
    from a file another live process is writing (:func:`remove_leftovers`). The caller must :func:`_release` it.
    """
    for _ in range(100):
        tmp = target.with_name(f".{target.stem}.{_host()}-{os.getpid()}.{secrets.token_hex(6)}.tmp{target.suffix}")
        with _LOCK:  # in use before it exists: another thread's cleanup must never see it unclaimed
            _IN_USE.add(str(tmp))
        try:
            fd = os.open(tmp, _FLAGS, 0o666)
        except FileExistsError:
            _release(tmp)
            continue
        except BaseException:
            _release(tmp)
            raise
        return fd, tmp
    raise FileExistsError(f"could not create a temporary file beside {target}")


def _release(tmp: Path) -> None:
    with _LOCK:
        _IN_USE.discard(str(tmp))


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (on Windows, where ``os.kill(pid, 0)`` would terminate it, assume so)."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # it exists and is someone else's (EPERM), or no process can have that id
        return True
    return True


def _abandoned(folder: Path, name: str, match: re.Match[str]) -> bool:
    """Whether the temporary file ``name`` (parsed as ``match``) is a leftover this process may remove."""
    if match["host"] != _host():
        return False  # another machine's or container's: its pid cannot be checked here
    pid = int(match["pid"])
    if pid == os.getpid():
        with _LOCK:
            return str(folder / name) not in _IN_USE
    return not _pid_alive(pid)


def _sweep(folder: Path, target: Path | None) -> list[Path]:
    """Remove the leftovers in ``folder`` (of ``target`` only, unless None); return those removed. Failures to
    list or remove are ignored: cleaning up must never fail a write that succeeded."""
    try:
        names = [entry.name for entry in os.scandir(folder)]
    except OSError:
        return []
    removed = []
    for name in names:
        match = _TEMP_NAME.fullmatch(name)
        if match is None:
            continue
        if target is not None and (match["stem"], match["suffix"]) != (target.stem, target.suffix):
            continue
        if _abandoned(folder, name, match):
            try:
                (folder / name).unlink()
            except OSError:
                continue
            removed.append(folder / name)
    return sorted(removed)


def remove_leftovers(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove every temporary file in ``folder`` that a killed atomic write left there, and return their paths.

    Removed: files named as this module names them, written on this host, whose writer's process no longer exists
    (or is this process, no longer writing them). Never removed: another host's or container's, one a live
    process is writing, or one named before hosts were recorded. (A dead writer's id reused by an unrelated live
    process keeps its file until that process ends: a leftover kept is harmless, one removed mid-write is not.)
    A folder that cannot be listed, or a file that cannot be removed, is skipped.
    """
    return _sweep(Path(folder), None)


def _remove_leftovers_once(target: Path) -> None:
    """Remove ``target``'s leftovers the first time this process writes it (a leftover comes only from a kill,
    so looking again at every write would cost a folder listing each time and find nothing)."""
    key = os.path.abspath(target)
    with _LOCK:
        if key in _CLEANED:
            return
        _CLEANED.add(key)
    _sweep(target.parent, target)


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
    _remove_leftovers_once(target)
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
    _remove_leftovers_once(target)
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
