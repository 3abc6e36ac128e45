"""Encoder–decoder experts (T5, BART): loading, scoring, merging, saving and the mergekit recipe.

Everything runs on tiny random models built from a config, with a character tokenizer that appends ``<eos>`` as
T5's does, and experts trained here for a few steps on distinct toy classification tasks (so the task vectors are
real): three LoRA experts with peft's default T5 targets (``q``, ``v``) and two full fine-tunes (the tied
``shared`` embedding included). No weights are downloaded: the real FLAN-T5 setting is checked only as a config
(the worked config in docs/llm-merge.md).
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the llm_merge adapter needs the `llm` extra")
peft = pytest.importorskip("peft", reason="the llm_merge adapter needs the `llm` extra")
yaml = pytest.importorskip("yaml", reason="the llm_merge adapter needs the `llm` extra")

from llm_merge import ExpertError, load_lora_expert  # noqa: E402
from llm_merge.demo.cpu_demo import CHARS, char_tokenizer  # noqa: E402
from llm_merge.model.fitness import MergeFitness  # noqa: E402
from llm_merge.model.layouts import make_layout  # noqa: E402
from llm_merge.model.loading import load_base, load_expert  # noqa: E402
from llm_merge.model.names import BaseModelTypeError  # noqa: E402
from llm_merge.run.assemble import layer_counts  # noqa: E402
from llm_merge.run.config import ConfigError, load_config, parse_config  # noqa: E402
from llm_merge.run.pipeline import run_merge  # noqa: E402
from llm_merge.run.recipes import RECIPE, recipe_text, why_not_mergekit  # noqa: E402
from llm_merge.tasks.jsonl import Task, score  # noqa: E402

LETTERS = "abcdefghij"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "llm-merge.md"


def seq2seq_tokenizer():
    """The demo's character tokenizer, appending ``<eos>`` to every encoded text as T5's tokenizer does."""
    from tokenizers import processors

    tok = char_tokenizer()
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="$A <eos>", special_tokens=[("<eos>", tok.eos_token_id)]
    )
    return tok


def tiny_t5(seed: int = 0, gated: bool = True):
    torch.manual_seed(seed)
    config = transformers.T5Config(
        vocab_size=len(CHARS) + 2,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        dropout_rate=0.0,
        feed_forward_proj="gated-gelu" if gated else "relu",  # gated: T5 v1.1 / FLAN-T5's layout
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    return transformers.AutoModelForSeq2SeqLM.from_config(config).float().eval()


def tiny_bart(seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.BartConfig(
        vocab_size=len(CHARS) + 2,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        dropout=0.0,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=1,
        decoder_start_token_id=1,
        forced_eos_token_id=None,
    )
    return transformers.AutoModelForSeq2SeqLM.from_config(config).float().eval()


# ---------------------------------------------------------------- toy GLUE-like tasks: a yes/no label per prompt
def half(rng):  # is the letter in a–e?
    c = rng.choice(LETTERS)
    return f"h:{c}", "y" if c in "abcde" else "n"


def even(rng):  # is the digit even?
    d = rng.randrange(10)
    return f"e:{d}", "y" if d % 2 == 0 else "n"


def alternate(rng):  # is the letter's position even?
    i = rng.randrange(10)
    return f"a:{LETTERS[i]}", "y" if i % 2 == 0 else "n"


SKILLS = {"half": half, "even": even, "alt": alternate}


def write_task(path: Path, skill, n: int, seed: int, kind: str = "mc") -> Path:
    """``n`` examples of ``skill``: multiple choice over the labels ``n``/``y``, or generation of the label."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt, answer = skill(rng)
        if kind == "mc":
            rows.append({"prompt": prompt, "options": ["n", "y"], "answer": int(answer == "y")})
        else:
            rows.append({"prompt": prompt, "answer": answer})
    path.write_text("\n".join(map(json.dumps, rows)))
    return path


def _batches(skill, seed: int, tok, steps: int):
    rng = random.Random(seed)
    for _ in range(steps):
        batch = [skill(rng) for _ in range(16)]
        enc = tok([p for p, _ in batch], return_tensors="pt", padding=True)
        yield enc, tok([a for _, a in batch], return_tensors="pt", padding=True)["input_ids"]


def train(model, skill, seed: int, steps: int, lr: float):
    """A few Adam steps of teacher-forced training on ``skill`` (every trainable parameter)."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for enc, labels in _batches(skill, seed, seq2seq_tokenizer(), steps):
        loss = model(**enc, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def train_lora(base: Path, skill, seed: int, out: Path, steps: int = 60) -> Path:
    """A peft LoRA expert with peft's default targets for the architecture (T5: q, v; BART: q_proj, v_proj)."""
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers' deprecation notice inside peft
        lora = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0))
    train(lora, skill, seed, steps, lr=3e-2).save_pretrained(out)
    return out


def random_lora(base: Path, seed: int, out: Path) -> Path:
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        lora = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.2)
    lora.save_pretrained(out)
    return out


def save_base(model, folder: Path) -> Path:
    model.save_pretrained(folder)
    seq2seq_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one torch thread (and several contend on a busy machine)."""
    from evogm_opt.threads import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def t5(tmp_path_factory) -> Path:
    """base/, three trained LoRA experts, two trained full fine-tunes, val/test task files."""
    root = tmp_path_factory.mktemp("t5")
    base = save_base(tiny_t5(), root / "base")
    for i, name in enumerate(SKILLS):
        train_lora(base, SKILLS[name], seed=i + 1, out=root / f"lora-{name}")
    for i, name in enumerate(("half", "even")):
        model = transformers.AutoModelForSeq2SeqLM.from_pretrained(base)
        train(model, SKILLS[name], seed=i + 11, steps=15, lr=3e-3).save_pretrained(root / f"dense-{name}")
    for split, seed in (("val", 100), ("test", 200)):
        (root / split).mkdir()
        for name, skill in SKILLS.items():
            write_task(root / split / f"{name}.jsonl", skill, 16, seed)
        write_task(root / split / "gen-even.jsonl", even, 8, seed + 1, kind="gen")
    return root


def t5_config(**overrides) -> dict:
    cfg = {
        "base": "base",
        "dtype": "float32",
        "device": "cpu",
        "threads": 1,
        "experts": ["lora-half", "lora-even", "lora-alt"],
        "tasks": {
            "seen": [{"name": n, "val": f"val/{n}.jsonl", "test": f"test/{n}.jsonl"} for n in ("half", "even")],
            "unseen": [
                {"name": "alt", "val": "val/alt.jsonl", "test": "test/alt.jsonl"},
                {"name": "gen-even", "val": "val/gen-even.jsonl", "test": "test/gen-even.jsonl", "max_new_tokens": 2},
            ],
        },
        "optimizer": {"name": "evogm", "budget": 6, "seed": 0},
    }
    cfg.update(overrides)
    return cfg


def quiet_run(root: Path, name: str, **overrides):
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(t5_config(output=f"runs/{name}", **overrides)))
    return run_merge(load_config(path), progress=False, say=lambda *a: None)


def task_splits(root: Path, cfg: dict) -> dict[str, Task]:
    tasks = {}
    for spec in (*cfg["tasks"]["seen"], *cfg["tasks"]["unseen"]):
        for split in ("val", "test"):
            tasks[f"{spec['name']}/{split}"] = Task.from_jsonl(
                root / spec[split], name=spec["name"], max_new_tokens=spec.get("max_new_tokens", 16)
            )
    return tasks


def mergekit_remerge(merged: Path, out: Path) -> dict[str, torch.Tensor] | None:
    """mergekit's own merge (``run_merge``, what ``mergekit-yaml`` runs) of ``merged/mergekit.yml``; ``None``
    without the mergekit extra."""
    try:
        from mergekit.config import MergeConfiguration
        from mergekit.merge import run_merge as mergekit_run
        from mergekit.options import MergeOptions
    except ImportError:
        return None
    from safetensors.torch import load_file

    recipe = yaml.safe_load((merged / RECIPE).read_text())
    options = MergeOptions(
        lora_merge_cache=str(out / "cache"), copy_tokenizer=False, write_model_card=False, quiet=True
    )
    mergekit_run(MergeConfiguration.model_validate(recipe), str(out / "model"), options=options)
    return load_file(str(out / "model" / "model.safetensors"))


# ------------------------------------------------------------------------------------------------ the tests
def test_the_experts_learned_their_tasks(t5):
    """The task vectors are real: each LoRA expert is right on its own task where the base is not."""
    tok = seq2seq_tokenizer()
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(t5 / "base")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    experts = [load_lora_expert(t5 / f"lora-{n}", shapes) for n in SKILLS]
    assert {p.split(".")[-2] for e in experts for p in e.params} == {"q", "v"}  # peft's default T5 targets
    tasks = [Task.from_jsonl(t5 / "val" / f"{n}.jsonl") for n in SKILLS]
    fitness = MergeFitness(model, tok, experts, tasks)
    own = [fitness.task_scores(np.eye(3)[i])[i] for i in range(3)]
    assert min(own) >= 0.8 and np.mean(own) > np.mean(fitness.task_scores(np.zeros(3))) + 0.2


def test_model_type_is_validated_before_anything_loads(t5):
    with pytest.raises(ConfigError, match=r"model_type must be one of auto, causal, seq2seq, got 't5'"):
        parse_config(t5_config(model_type="t5"), t5)
    with pytest.raises(ConfigError, match=r"is an encoder–decoder .*AutoModelForSeq2SeqLM; set model_type: seq2seq"):
        parse_config(t5_config(model_type="causal"), t5)
    auto, explicit = parse_config(t5_config(), t5), parse_config(t5_config(model_type="seq2seq"), t5)
    assert (auto.model_type, explicit.model_type) == ("auto", "seq2seq")
    assert auto.fingerprint() == explicit.fingerprint()  # the same model either way
    (t5 / "decoder-only").mkdir(exist_ok=True)
    (t5 / "decoder-only" / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    with pytest.raises(ConfigError, match=r"is a decoder-only model .*AutoModelForCausalLM"):
        parse_config(t5_config(base="decoder-only", model_type="seq2seq"), t5)
    hub = parse_config(t5_config(base="google/flan-t5-base", model_type="seq2seq"), t5)
    assert hub.model_type == "seq2seq"  # a hub id's config is checked when it loads:
    with pytest.raises(BaseModelTypeError, match="set model_type: seq2seq or auto"):
        load_base(str(t5 / "base"), "float32", "cpu", model_type="causal")


def test_cli_help_and_config_checks_do_not_import_transformers(t5):
    (t5 / "cli.yaml").write_text(yaml.safe_dump(t5_config(model_type="seq2seq")))
    code = (
        "import sys\nfrom evogm_opt.cli import main\ntry:\n    main(['merge', '--help'])\nexcept SystemExit:\n"
        f"    pass\nfrom llm_merge.run.config import load_config\nload_config({str(t5 / 'cli.yaml')!r})\n"
        "print('transformers' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip().endswith("False") and "usage: evogm-opt merge" in r.stdout


@pytest.mark.parametrize("arch", ["t5", "bart"])
def test_lora_merge_equals_peft_cat_merge_and_unload(t5, tmp_path, arch):
    if arch == "t5":
        base, folders = t5 / "base", [t5 / f"lora-{n}" for n in SKILLS]
    else:
        base = save_base(tiny_bart(), tmp_path / "base")
        folders = [random_lora(base, seed=i + 1, out=tmp_path / f"lora{i}") for i in range(3)]
    lam = [0.7, -0.4, 0.5]
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(base).eval()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    MergeFitness(model, None, [load_lora_expert(f, shapes) for f in folders], []).apply(lam)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers' deprecation notice inside peft
        reference = peft.PeftModel.from_pretrained(
            transformers.AutoModelForSeq2SeqLM.from_pretrained(base), folders[0], adapter_name="e0"
        )
    for i, folder in enumerate(folders[1:], 1):
        reference.load_adapter(folder, adapter_name=f"e{i}")
    reference.add_weighted_adapter(["e0", "e1", "e2"], lam, "merged", combination_type="cat")
    reference.set_adapter("merged")
    reference = reference.merge_and_unload().eval()
    ours, theirs = model.state_dict(), reference.state_dict()
    assert set(ours) == set(theirs)
    assert max((ours[k] - theirs[k]).abs().max().item() for k in ours) <= 1e-6
    ids = torch.randint(2, 40, (2, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = model(input_ids=ids, decoder_input_ids=ids[:, :4]).logits
        b = reference(input_ids=ids, decoder_input_ids=ids[:, :4]).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", ["task_arithmetic", {"name": "ties", "density": 0.3}])
def test_a_merge_run_saves_a_model_that_reloads_and_scores_as_reported(t5, tmp_path, capfd, method):
    name = "ta" if method == "task_arithmetic" else "ties"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the normal path warns about nothing
        result = quiet_run(t5, f"run-{name}", method=method, baselines=name == "ta")
    assert "warn" not in capfd.readouterr().err.lower()
    res, merged = result.results, t5 / "runs" / f"run-{name}" / "merged"
    reported = res["rows"]["evogm λ*"]
    assert res["n_evals"] == 6 and res["best"]["score"] == pytest.approx(
        (reported["half/val"] + reported["even/val"]) / 2
    )
    if name == "ta":
        assert {"base", "expert lora-alt", "uniform TA (λ = 1/N)"} <= set(res["rows"])

    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(merged)
    tok = transformers.AutoTokenizer.from_pretrained(merged)
    assert type(model).__name__ == "T5ForConditionalGeneration" and tok("ab")["input_ids"][-1] == tok.eos_token_id
    rescored = {key: score(model, tok, task, 8) for key, task in task_splits(t5, t5_config()).items()}
    assert rescored == res["rows"]["evogm λ*"]  # every split, the gen task included

    recipe = yaml.safe_load((merged / RECIPE).read_text())
    assert recipe["merge_method"] == (method if isinstance(method, str) else "ties")
    assert [m["model"] for m in recipe["models"]] == [f"{t5 / 'base'}+{t5 / f'lora-{n}'}" for n in SKILLS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notices inside mergekit and peft
        theirs = mergekit_remerge(merged, tmp_path)
    if theirs is not None:  # mergekit 0.1.5 knows gated T5: its merge of the recipe is merged/
        from safetensors.torch import load_file

        ours = load_file(str(merged / "model.safetensors"))
        assert set(ours) == set(theirs)
        assert max((ours[k] - theirs[k]).abs().max().item() for k in ours) <= 1e-6


def test_full_fine_tunes_merge_through_the_tied_shared_embedding_and_reload(t5, tmp_path):
    from safetensors.torch import load_file, save_file

    result = quiet_run(t5, "dense", experts=["dense-half", "dense-even"], baselines=False, optimizer={"budget": 4})
    lam = np.asarray(result.results["best"]["lambda"])
    merged = transformers.AutoModelForSeq2SeqLM.from_pretrained(t5 / "runs" / "dense" / "merged").state_dict()
    base = transformers.AutoModelForSeq2SeqLM.from_pretrained(t5 / "base").state_dict()
    tuned = [
        transformers.AutoModelForSeq2SeqLM.from_pretrained(t5 / f"dense-{n}").state_dict() for n in ("half", "even")
    ]
    for key in base:  # θ₀ + Σ λ_i (θ_i − θ₀) on every tensor, the aliases of the shared embedding included
        expected = base[key] + sum(w * (t[key] - base[key]) for w, t in zip(lam, tuned))
        torch.testing.assert_close(merged[key], expected, atol=1e-6, rtol=0)
    assert (tuned[0]["shared.weight"] - base["shared.weight"]).abs().max() > 0  # the embedding did move

    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(t5 / "base")
    plain = load_expert(t5 / "dense-half", model, seq2seq_tokenizer())
    assert "shared.weight" in plain.params and not {"lm_head.weight", "encoder.embed_tokens.weight"} & plain.params
    stored = load_file(str(t5 / "dense-half" / "model.safetensors"))
    every_alias = tmp_path / "every-alias"  # a checkpoint that stores each alias of the tied embedding
    every_alias.mkdir()
    (every_alias / "config.json").write_text((t5 / "dense-half" / "config.json").read_text())
    for alias in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"):
        stored[alias] = stored["shared.weight"].clone()
    old_t5 = "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"  # transformers drops it on load
    stored[old_t5] = torch.zeros(8, 4)
    save_file(stored, str(every_alias / "model.safetensors"))
    again = load_expert(every_alias, model, seq2seq_tokenizer())
    assert again.params == plain.params and all(torch.equal(again.deltas[k], plain.deltas[k]) for k in plain.params)
    stored["lm_head.weight"] = stored["lm_head.weight"] + 0.1  # fine-tuned with the head untied
    save_file(stored, str(every_alias / "model.safetensors"))
    with pytest.raises(ExpertError, match=r"and lm_head\.weight differ .* ties them \(one tensor, shared\.weight\)"):
        load_expert(every_alias, model, seq2seq_tokenizer())


@pytest.mark.parametrize("batch_size", [3, 64])
def test_batched_lambda_path_equals_the_in_place_rebuild(t5, batch_size):
    tok = seq2seq_tokenizer()
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(t5 / "base").eval()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    experts = [load_lora_expert(t5 / f"lora-{n}", shapes) for n in SKILLS]
    tasks = [
        Task.from_jsonl(t5 / "val" / "half.jsonl"),
        Task.from_jsonl(t5 / "val" / "gen-even.jsonl", max_new_tokens=2),
    ]
    fitness = MergeFitness(model, tok, experts, tasks, batch_size=batch_size)
    lams = np.random.default_rng(1).uniform(-1.5, 1.5, (5, 3))
    lams[0] = [1.0, 0.0, 0.0]
    batched = fitness.task_scores_batched(lams)
    assert batched == [fitness.task_scores(lam) for lam in lams] and len({s[0] for s in batched}) > 1

    ids = torch.randint(2, 40, (2, 5), generator=torch.Generator().manual_seed(2))
    expected = []
    for lam in lams[:3]:
        fitness.apply(lam)
        with torch.no_grad():
            expected.append(model(input_ids=ids, decoder_input_ids=ids[:, :3]).logits)
    fitness.restore()
    with fitness.batched_lora() as lora, torch.no_grad():
        lora.set_rows(torch.from_numpy(lams[:3]).repeat_interleave(2, dim=0))
        got = model(input_ids=ids.repeat(3, 1), decoder_input_ids=ids[:, :3].repeat(3, 1)).logits
    torch.testing.assert_close(got, torch.cat(expected), atol=2e-5, rtol=1e-4)


def test_bart_smoke(tmp_path):
    """A tiny BART: LoRA experts (peft's q_proj/v_proj), both task kinds, batched = rebuild, a run, the reload."""
    base = save_base(tiny_bart(), tmp_path / "base")
    for i in range(2):
        random_lora(base, seed=i + 1, out=tmp_path / f"lora{i}")
    for split in ("val", "test"):
        (tmp_path / split).mkdir()
        write_task(tmp_path / split / "half.jsonl", half, 8, 1)
        write_task(tmp_path / split / "gen.jsonl", half, 4, 2, kind="gen")
    tasks = {
        "seen": [{"name": "half", "val": "val/half.jsonl", "test": "test/half.jsonl"}],
        "unseen": [{"name": "gen", "val": "val/gen.jsonl", "test": "test/gen.jsonl", "max_new_tokens": 2}],
    }
    config = t5_config(experts=["lora0", "lora1"], tasks=tasks, baselines=False, optimizer={"budget": 4})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({**config, "output": "run"}))
    result = run_merge(load_config(tmp_path / "c.yaml"), progress=False, say=lambda *a: None)
    merged = tmp_path / "run" / "merged"
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(merged)
    tok = transformers.AutoTokenizer.from_pretrained(merged)
    assert type(model).__name__ == "BartForConditionalGeneration"
    assert {k: score(model, tok, t, 4) for k, t in task_splits(tmp_path, config).items()} == result.results["rows"][
        "evogm λ*"
    ]
    recipe = (merged / RECIPE).read_text()
    assert recipe.startswith("# No mergekit recipe") and "LoRA not merged" in recipe
    assert "no architecture definition for BartForConditionalGeneration" in recipe

    fresh = transformers.AutoModelForSeq2SeqLM.from_pretrained(base)
    shapes = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    experts = [load_lora_expert(tmp_path / f"lora{i}", shapes) for i in range(2)]
    both = [Task.from_jsonl(tmp_path / "val" / "half.jsonl"), Task.from_jsonl(tmp_path / "val" / "gen.jsonl", 2)]
    fitness = MergeFitness(fresh, seq2seq_tokenizer(), experts, both, batch_size=5)
    lams = np.random.default_rng(0).uniform(-2, 2, (4, 2))
    assert fitness.task_scores_batched(lams) == [fitness.task_scores(lam) for lam in lams]

    # full fine-tunes of BART: mergekit infers the architecture, and its merge of the written recipe is ours
    tuned = train(transformers.AutoModelForSeq2SeqLM.from_pretrained(base), half, seed=3, steps=5, lr=3e-3)
    tuned.save_pretrained(tmp_path / "dense")
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(base)
    dense = [load_expert(tmp_path / "dense", model, seq2seq_tokenizer())]
    MergeFitness(model, None, dense, []).apply([0.8])
    cfg = parse_config({**config, "experts": ["dense"]}, tmp_path)
    best = {"lambda": [0.8], "basis_version": None, "coordinates": None}
    (tmp_path / "recipe").mkdir()
    (tmp_path / "recipe" / RECIPE).write_text(
        recipe_text(cfg, dense, best, make_layout("per_expert", ["w"], 1), model.config)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mergekit's own deprecation notices
        theirs = mergekit_remerge(tmp_path / "recipe", tmp_path)
    if theirs is not None:
        ours = model.state_dict()
        assert set(theirs) <= set(ours) and {k for k in ours if k not in theirs} <= {
            "lm_head.weight",
            "model.encoder.embed_tokens.weight",
            "model.decoder.embed_tokens.weight",
        }  # the tied aliases, stored once
        assert max((ours[k] - theirs[k]).abs().max().item() for k in theirs) <= 1e-6


def test_layouts_group_encoder_and_decoder_stacks_and_t5_module_names():
    model = tiny_t5()
    params = [n for n, _ in model.named_parameters() if n.endswith(".weight")]
    counts = layer_counts(model.config)
    assert counts == {"encoder": 2, "decoder": 2}
    layout = make_layout("per_layer_group", params, 2, groups=2, n_layers=counts)
    assert layout.group_names == (
        "embeddings",
        "encoder layers 0",
        "encoder layers 1",
        "decoder layers 0",
        "decoder layers 1",
        "head",
    )
    group = {p: layout.group_names[layout.group_of(p)] for p in params}
    assert group["encoder.block.1.layer.0.SelfAttention.q.weight"] == "encoder layers 1"  # block 1, not sub-layer 0
    assert group["decoder.block.0.layer.2.DenseReluDense.wo.weight"] == "decoder layers 0"
    assert group["shared.weight"] == "embeddings" and group["decoder.final_layer_norm.weight"] == "head"
    types = make_layout("per_module_type", params, 2)
    kind = {p: types.group_names[types.group_of(p)] for p in params}
    assert kind["decoder.block.1.layer.1.EncDecAttention.k.weight"] == "attention"
    assert kind["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"] == "mlp"
    bart = [n for n, _ in tiny_bart().named_parameters()]
    bart_types = make_layout("per_module_type", bart, 2)
    assert (
        bart_types.group_names[bart_types.group_of("model.decoder.layers.0.encoder_attn.v_proj.weight")] == "attention"
    )
    assert bart_types.group_names[bart_types.group_of("model.encoder.layers.1.fc2.weight")] == "mlp"
    assert layer_counts(tiny_bart().config) == {"encoder": 2, "decoder": 2}


def loaded_config(model):
    """The config as a base loaded from its folder has it (``save_pretrained`` records the architecture)."""
    model.config.architectures = [type(model).__name__]
    return model.config


def test_the_recipe_says_which_encoder_decoders_mergekit_cannot_merge(t5):
    cfg = parse_config(t5_config(), t5)
    best = {"lambda": [0.5, 0.2, 0.1], "basis_version": None, "coordinates": None}
    layout = make_layout("per_expert", ["w"], 3)
    shapes = {k: tuple(v.shape) for k, v in tiny_t5().state_dict().items()}
    lora = [load_lora_expert(t5 / f"lora-{n}", shapes) for n in SKILLS]
    assert why_not_mergekit(cfg, best, layout, loaded_config(tiny_t5()), lora) is None  # gated T5: mergekit's t5.json
    original = why_not_mergekit(cfg, best, layout, loaded_config(tiny_t5(gated=False)), lora)
    assert "DenseReluDense.wi_0 / wi_1" in original and "feed_forward_proj: relu" in original
    bart = why_not_mergekit(cfg, best, layout, loaded_config(tiny_bart()), lora)
    assert "no architecture definition for BartForConditionalGeneration" in bart and "merge_and_unload" in bart
    dense_bart = recipe_text(cfg, [], best, layout, loaded_config(tiny_bart()))  # full fine-tunes: inferred
    assert "merge_method: task_arithmetic" in dense_bart and "infers one from the tensor names" in dense_bart


def test_lm_eval_scores_a_seq2seq_model_like_the_jsonl_scorer(t5, tmp_path):
    pytest.importorskip("lm_eval", reason="the lm-eval backend needs the `lm-eval` extra")
    import os

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from llm_merge.tasks.lm_eval_tasks import LmEvalTask

    from tests.test_llm_merge_lm_eval import lm_eval_task_folder

    folder = lm_eval_task_folder(tmp_path)  # a local lm-eval multiple-choice task (and the same rows as JSONL)
    data = folder / "val.jsonl"
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(t5 / "base")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    experts = [load_lora_expert(t5 / f"lora-{n}", shapes) for n in SKILLS]
    lm_task = LmEvalTask("tiny", "tiny_val", include_path=str(folder))
    lm_task.check()
    via_lm_eval = MergeFitness(model, seq2seq_tokenizer(), experts, [lm_task], batch_size=4)
    lams = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, -1.0], [0.8, 0.4, 0.2]])
    a = via_lm_eval.evaluate_batch(lams)
    via_lm_eval.restore()
    b = MergeFitness(model, seq2seq_tokenizer(), experts, [Task.from_jsonl(data)], batch_size=4).evaluate_batch(lams)
    assert a == b and len(set(a)) > 1  # lm-eval's seq2seq log-likelihoods pick the same options as ours


def worked_config() -> dict:
    """The YAML block after ``<!-- worked-config: flan-t5-glue -->`` in docs/llm-merge.md."""
    text = DOCS.read_text()
    match = re.search(r"<!-- worked-config: flan-t5-glue -->\s*```yaml\n(.*?)```", text, re.S)
    assert match, "docs/llm-merge.md lost its worked FLAN-T5 config"
    return yaml.safe_load(match.group(1))


def test_the_docs_worked_flan_t5_glue_config_validates(tmp_path):
    data = worked_config()
    for expert in data["experts"]:
        (tmp_path / (expert["path"] if isinstance(expert, dict) else expert)).mkdir(parents=True)
    cfg = parse_config(data, tmp_path)  # the schema validator; no model is loaded
    assert cfg.base == "google/flan-t5-base" and cfg.model_type == "seq2seq" and len(cfg.experts) == 8
    names = {e.name for e in cfg.experts}
    assert names == {"cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst2", "stsb"}
    assert all(t.lm_eval is not None for t in cfg.seen) and {t.name for t in cfg.seen} == names - {"stsb"}
    lm_eval = pytest.importorskip("lm_eval", reason="the task names are checked against lm-eval's own YAMLs")
    declared = {}  # lm-eval's GLUE task YAMLs: task name -> metrics (read as text: no TaskManager, no download)
    for path in (Path(lm_eval.__file__).parent / "tasks" / "glue").rglob("*.yaml"):
        found = re.search(r"^task: (\S+)", path.read_text(), re.M)
        if found:
            declared[found.group(1)] = set(re.findall(r"- metric: (\S+)", path.read_text()))
    for task in cfg.seen:
        assert task.val in declared, f"lm-eval has no GLUE task {task.val!r}"
        assert (task.lm_eval.metric or "acc,none").split(",")[0] in declared[task.val], task
