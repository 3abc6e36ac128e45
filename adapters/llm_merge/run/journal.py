"""The run folder of ``evogm-opt merge``: who owns it, what was evaluated, and the files written atomically.

- ``run.lock``: held (``flock``) by the one process working in the folder, from the claim — before any model
  loads — to the end of the report; a second process is refused, naming the holder. The kernel releases the
  lock of a killed process, so a lock left by ``kill -9`` is simply taken over (and said so);
- ``run.json``: the resolved config, its fingerprint, the run's ``owner`` string (saved inside every checkpoint,
  so a checkpoint proves which run wrote it) and the content identity of its inputs (:mod:`llm_merge.run.identity`);
  a resume with another config, or with an input whose content changed, is refused; ``--restart`` moves the old
  run aside (into ``previous-<time>/``, nothing deleted; the lock file stays with its holder);
- ``checkpoint.evogm``: the optimizer after its last ``tell``;
- ``log.jsonl``: one line per evaluation, appended (and fsynced) *before* the ``tell`` it belongs to. On resume
  the log's first ``n_evals`` evaluation lines must agree with the checkpoint's record (λ, and the score); after
  a crash the log may run ahead of the checkpoint: :meth:`Journal.replay` then copies the whole old log to
  ``log-aside-<time>.jsonl`` and continues from the agreed lines — nothing is cut or rewritten in place.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from evogm_opt import Optimizer
from evogm_opt.atomic import atomic_path, atomic_write, remove_leftovers
from evogm_opt.fidelity import FidelityScheduler
from evogm_opt.resume import load_checkpoint, setup_mismatch
from llm_merge.run.config import MergeRunConfig
from llm_merge.run.identity import compare_inputs, run_inputs

CHECKPOINT, LOG, RUN, RESULTS, LOCK = "checkpoint.evogm", "log.jsonl", "run.json", "results.json", "run.lock"
# what a damaged or foreign checkpoint raises while loading (the core turns any damage into a ValueError); each
# becomes one RunError line. Anything else is a bug of ours, and must not hide behind "use --restart".
_LOAD_ERRORS = (ValueError, OSError)


class RunError(RuntimeError):
    """A run that cannot continue without losing or mixing up results (the message says what to do)."""


def one_line(exc: BaseException) -> str:
    """An exception's text on one line (a message quoted inside another must not break it)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; any damage (unreadable, not UTF-8, not JSON, not an object) is one line."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise RunError(f"{path} is unreadable ({one_line(exc)}); {what}") from None
    if not isinstance(data, dict):
        raise RunError(f"{path} is not a JSON object (found {type(data).__name__}); {what}")
    return data


class FolderLock:
    """An exclusive lock on the run folder, through ``flock`` on ``run.lock`` (``msvcrt`` on Windows).

    Why ``flock``: the kernel drops it when the holder dies, however it dies, so a stale lock never blocks a
    resume; the pid, host and start time written into the file only serve the message to the refused process.
    Where the file system cannot lock (some network mounts), the run goes on unlocked and says so.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.taken_over: dict[str, Any] | None = None  # a dead holder's record found in the file
        self.note: str | None = None  # why the folder could not be locked

    def acquire(self) -> None:
        for _ in range(100):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            try:
                locked = _try_lock(fd)
            except OSError as exc:  # no lock support here (ENOLCK, EOPNOTSUPP): better unlocked than no run
                self.note = f"{self.path}: the file system cannot lock ({one_line(exc)}); run one process per folder"
                os.close(fd)
                return
            if not locked:
                holder = _read_holder(fd)
                os.close(fd)
                raise RunError(
                    f"{self.path.parent} is in use by another evogm-opt merge ({_describe(holder)}); wait for it to "
                    "end or stop it (two processes on one run folder would log every evaluation twice)"
                )
            if _same_file(fd, self.path):
                break
            os.close(fd)  # locked a file its holder had just removed on release: lock the one there now
        else:
            raise RunError(f"{self.path}: could not lock the run folder (the lock file keeps being replaced)")
        self.taken_over = _read_holder(fd) or None
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(me).encode())
        except OSError:
            pass  # the record only words the message; the lock itself is held
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file and unlock. A lock file found later, with a record in it, was left by a holder
        that died (a process waiting on the removed file notices and locks the new one: see :meth:`acquire`)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            self.path.unlink()
        except OSError:
            try:  # Windows cannot remove an open file: clear the record instead
                os.ftruncate(fd, 0)
            except OSError:
                pass
        finally:
            os.close(fd)  # closing the last descriptor releases the lock


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:
        fcntl = None  # type: ignore[assignment]
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        import msvcrt  # Windows

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        return True
    except ImportError:
        raise OSError("no fcntl or msvcrt on this platform") from None
    except (BlockingIOError, PermissionError):
        return False
    except OSError as exc:
        if exc.errno in _HELD:  # held by another process
            return False
        raise


# what fcntl/msvcrt say when another process holds the lock (named, not numbered: the numbers differ by platform)
_HELD = frozenset({errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK, errno.EDEADLK})


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "holder unknown: it is just starting"
    return f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}"


class Journal:
    """One output folder: claimed for one config (:meth:`claim`), then read back and appended to."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.checkpoint = self.folder / CHECKPOINT
        self.log = self.folder / LOG
        self.lock = FolderLock(self.folder / LOCK)
        self.owner: str | None = None  # the string saved inside this run's checkpoints
        self.owned_checkpoints = False  # whether every checkpoint of this run carries the owner
        self._inputs_checked = False

    @classmethod
    def claim(cls, cfg: MergeRunConfig, restart: bool = False) -> Journal:
        """Lock the output folder, then create the run there or check that it holds a run of this very config.
        Nothing heavy has loaded yet: a refusal comes at once. The lock is held until :meth:`release`."""
        journal = cls(cfg.output)
        journal.folder.mkdir(parents=True, exist_ok=True)
        journal.lock.acquire()
        try:
            if journal.lock.note is None:  # unlocked (no lock support): another process may be writing them
                remove_leftovers(journal.folder)  # temporary files of writers killed here (on this host)
            run_file = journal.folder / RUN
            if run_file.exists() and restart:
                journal._set_aside()
            elif run_file.exists():
                journal._check_fingerprint(cfg)
            if not run_file.exists():
                journal._create(cfg)
        except BaseException:
            journal.release()
            raise
        return journal

    def release(self) -> None:
        """Give the folder up (at the end of the run, or when it fails)."""
        self.lock.release()

    def inputs(self) -> dict[str, Any] | None:
        """The content identities ``run.json`` records (``None`` where it has none)."""
        try:
            inputs = self._run_json().get("inputs")
        except RunError:
            return None
        return inputs if isinstance(inputs, dict) else None

    def _create(self, cfg: MergeRunConfig) -> None:
        self.owner = f"{cfg.fingerprint()}-{uuid.uuid4().hex[:12]}"
        self.owned_checkpoints = True
        run = {
            "fingerprint": cfg.fingerprint(),
            "config": cfg.to_dict(),
            "owner": self.owner,
            "owned_checkpoints": self.owned_checkpoints,
            "inputs": run_inputs(cfg),
            "threads": effective_threads(cfg),  # what a resume compares: the floats' last bits depend on it
        }
        self.write_json(RUN, run)
        self._inputs_checked = True

    def _set_aside(self) -> None:
        """Move *everything* of the old run (merged model, plots, picks included) into ``previous-<time>/``;
        earlier ``previous-*`` folders and the lock file (held by this process) stay. Nothing is deleted."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        keep = self.folder / f"previous-{stamp}"
        n = 1
        while keep.exists():  # two restarts within a second
            keep, n = self.folder / f"previous-{stamp}-{n}", n + 1
        keep.mkdir()
        for path in sorted(self.folder.iterdir()):
            if path != keep and path.name != LOCK and not path.name.startswith("previous-"):
                shutil.move(str(path), str(keep / path.name))

    def completed(self, cfg: MergeRunConfig) -> dict[str, Any] | None:
        """The results of this run if it has finished for this config's budget and stopping rules (a second
        invocation of the same command has nothing to do); ``None`` if there is a search to run or resume."""
        results_file = self.folder / RESULTS
        if not results_file.exists():
            return None
        try:
            results = read_json_object(results_file, "")
        except RunError:
            return None  # damaged: the report is written again
        if results.get("fingerprint") != cfg.fingerprint() or not isinstance(results.get("n_evals"), int):
            return None
        if results["n_evals"] >= cfg.optimizer.budget:
            return results
        same_rules = results.get("budget") == cfg.optimizer.budget
        same_rules = same_rules and results.get("stopping") == cfg.stopping.model_dump()
        return results if same_rules else None

    def _run_json(self) -> dict[str, Any]:
        return read_json_object(self.folder / RUN, "use another output folder or --restart")

    def _check_fingerprint(self, cfg: MergeRunConfig) -> None:
        run = self._run_json()
        previous = run.get("fingerprint")
        if previous is None:
            raise RunError(f"{self.folder / RUN} has no fingerprint; use another output folder or --restart")
        if previous != cfg.fingerprint():
            recorded = run.get("config") if isinstance(run.get("config"), dict) else {}
            theirs, ours = recorded.get("fidelity"), cfg.to_dict().get("fidelity")
            if theirs != ours:
                raise RunError(
                    f"{self.folder} holds a run with fidelity: {_fidelity_words(theirs)}, this config has "
                    f"fidelity: {_fidelity_words(ours)}; a search cannot change them midway; use another output "
                    "folder, or --restart to set the old run aside (it is moved, not deleted)"
                )
            raise RunError(
                f"{self.folder} holds a run of a different config (fingerprint {previous}, this one "
                f"{cfg.fingerprint()}); use another output folder, or --restart to set the old run aside (it is "
                "moved, not deleted)"
            )
        self.owner = run.get("owner") if isinstance(run.get("owner"), str) else None
        self.owned_checkpoints = run.get("owned_checkpoints") is True

    def verify_inputs(self, cfg: MergeRunConfig) -> str | None:
        """Refuse a resume whose base, experts or task files changed content since the run started (same paths,
        other weights would mix two runs in one). A run started before identities were recorded gets them now;
        the returned note says so (``None`` otherwise)."""
        if self._inputs_checked:
            return None
        self._inputs_checked = True
        run = self._run_json()
        current = run_inputs(cfg)
        if not isinstance(run.get("inputs"), dict):
            self.owner = self.owner or f"{cfg.fingerprint()}-{uuid.uuid4().hex[:12]}"
            run.update(owner=self.owner, inputs=current, inputs_recorded=time.strftime("%Y-%m-%d %H:%M:%S %z"))
            run["inputs_note"] = "recorded at a resume: this run was started without input identities"
            self.write_json(RUN, run)  # owned_checkpoints stays unset: its checkpoint may carry no owner
            return (
                f"{self.folder / RUN}: this run was started by an evogm-opt that did not record its inputs' contents; "
                "recorded them now (a change made before this resume cannot be detected)"
            )
        changed = compare_inputs(run["inputs"], current)
        if changed is not None:
            raise RunError(
                f"{self.folder}: {changed} since the run started; restore it or --restart (the old run is "
                "moved aside, not deleted)"
            )
        return None

    def threads_note(self, cfg: MergeRunConfig) -> str | None:
        """A line where a resume runs on another torch thread count than the run started on (``None``: the same,
        or nothing to resume). Not refused: threads change the speed and the floats' last bits, not which points
        are evaluated; but the continuation may then differ from an uninterrupted run."""
        if not self.checkpoint.exists():
            return None
        try:
            run = self._run_json()
        except RunError:
            return None
        now = effective_threads(cfg)
        config = run.get("config") if isinstance(run.get("config"), dict) else {}
        # evogm-opt 0.1.0 recorded no count: its config's threads: was it (None, or absent: torch's own default)
        then = run.get("threads") if "threads" in run else config.get("threads")
        if then == now or (then is None and cfg.threads is None):
            return None
        if type(then) is int:
            started = f"started on {then} torch thread(s)"
        else:
            started = "started by evogm-opt 0.1.0 on torch's default thread count (threads: auto)"
        return (
            f"{self.folder / RUN}: this run {started}, this resume runs on {now} (threads: {cfg.threads or 'auto'}); "
            "it continues, but may differ from an uninterrupted run in the last bits of its scores"
        )

    def _cannot_resume(self, exc: BaseException) -> RunError:
        return RunError(f"{self.checkpoint}: cannot resume ({one_line(exc)}); use --restart to set it aside")

    def _refuse_unless_ours(self, problem: str | None, theirs: str | None) -> None:
        """One line if the checkpoint is another optimizer's (``problem``) or, where this run's checkpoints carry an
        owner, another run's (``theirs``): what :meth:`load_optimizer` and :meth:`load_scheduler` both refuse."""
        if problem is None and self.owned_checkpoints and theirs != self.owner:
            problem = "it was written without an owner" if theirs is None else f"it belongs to {theirs!r}"
        if problem is not None:
            raise RunError(
                f"{self.checkpoint} is not this run's checkpoint ({problem}); put this run's checkpoint back, or "
                "--restart to set the old run aside"
            )

    def load_optimizer(
        self,
        dim: int,
        expected: Optimizer | None = None,
        expected_for: Callable[[str], Optimizer | None] | None = None,
    ) -> Optimizer | None:
        """The checkpointed optimizer (``None`` for a new run). Refused, in one line, if unreadable, for another
        ``dim``, not the optimizer ``expected`` (the one this config builds: name and constructor settings, the
        budget aside) or written by another run (its owner, where this run's checkpoints carry one; a run started
        by evogm-opt 0.1.0 wrote none, and is not refused on that alone). ``expected_for``: the optimizer this config
        builds in the shape a checkpoint of another name holds, or ``None`` (``"evogm"`` keeps its shape)."""
        if not self.checkpoint.exists():
            return None
        try:
            opt, theirs = load_checkpoint(self.checkpoint)  # one read: the state and its owner are of one file
        except _LOAD_ERRORS as exc:
            raise self._cannot_resume(exc) from None
        if opt.dim != dim:
            raise RunError(f"{self.checkpoint} searches {opt.dim} coefficients but this config has {dim}")
        if expected is not None and expected_for is not None and opt.name != expected.name:
            expected = expected_for(opt.name) or expected  # "evogm" continues in the shape its checkpoint holds
        problem = None if expected is None else foreign_optimizer(opt, expected)
        self._refuse_unless_ours(problem, theirs)
        return opt

    def load_scheduler(self, expected: FidelityScheduler) -> FidelityScheduler | None:
        """The checkpointed fidelity scheduler (``None`` for a new run), refused in one line as
        :meth:`load_optimizer` refuses an optimizer: unreadable, not a scheduler, other rungs or η, an inner
        optimizer this config does not build, or another run's (its owner)."""
        if not self.checkpoint.exists():
            return None
        try:
            sched, theirs = FidelityScheduler.load_with_owner(self.checkpoint)  # one read, as load_optimizer
        except _LOAD_ERRORS as exc:
            raise self._cannot_resume(exc) from None
        if sched.dim != expected.dim:
            raise RunError(f"{self.checkpoint} searches {sched.dim} coefficients but this config has {expected.dim}")
        problem = loaded_scheduler_problem(sched, expected) or foreign_optimizer(sched.inner, expected.inner)
        self._refuse_unless_ours(problem, theirs)
        return sched

    def replay(self, opt: Any, say: Any = None) -> list[dict[str, Any]]:
        """The log's evaluation lines that the checkpoint ``opt`` has told, checked against its record.

        Lines past them (a step interrupted between its log lines and its checkpoint) or a torn line: the whole
        old log is copied to ``log-aside-<time>.jsonl`` and the log continues from the agreed lines — said through
        ``say`` and recorded as an event line. A log with fewer lines, or one that disagrees with the checkpoint,
        is refused and left as it is."""
        n = opt.n_evals
        raw = self.log.read_bytes() if self.log.exists() else b""
        *complete, torn = raw.split(b"\n")
        entries: list[dict[str, Any]] = []
        prefix = 0  # lines of the log that the checkpoint accounts for (event lines among them included)
        for i, line in enumerate(complete):
            if len(entries) == n:
                break
            entry = _parse(line)
            if entry is None:
                raise RunError(
                    f"{self.log}: line {i + 1} is not a log line, before the checkpoint's {n} evaluations; restore "
                    "the log or use --restart"
                )
            if "evaluation" in entry:
                entries.append(entry)
            prefix = i + 1
        if len(entries) < n:
            raise RunError(
                f"{self.log} has {len(entries)} evaluations but the checkpoint {n}: the log was edited or "
                "lost; restore it or use --restart"
            )
        problem = disagreement(entries, opt)
        if problem is not None:
            raise RunError(
                f"{self.log} disagrees with {self.checkpoint} ({problem}): they are not of one run; restore the log "
                "of this checkpoint, or --restart to set the old run aside (nothing is deleted)"
            )
        while prefix < len(complete) and "evaluation" not in (_parse(complete[prefix]) or {"evaluation": None}):
            prefix += 1  # event lines right after them (why the last invocation stopped) stay too
        tail = [_parse(line) for line in complete[prefix:]]
        ahead = sum(1 for e in tail if e is not None and "evaluation" in e)
        if ahead == 0 and torn == b"" and all(e is not None for e in tail):
            return entries  # only event lines after them: the log goes on as it is
        reasons = [f"{ahead} evaluation line(s) past the checkpoint's {n}"] if ahead else []
        if torn or any(e is None for e in tail):
            reasons.append("a torn or unreadable line")
        self._set_log_aside(complete[:prefix], " and ".join(reasons), n, say)
        return entries

    def _set_log_aside(self, keep: list[bytes], reason: str, n: int, say: Any) -> None:
        """Copy the whole log to a new ``log-aside-<time>.jsonl`` (a name never used before; written atomically, so
        a failed copy leaves none), then replace the log by the lines ``keep`` and an event line saying so. A crash
        in between leaves both files whole."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside, k = self.folder / f"log-aside-{stamp}.jsonl", 1
        while aside.exists():  # this process holds the folder: a name free now stays free
            aside, k = self.folder / f"log-aside-{stamp}-{k}.jsonl", k + 1
        with atomic_path(aside) as tmp:  # a fault mid-copy (disk full) leaves no partial copy named like a whole one
            with open(self.log, "rb") as old, open(tmp, "wb") as copy:
                shutil.copyfileobj(old, copy)
        event = {"event": "log-set-aside", "file": aside.name, "reason": reason, "kept_evaluations": n}
        atomic_write(self.log, b"".join(line + b"\n" for line in keep) + json.dumps(event).encode() + b"\n")
        if say is not None:
            say(
                f"{self.log}: {reason}; the whole old log is kept as {aside.name}, the search continues from the "
                f"checkpoint's {n} evaluations"
            )

    def append(self, lines: list[dict[str, Any]]) -> None:
        """Append evaluation lines durably (fsync): they must be on disk before the ``tell`` they belong to."""
        with open(self.log, "a") as fh:
            fh.write("".join(json.dumps(e) + "\n" for e in lines))
            fh.flush()
            os.fsync(fh.fileno())

    def append_event(self, event: dict[str, Any]) -> None:
        """An event line (e.g. why the search stopped); replay skips these. The same event as the log's last
        line (a finished search resumed only to report again) is not written twice."""
        if self.log.exists():
            with open(self.log, "rb") as fh:
                fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
                last = fh.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
            if _parse(last) == json.loads(json.dumps(event)):
                return
        with open(self.log, "a") as fh:
            fh.write(json.dumps(event) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def write_json(self, name: str | Path, data: Any) -> Path:
        """``data`` as indented JSON at ``name`` (relative to the folder), written atomically."""
        return atomic_write(self.folder / name, json.dumps(data, indent=2))


def loaded_scheduler_problem(loaded: FidelityScheduler, expected: FidelityScheduler) -> str | None:
    """Why a checkpointed scheduler is not the one this run builds (``None``: it is): its rungs and η."""
    if (loaded.rungs, loaded.eta, loaded.nested) != (expected.rungs, expected.eta, expected.nested):
        return (
            f"its fidelity rungs are {list(loaded.rungs)} with eta {loaded.eta}, not {list(expected.rungs)} with eta "
            f"{expected.eta}"
        )
    return None


def _fidelity_words(settings: Any) -> str:
    """A run's fidelity settings as the config writes them (``off``, or the mapping)."""
    if not isinstance(settings, dict):
        return "off"
    return "{" + ", ".join(f"{k}: {v}" for k, v in settings.items()) + "}"


def effective_threads(cfg: MergeRunConfig) -> int:
    """The torch thread count the run's model work uses: the config's ``threads``, or (``auto``) torch's own."""
    if cfg.threads is not None:
        return cfg.threads
    import torch  # only for threads: auto; the journal is otherwise torch-free

    return torch.get_num_threads()


def foreign_optimizer(loaded: Optimizer, expected: Optimizer) -> str | None:
    """Why a checkpointed optimizer is not the one this config builds (``None``: it is): its name and
    constructor settings (dimension, seed, population, options or preset, sense; the budget left out, a resume
    may raise it) by :func:`evogm_opt.resume.setup_mismatch`, and the task weights of a multi-task search.
    Whoever wrote the checkpoint, only this run's optimizer may continue it."""
    problem = setup_mismatch(loaded, expected)
    if problem is not None:
        return problem
    weights = [
        None if o.objective_weights is None else np.asarray(o.objective_weights).tolist() for o in (loaded, expected)
    ]
    if loaded.n_evals and weights[0] is not None and weights[0] != weights[1]:
        return f"task weights are {weights[0]}, not {weights[1]}"
    return None


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        entry = json.loads(line.decode("utf-8"))
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def disagreement(entries: list[dict[str, Any]], opt: Optimizer) -> str | None:
    """Where the log's evaluation lines and the checkpoint's record of told evaluations differ (``None``: they
    agree). λ is compared exactly (as the optimizer clipped it: the told row is the logged one within float
    noise of the bounds); the score where the record has it — exactly for one task, to 1e-12 relative for
    several (the record holds their weighted mean, computed over the batch)."""
    for i, e in enumerate(entries):
        if e.get("evaluation") != i + 1:
            return f"the line of evaluation {i + 1} is numbered {e.get('evaluation')!r}"
    record = opt.evaluations
    offset = len(entries) - len(record)  # 0, or all of them: checkpoints older than 0.2 recorded no evaluations
    box = opt.box
    for j in range(max(0, -offset), len(record)):
        e = entries[offset + j]
        try:
            lam = np.asarray(e["lambda"], dtype=float)
            if lam.shape == record.x[j].shape:
                lam = np.clip(lam, box.lower, box.upper)
            score = e["score"]
        except (KeyError, TypeError, ValueError):
            return f"the line of evaluation {offset + j + 1} is not a complete log line"
        if lam.shape != record.x[j].shape or not np.array_equal(lam, record.x[j]):
            return f"evaluation {offset + j + 1}: λ differs"
        y = float(record.y[j])
        if np.isnan(y) or score is None:
            if np.isnan(y) != (score is None):
                return f"evaluation {offset + j + 1}: failed in one, scored in the other"
            continue
        several = isinstance(e.get("tasks"), dict) and len(e["tasks"]) >= 2
        if not (score == y or (several and abs(score - y) <= 1e-12 * max(1.0, abs(y)))):
            return f"evaluation {offset + j + 1}: score {score!r} in the log, {y!r} in the checkpoint"
    return None
