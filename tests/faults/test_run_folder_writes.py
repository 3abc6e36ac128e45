"""A file-system fault (ENOSPC, EROFS, EACCES) while a merge run writes any of its files leaves a folder that,
once the fault is gone, resumes to exactly what an uninterrupted run gives: no half-written file, no stray
temporary file or folder, and the log and results equal."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers", reason="the llm_merge adapter needs the `llm` extra")
pytest.importorskip("yaml", reason="the llm_merge adapter needs the `llm` extra")

import llm_merge.run.journal as journal_module
import llm_merge.run.report as report_module
from safetensors.torch import load_file

from tests.test_llm_merge_run import crash_at_save, evaluations, quiet_run, workspace, write_config  # noqa: F401

SETTINGS = {"baselines": False, "optimizer": {"name": "evogm", "budget": 12, "seed": 5}}


def fault(code: int) -> OSError:
    return OSError(code, f"{errno.errorcode[code]}: injected")


def inject(point: str, monkeypatch) -> None:
    """Make one write of the run fail as a full, read-only or forbidden disk would."""
    if point in ("run.json", "results.json"):
        original = journal_module.atomic_write

        def write(path, data, **kw):
            if Path(path).name == point:
                raise fault(errno.ENOSPC)
            return original(path, data, **kw)

        monkeypatch.setattr(journal_module, "atomic_write", write)
    elif point == "checkpoint":  # the second (last) save: the log already holds that generation
        crash_at_save(monkeypatch, 2, fault(errno.ENOSPC))
    elif point == "log":  # half a line reaches the disk, then it is full
        original_append = journal_module.Journal.append
        calls = {"n": 0}

        def append(self, lines):
            calls["n"] += 1
            if calls["n"] == 2:
                with open(self.log, "a") as fh:
                    fh.write(json.dumps(lines[0])[:20])
                raise fault(errno.ENOSPC)
            return original_append(self, lines)

        monkeypatch.setattr(journal_module.Journal, "append", append)
    elif point == "png":
        from matplotlib.figure import Figure

        def savefig(self, path, *args, **kwargs):
            Path(path).write_bytes(b"\x89PNG half")
            raise fault(errno.EROFS)

        monkeypatch.setattr(Figure, "savefig", savefig)
    elif point == "merged":
        original_save = report_module.save_merged

        def save_merged(asm, folder):
            original_save(asm, folder)
            (Path(folder) / "model.safetensors").write_bytes(b"half")
            raise fault(errno.EACCES)

        monkeypatch.setattr(report_module, "save_merged", save_merged)


def stray(out: Path) -> list[str]:
    """Temporary files and staging folders left behind."""
    return sorted(p.name for p in out.rglob(".*") if ".tmp" in p.name or ".partial-" in p.name)


@pytest.fixture(scope="module")
def straight(workspace):  # noqa: F811
    quiet_run(write_config(workspace, "writes-straight", **SETTINGS))
    return workspace / "runs" / "writes-straight"


@pytest.mark.parametrize("point", ["run.json", "checkpoint", "log", "png", "merged", "results.json"])
def test_a_write_fault_leaves_a_folder_that_resumes_exactly(workspace, straight, monkeypatch, point):  # noqa: F811
    path = write_config(workspace, f"writes-{point}", **SETTINGS)
    out = workspace / "runs" / f"writes-{point}"
    with monkeypatch.context() as m:
        inject(point, m)
        with pytest.raises(OSError, match="injected"):
            quiet_run(path)
    assert stray(out) == []
    assert not (out / "results.json").exists()  # the run is not marked complete
    if (out / "merged").exists():  # published whole, or not at all
        assert load_file(out / "merged" / "model.safetensors") and (out / "merged" / "README.md").is_file()
    assert point != "merged" or not (out / "merged").exists()
    assert not (out / "convergence.png").exists() or point == "results.json"  # no half plot
    if (out / "log.jsonl").exists():
        before = (out / "log.jsonl").read_bytes()
    quiet_run(path)  # the fault is gone
    assert stray(out) == []
    assert evaluations(out) == evaluations(straight)
    a, b = (json.loads((d / "results.json").read_text()) for d in (straight, out))
    assert a["rows"] == b["rows"] and a["n_evals"] == b["n_evals"] == 12
    assert a["best"]["lambda"] == b["best"]["lambda"] and a["best"]["evaluation"] == b["best"]["evaluation"]
    ours, theirs = load_file(out / "merged" / "model.safetensors"), load_file(straight / "merged" / "model.safetensors")
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert (out / "convergence.png").read_bytes()[:4] == b"\x89PNG"
    if point in ("checkpoint", "log"):  # the log ran ahead of the checkpoint: kept whole beside the new one
        (aside,) = out.glob("log-aside-*.jsonl")
        assert aside.read_bytes() == before


@pytest.mark.parametrize("name", ["merged", "merged-pick"])
def test_a_kill_between_publishs_two_renames_loses_no_model_folder(tmp_path, monkeypatch, name):
    target = tmp_path / name
    target.mkdir()
    (target / "model.safetensors").write_bytes(b"the earlier merge")
    staging = report_module.staging_folder(target)
    (staging / "model.safetensors").write_bytes(b"the new merge")
    original, calls = os.replace, {"n": 0}

    def killed_after_the_first(src, dst):
        calls["n"] += 1
        if calls["n"] == 2:  # the earlier folder is aside, the new one not yet in place
            raise KeyboardInterrupt
        return original(src, dst)

    with monkeypatch.context() as m:
        m.setattr(os, "replace", killed_after_the_first)
        with pytest.raises(KeyboardInterrupt):
            report_module.publish(staging, target)
    assert not target.exists() and len(list(tmp_path.glob(f".{name}.replaced-*"))) == 1
    # the next report tidies up first; if its own build then fails, the earlier merge is still there
    report_module.clear_leftovers(tmp_path)
    assert (target / "model.safetensors").read_bytes() == b"the earlier merge"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # the staging folder went, nothing else did
    staging = report_module.staging_folder(target)
    (staging / "model.safetensors").write_bytes(b"the new merge")
    report_module.publish(staging, target)
    assert (target / "model.safetensors").read_bytes() == b"the new merge"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # the replaced copy removed once the new is in
