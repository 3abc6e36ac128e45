"""A checkpoint proves it belongs to the merge run: its owner (the run's string in ``run.json``) and the optimizer
this config builds. Foreign, corrupt or edited files in the run folder give one line, never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="the llm_merge adapter needs the `llm` extra")
yaml = pytest.importorskip("yaml", reason="the llm_merge adapter needs the `llm` extra")

from llm_merge.journal import RunError  # noqa: E402
from llm_merge.run import run_merge  # noqa: E402
from llm_merge.run_config import load_config  # noqa: E402

from evogm_opt import Optimizer  # noqa: E402
from tests.test_llm_merge_run import config_dict, evaluations, quiet_run, workspace, write_config  # noqa: E402, F401

SETTINGS = {"baselines": False, "save_model": False}


def rewrite(path: Path, name: str, **settings) -> None:
    path.write_text(yaml.safe_dump(config_dict(output=f"runs/{name}", **{**SETTINGS, **settings})))


def refused(path: Path) -> str:
    with pytest.raises(RunError) as exc:
        quiet_run(path)
    assert "\n" not in str(exc.value)
    return str(exc.value)


def test_a_checkpoint_of_another_optimizer_copied_into_the_run_is_refused(workspace):  # noqa: F811
    cma = write_config(workspace, "foreign-cma", optimizer={"name": "cmaes", "budget": 12, "seed": 3}, **SETTINGS)
    quiet_run(cma)
    path = write_config(workspace, "foreign-evogm", **SETTINGS)
    quiet_run(path)
    out = workspace / "runs" / "foreign-evogm"
    shutil.copyfile(workspace / "runs" / "foreign-cma" / "checkpoint.evogm", out / "checkpoint.evogm")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    rewrite(path, "foreign-evogm", optimizer={"budget": 18, "seed": 3})
    message = refused(path)
    assert "is not this run's checkpoint" in message and "cmaes" in message and "--restart" in message
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # nothing touched


def test_a_checkpoint_of_another_seed_or_of_another_run_of_the_same_config_is_refused(workspace):  # noqa: F811
    path = write_config(workspace, "owned", **SETTINGS)
    quiet_run(path)
    out = workspace / "runs" / "owned"
    own = (out / "checkpoint.evogm").read_bytes()
    quiet_run(write_config(workspace, "owned-seed", optimizer={"budget": 12, "seed": 4}, **SETTINGS))
    quiet_run(write_config(workspace, "owned-twin", **SETTINGS))  # the same config in another folder: same λs
    rewrite(path, "owned", optimizer={"budget": 18, "seed": 3})
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
    path = write_config(workspace, "legacy", **SETTINGS)
    quiet_run(path)
    out = workspace / "runs" / "legacy"
    run = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({k: run[k] for k in ("fingerprint", "config")}))  # what 0.1.0 wrote
    Optimizer.load(out / "checkpoint.evogm").save(out / "checkpoint.evogm")  # a checkpoint without an owner
    rewrite(path, "legacy", optimizer={"budget": 18, "seed": 3})
    said: list[str] = []
    assert run_merge(load_config(path), progress=False, say=said.append).results["n_evals"] == 18
    assert any("did not record its inputs' contents; recorded them now" in s for s in said), said
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
    path = write_config(workspace, name, **SETTINGS)
    quiet_run(path)
    (workspace / "runs" / name / "run.json").write_bytes(damage)
    assert says in refused(path)


@pytest.mark.parametrize(
    "damage", [b"not a checkpoint", b"PK\x03\x04 torn zip", b"", "empty-metadata", "edited-state", "truncated"]
)
def test_a_damaged_checkpoint_is_one_line(workspace, damage):  # noqa: F811
    name = f"broken-{damage if isinstance(damage, str) else len(damage)}"
    path = write_config(workspace, name, **SETTINGS)
    quiet_run(path)
    checkpoint = workspace / "runs" / name / "checkpoint.evogm"
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
    rewrite(path, name, optimizer={"budget": 18, "seed": 3})
    message = refused(path)
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
    from llm_merge.rebuild import read_record

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
