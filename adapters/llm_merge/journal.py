"""The run folder of ``evogm-opt merge``: who owns it, what was evaluated, and the files written atomically.

- ``run.json``: the resolved config and its fingerprint; a resume with another config is refused, ``--restart``
  moves the old run aside (into ``previous-<time>/``, nothing deleted);
- ``checkpoint.evogm``: the optimizer after its last ``tell``;
- ``log.jsonl``: one line per evaluation, appended (and fsynced) *before* the ``tell`` it belongs to. After a
  crash the log may run ahead of the checkpoint; :meth:`Journal.replay` cuts it back, so the step is re-run.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from evogm_opt import Optimizer
from evogm_opt.atomic import atomic_write
from llm_merge.run_config import MergeRunConfig

CHECKPOINT, LOG, RUN, RESULTS = "checkpoint.evogm", "log.jsonl", "run.json", "results.json"


class RunError(RuntimeError):
    """A run that cannot continue without losing or mixing up results (the message says what to do)."""


class Journal:
    """One output folder: claimed for one config (:meth:`claim`), then read back and appended to."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.checkpoint = self.folder / CHECKPOINT
        self.log = self.folder / LOG

    @classmethod
    def claim(cls, cfg: MergeRunConfig, restart: bool = False) -> Journal:
        """Create the output folder, or check that it holds a run of this very config."""
        journal = cls(cfg.output)
        journal.folder.mkdir(parents=True, exist_ok=True)
        run_file = journal.folder / RUN
        if run_file.exists() and restart:
            journal._set_aside()
        elif run_file.exists():
            journal._check_fingerprint(cfg)
        if not run_file.exists():
            journal.write_json(RUN, {"fingerprint": cfg.fingerprint(), "config": cfg.to_dict()})
        return journal

    def _set_aside(self) -> None:
        """Move *everything* of the old run (merged model, plots, picks included) into ``previous-<time>/``;
        earlier ``previous-*`` folders stay where they are. Nothing is deleted."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        keep = self.folder / f"previous-{stamp}"
        n = 1
        while keep.exists():  # two restarts within a second
            keep, n = self.folder / f"previous-{stamp}-{n}", n + 1
        keep.mkdir()
        for path in sorted(self.folder.iterdir()):
            if path != keep and not path.name.startswith("previous-"):
                shutil.move(str(path), str(keep / path.name))

    def completed(self, cfg: MergeRunConfig) -> dict[str, Any] | None:
        """The results of this run if it has finished for this config's budget and stopping rules (a second
        invocation of the same command has nothing to do); ``None`` if there is a search to run or resume."""
        results_file = self.folder / RESULTS
        if not results_file.exists():
            return None
        try:
            results = json.loads(results_file.read_text())
        except json.JSONDecodeError:
            return None
        if results.get("fingerprint") != cfg.fingerprint():
            return None
        if results.get("n_evals", 0) >= cfg.optimizer.budget:
            return results
        same_rules = results.get("budget") == cfg.optimizer.budget and results.get("stopping") == asdict(cfg.stopping)
        return results if same_rules else None

    def _check_fingerprint(self, cfg: MergeRunConfig) -> None:
        run_file = self.folder / RUN
        try:
            previous = json.loads(run_file.read_text())["fingerprint"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise RunError(f"{run_file} is unreadable ({exc}); use another output folder or --restart") from exc
        if previous != cfg.fingerprint():
            raise RunError(
                f"{self.folder} holds a run of a different config (fingerprint {previous}, this one "
                f"{cfg.fingerprint()}); use another output folder, or --restart to set the old run aside (it is "
                "moved, not deleted)"
            )

    def load_optimizer(self, dim: int) -> Optimizer | None:
        """The checkpointed optimizer (``None`` for a new run); refused if unreadable or for another ``dim``."""
        if not self.checkpoint.exists():
            return None
        try:
            opt = Optimizer.load(self.checkpoint)
        except (ValueError, KeyError, OSError) as exc:
            raise RunError(f"{self.checkpoint}: cannot resume ({exc}); use --restart to set it aside") from exc
        if opt.dim != dim:
            raise RunError(f"{self.checkpoint} searches {opt.dim} coefficients but this config has {dim}")
        return opt

    def replay(self, n_evals: int) -> list[dict[str, Any]]:
        """The log's first ``n_evals`` entries; the log is cut back to them (later lines belong to a re-run step)."""
        entries = self._read_evaluations()
        if len(entries) < n_evals:
            raise RunError(
                f"{self.log} has {len(entries)} evaluations but the checkpoint {n_evals}: the log was edited or "
                "lost; restore it or use --restart"
            )
        entries = entries[:n_evals]
        atomic_write(self.log, "".join(json.dumps(e) + "\n" for e in entries))
        return entries

    def _read_evaluations(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        if not self.log.exists():
            return entries
        for line in self.log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                break  # a line torn by the crash: it and anything after it belong to the re-run step
            if "evaluation" in entry:  # event lines (why the last invocation stopped) are written again
                entries.append(entry)
        return entries

    def append(self, lines: list[dict[str, Any]]) -> None:
        """Append evaluation lines durably (fsync): they must be on disk before the ``tell`` they belong to."""
        with open(self.log, "a") as fh:
            fh.write("".join(json.dumps(e) + "\n" for e in lines))
            fh.flush()
            os.fsync(fh.fileno())

    def append_event(self, event: dict[str, Any]) -> None:
        """An event line (e.g. why the search stopped); replay skips these."""
        with open(self.log, "a") as fh:
            fh.write(json.dumps(event) + "\n")

    def write_json(self, name: str | Path, data: Any) -> Path:
        """``data`` as indented JSON at ``name`` (relative to the folder), written atomically."""
        return atomic_write(self.folder / name, json.dumps(data, indent=2))
