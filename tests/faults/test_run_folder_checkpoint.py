"""A checkpoint proves it belongs to the merge run: its owner (the run's string in ``run.json``) and the optimizer
this config builds. Foreign, corrupt or edited files in the run folder give one line, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="the llm_merge adapter needs the `llm` extra")
yaml = pytest.importorskip("yaml", reason="the llm_merge adapter needs the `llm` extra")

from llm_merge.run.config import load_config  # noqa: E402
from llm_merge.run.journal import Journal, RunError  # noqa: E402
from llm_merge.run.pipeline import run_merge  # noqa: E402

from evogm_opt import Optimizer  # noqa: E402
from tests.test_llm_merge_run import evaluations, finished_run, quiet_run, workspace, write_config  # noqa: E402, F401

SETTINGS = {"baselines": False, "save_model": False}


def raised_budget(root: Path, name: str) -> Path:
    """The config of run ``name`` again, with 18 evaluations instead of 12 (so that it resumes)."""
    return write_config(root, name, optimizer={"budget": 18, "seed": 3}, **SETTINGS)


def refused(path: Path) -> str:
    with pytest.raises(RunError) as exc:
        quiet_run(path)
    assert "\n" not in str(exc.value)
    return str(exc.value)


def test_a_checkpoint_of_another_optimizer_copied_into_the_run_is_refused(workspace):  # noqa: F811
    cma = write_config(workspace, "foreign-cma", optimizer={"name": "cmaes", "budget": 12, "seed": 3}, **SETTINGS)
    quiet_run(cma)
    _, out = finished_run(workspace, "foreign-evogm", **SETTINGS)
    shutil.copyfile(workspace / "runs" / "foreign-cma" / "checkpoint.evogm", out / "checkpoint.evogm")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    message = refused(raised_budget(workspace, "foreign-evogm"))
    assert "is not this run's checkpoint" in message and "cmaes" in message and "--restart" in message
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # nothing touched


def test_a_checkpoint_of_another_seed_or_of_another_run_of_the_same_config_is_refused(workspace):  # noqa: F811
    _, out = finished_run(workspace, "owned", **SETTINGS)
    own = (out / "checkpoint.evogm").read_bytes()
    quiet_run(write_config(workspace, "owned-seed", optimizer={"budget": 12, "seed": 4}, **SETTINGS))
    quiet_run(write_config(workspace, "owned-twin", **SETTINGS))  # the same config in another folder: same λs
    path = raised_budget(workspace, "owned")
    shutil.copyfile(workspace / "runs" / "owned-seed" / "checkpoint.evogm", out / "checkpoint.evogm")
    message = refused(path)
    assert "is not this run's checkpoint" in message  # by its owner, or by its seed
    shutil.copyfile(workspace / "runs" / "owned-twin" / "checkpoint.evogm", out / "checkpoint.evogm")
    twin = json.loads((workspace / "runs" / "owned-twin" / "run.json").read_text())["owner"]
    message = refused(path)  # identical state, but another run's: only its owner tells
    assert "is not this run's checkpoint" in message and twin in message
    (out / "checkpoint.evogm").write_bytes(own)
    assert quiet_run(path).results["n_evals"] == 18


def test_a_run_started_by_0_1_0_resumes_and_records_its_inputs_then(workspace):  # noqa: F811
    _, out = finished_run(workspace, "legacy", **SETTINGS)
    run = json.loads((out / "run.json").read_text())
    old = {"fingerprint": run["fingerprint"], "config": {**run["config"], "threads": None}}  # 0.1.0's default
    (out / "run.json").write_text(json.dumps(old))  # what 0.1.0 wrote: no owner, inputs or thread count
    Optimizer.load(out / "checkpoint.evogm").save(out / "checkpoint.evogm")  # a checkpoint without an owner
    path = raised_budget(workspace, "legacy")
    said: list[str] = []
    assert run_merge(load_config(path), progress=False, say=said.append).results["n_evals"] == 18
    assert any("did not record its inputs' contents; recorded them now" in s for s in said), said
    threads = "started by evogm-opt 0.1.0 on torch's default thread count (threads: auto), this resume runs on 1"
    assert any(threads in s and "last bits" in s for s in said), said  # said, not refused
    upgraded = json.loads((out / "run.json").read_text())
    assert upgraded["inputs"] == run["inputs"] and "inputs_note" in upgraded and "owner" in upgraded


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (b"\xff\xfe not utf-8", "run.json is unreadable"),
        (b'["a", "list"]', "run.json is not a JSON object"),
        (b'{"config": {}}', "run.json has no fingerprint"),
    ],
)
def test_a_damaged_run_json_is_one_line(workspace, damage, says):  # noqa: F811
    name = f"damaged-{len(damage)}"
    path, out = finished_run(workspace, name, **SETTINGS)
    (out / "run.json").write_bytes(damage)
    assert says in refused(path)


@pytest.mark.parametrize(
    "damage", [b"not a checkpoint", b"PK\x03\x04 torn zip", b"", "empty-metadata", "edited-state", "truncated"]
)
def test_a_damaged_checkpoint_is_one_line(workspace, damage):  # noqa: F811
    name = f"broken-{damage if isinstance(damage, str) else len(damage)}"
    _, out = finished_run(workspace, name, **SETTINGS)
    checkpoint = out / "checkpoint.evogm"
    raw = checkpoint.read_bytes()
    if damage == "truncated":
        checkpoint.write_bytes(raw[: len(raw) // 2])
    elif damage == "edited-state":  # one byte flipped inside the zip: the checksum or the zip's CRC says so
        checkpoint.write_bytes(raw[:200] + bytes([raw[200] ^ 0xFF]) + raw[201:])
    elif damage == "empty-metadata":
        import io
        import zipfile

        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            z.writestr("__meta__.npy", b"")
        checkpoint.write_bytes(buffer.getvalue())
    else:
        checkpoint.write_bytes(damage)
    message = refused(raised_budget(workspace, name))
    assert str(checkpoint) in message and "--restart" in message


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"\xff\xfe", "is unreadable"),
        (b"[1, 2]", "is not a JSON object"),
        (b'{"format": 2, "base": "b", "experts": ["e"]}', "missing method, lambda, basis_version"),
        ("no-options", "cannot rebuild, missing method_options"),
        ("bad-lambda", "lambda is not what a run writes there"),
        ("bad-layout", "layout is not what a run writes there"),
    ],
)
def test_a_damaged_merge_record_is_one_line(tmp_path, content, says):
    from llm_merge.run.rebuild import read_record

    good = {
        "format": 2,
        "base": "base",
        "tokenizer": None,
        "dtype": "float32",
        "device": "cpu",
        "experts": ["e0"],
        "expert_names": ["e0"],
        "expert_kinds": ["lora"],
        "on_other_base": "warn",
        "method": "task_arithmetic",
        "method_options": {},
        "layout": {"name": "per_expert", "groups": 4, "simplex": False, "sharpness": 4.0},
        "lambda": [0.5],
        "basis_version": None,
    }
    path = tmp_path / "evogm_merge.json"
    if content == "no-options":
        content = json.dumps({k: v for k, v in good.items() if k != "method_options"}).encode()
    elif content == "bad-lambda":
        content = json.dumps({**good, "lambda": "0.5"}).encode()
    elif content == "bad-layout":
        content = json.dumps({**good, "layout": ["per_expert"]}).encode()
    path.write_bytes(content)
    with pytest.raises(RunError) as exc:
        read_record(path)
    assert "\n" not in str(exc.value) and says in str(exc.value) and str(path) in str(exc.value)
    path.write_text(json.dumps(good))
    assert read_record(path)["lambda"] == [0.5]


_OPENED: list[str] = []  # paths opened while a test listens (an audit hook cannot be removed, only muted)
_LISTENING = [False]


def _count_opens(event: str, args: tuple) -> None:
    if _LISTENING[0] and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_count_opens)


def test_the_checkpoint_is_read_once_and_only_damage_becomes_a_use_restart_line(workspace, monkeypatch):  # noqa: F811
    _, out = finished_run(workspace, "read-once", **SETTINGS)
    cfg = load_config(raised_budget(workspace, "read-once"))
    journal = Journal(out)
    journal._check_fingerprint(cfg)
    _OPENED.clear()
    _LISTENING[0] = True
    try:
        opt = journal.load_optimizer(3)
    finally:
        _LISTENING[0] = False
    assert opt is not None and opt.n_evals == 12
    # the state and its owner from one read: a checkpoint replaced in between cannot pair one file's owner
    # with another file's state
    assert [p for p in _OPENED if Path(p).name == "checkpoint.evogm"] == [str(journal.checkpoint)]

    def bug(*_a, **_k):
        raise KeyError("a bug of ours, not damage")

    monkeypatch.setattr("llm_merge.run.journal.load_checkpoint", bug)
    with pytest.raises(KeyError):  # not hidden behind "cannot resume ...; use --restart"
        journal.load_optimizer(3)
