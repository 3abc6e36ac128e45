"""The content identity of a merge run's inputs: an expert or task file replaced between a kill and the resume is
refused in one line; an expert moved away after loading is noted in ``evogm_merge.json``; ``--rebuild`` refuses
an expert that is gone or changed."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("transformers", reason="the llm_merge adapter needs the `llm` extra")
pytest.importorskip("yaml", reason="the llm_merge adapter needs the `llm` extra")

from llm_merge.run import identity
from llm_merge.run.journal import RunError
from llm_merge.run.rebuild import rebuild
from safetensors.torch import save_file

from tests.test_llm_merge_experts import make_adapter
from tests.test_llm_merge_run import Crash, crash_at_save, quiet_run, workspace, write_config  # noqa: F401

SETTINGS = {"baselines": False, "save_model": False}


def killed_at_second_checkpoint(path, monkeypatch) -> None:
    with monkeypatch.context() as m:
        crash_at_save(m, 2)
        with pytest.raises(Crash):
            quiet_run(path)


def test_an_expert_replaced_between_a_kill_and_the_resume_is_refused(workspace, tmp_path, monkeypatch):  # noqa: F811
    folder = workspace / "replaced-expert"
    make_adapter(folder, seed=5)
    experts = ["expert0", {"path": "replaced-expert", "name": "second"}, "expert2"]
    path = write_config(workspace, "replaced", experts=experts, **SETTINGS)
    killed_at_second_checkpoint(path, monkeypatch)
    shutil.copytree(folder, tmp_path / "backup")
    make_adapter(folder, seed=6)  # same path, same shapes, other weights
    with pytest.raises(RunError) as refused:
        quiet_run(path)
    message = str(refused.value)
    assert "\n" not in message and "expert 'second' changed (adapter_model.safetensors: content) since" in message
    assert "restore it or --restart" in message
    shutil.rmtree(folder)
    shutil.copytree(tmp_path / "backup", folder)  # restored (new mtimes): the same input
    assert quiet_run(path).results["n_evals"] == 12


def test_a_task_file_edited_before_the_resume_is_refused(workspace, monkeypatch):  # noqa: F811
    for split in ("val", "test"):
        shutil.copyfile(workspace / split / "mc.jsonl", workspace / split / "edited.jsonl")
    tasks = {"seen": [{"name": "mc", "val": "val/edited.jsonl", "test": "test/edited.jsonl"}]}
    path = write_config(workspace, "task-edited", tasks=tasks, **SETTINGS)
    killed_at_second_checkpoint(path, monkeypatch)
    size = (workspace / "val" / "edited.jsonl").stat().st_size
    with open(workspace / "val" / "edited.jsonl", "a") as fh:
        fh.write("\n")
    says = rf"task file 'mc/val' changed \(size {size} -> {size + 1} bytes\) since the run started"
    with pytest.raises(RunError, match=says):
        quiet_run(path)


def test_an_expert_moved_away_after_loading_is_noted_and_rebuild_refuses_a_changed_or_missing_one(
    workspace,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    folder = workspace / "moving-expert"
    make_adapter(folder, seed=7)
    experts = ["expert0", {"path": "moving-expert", "name": "mover"}]
    path = write_config(workspace, "moved", experts=experts, baselines=False)
    from llm_merge.run import pipeline as run_module

    original = run_module.search

    def search_then_move(*args, **kwargs):
        searched = original(*args, **kwargs)
        folder.rename(workspace / "moved-away")  # after the run loaded it, before the report
        return searched

    monkeypatch.setattr(run_module, "search", search_then_move)
    quiet_run(path)
    out = workspace / "runs" / "moved"
    record = json.loads((out / "merged" / "evogm_merge.json").read_text())
    inputs = {e["name"]: e for e in record["expert_inputs"]}
    assert inputs["mover"]["present_at_report"] is False and inputs["expert0"]["present_at_report"] is True
    assert inputs["mover"]["identity"] == json.loads((out / "run.json").read_text())["inputs"]["experts"]["mover"]
    with pytest.raises(RunError, match=r"expert 'mover' is no longer at .*moving-expert"):
        rebuild(out, tmp_path / "a", say=lambda *a: None)
    (workspace / "moved-away").rename(folder)
    rebuild(out, tmp_path / "b", say=lambda *a: None)  # back in place: rebuilt
    make_adapter(folder, seed=8)
    with pytest.raises(RunError) as refused:
        rebuild(out, tmp_path / "c", say=lambda *a: None)
    assert "\n" not in str(refused.value) and "changed since the run loaded it" in str(refused.value)
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_a_large_safetensors_file_is_identified_by_its_header_and_every_tensors_samples(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(identity, "SMALL", 0)  # every file "large": the sampled identity is used
    tensors = {f"layers.{i}.weight": torch.full((64, 64), float(i)) for i in range(4)}
    save_file(tensors, tmp_path / "a.safetensors")
    shutil.copyfile(tmp_path / "a.safetensors", tmp_path / "copy.safetensors")
    one_layer = {**tensors, "layers.2.weight": tensors["layers.2.weight"] + 1e-3}  # a fine-tune of one layer
    save_file(one_layer, tmp_path / "b.safetensors")
    reshaped = {**tensors, "layers.3.weight": torch.zeros(32, 128)}
    save_file(reshaped, tmp_path / "c.safetensors")
    a, copy, b, c = (identity.file_identity(tmp_path / f"{n}.safetensors") for n in ("a", "copy", "b", "c"))
    assert a == copy and "samples" in a  # a copy (other mtime) is the same input
    assert identity.what_changed({"file": a}, {"file": b}) == "content"
    assert identity.what_changed({"file": a}, {"file": c}) == "tensor layout (safetensors header)"


def test_only_the_files_that_define_the_model_are_inputs(workspace, tmp_path):  # noqa: F811
    folder = tmp_path / "checkpoint-500"  # an expert saved by a trainer, with the trainer's state beside it
    shutil.copytree(workspace / "expert0", folder)
    trainer = ["trainer_state.json", "training_args.bin", "optimizer.pt", "rng_state.pth", "scheduler.pt", "README.md"]
    for name in trainer:
        (folder / name).write_bytes(b"step 500")
    model = ["pytorch_model-00001-of-00002.bin", "adapter_model.bin", "model.safetensors.index.json"]
    model += ["generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
    for name in model:
        (folder / name).write_bytes(b"{}")
    before = identity.input_identity(str(folder))
    assert set(model) | {"adapter_config.json", "adapter_model.safetensors"} == set(before["files"])
    for name in trainer:  # training on (or a README edited): no weight changed
        (folder / name).write_bytes(b"step 600")
    (folder / "rng_state_1.pth").write_bytes(b"another rank")
    after = identity.input_identity(str(folder))
    assert after == before and identity.input_change(str(folder), before) is None
    (folder / "generation_config.json").write_bytes(b'{"do_sample": true}')
    assert identity.input_change(str(folder), before) == "generation_config.json: size 2 -> 19 bytes"
    # identities recorded before this rule (every top-level file) still compare on the model's files only
    older = {"files": {**before["files"], "trainer_state.json": {"size": 8, "sha256": "0"}}}
    assert identity.what_changed(older, identity.input_identity(str(folder))).startswith("generation_config.json")
    shutil.rmtree(folder)
    assert identity.input_change(str(folder), before) == identity.GONE
