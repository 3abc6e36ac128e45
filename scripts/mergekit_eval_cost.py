"""Seconds per candidate merge: ours in place, mergekit in process (the mergekit-computed methods), and mergekit's
``run_merge`` from disk (what running ``mergekit-yaml`` per candidate would cost) — docs/llm-merge.md quotes it.

A random Llama of the given shape is saved with one full fine-tune (every tensor moved) and two peft LoRA adapters
(rank 8 on every linear layer); each way merges the same candidates, fp32 on the CPU. Only the merge is timed (no
forward, no scoring). Run::

    python scripts/mergekit_eval_cost.py --shape tiny     # the tests' tiny model, seconds
    python scripts/mergekit_eval_cost.py --shape small    # hidden 256, 4 layers, vocab 4096: about a minute

and it prints a markdown table (median of ``--repeats`` candidates; ``prepare`` is the one-off cost per fitness).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SHAPES = {
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=64),
    "small": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4, vocab_size=4096),
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# (label, method name, options): the same merge both ways where ours has it, then mergekit-only methods
METHODS = [
    ("TA, ours", "task_arithmetic", {}),
    ("TA, mergekit", "task_arithmetic", {"backend": "mergekit"}),
    ("TIES, ours", "ties", {"density": 0.3}),
    ("TIES, mergekit", "ties", {"backend": "mergekit", "density": 0.3}),
    ("DELLA, mergekit", "della", {"density": 0.5, "epsilon": 0.1}),
    ("breadcrumbs, mergekit", "breadcrumbs", {"density": 0.8, "gamma": 0.05}),
    ("linear, mergekit (every tensor)", "linear", {}),
]


def workspace(root: Path, shape: str) -> None:
    import peft
    import transformers

    config = transformers.LlamaConfig(
        **SHAPES[shape], num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False
    )
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).float().save_pretrained(root / "base")
    tuned = transformers.AutoModelForCausalLM.from_pretrained(root / "base")
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(0.01 * torch.randn_like(p))
    tuned.save_pretrained(root / "tuned")
    for i in range(2):
        model = transformers.AutoModelForCausalLM.from_pretrained(root / "base")
        lora = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS))
        with torch.no_grad():
            for n, p in lora.named_parameters():
                if "lora_" in n:
                    p.normal_(0, 0.05)
        lora.save_pretrained(root / f"lora{i}")


def seconds(fn, repeats: int) -> float:
    times = []
    for k in range(repeats):
        start = time.perf_counter()
        fn(k)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(root: Path, repeats: int) -> list[tuple[str, float, float]]:
    import transformers
    from llm_merge.merges import get_method
    from llm_merge.model.experts import dense_expert, load_lora_expert
    from llm_merge.model.fitness import MergeFitness

    model = transformers.AutoModelForCausalLM.from_pretrained(root / "base").float()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    pristine = {k: v.clone() for k, v in model.state_dict().items()}
    tuned = transformers.AutoModelForCausalLM.from_pretrained(root / "tuned").float().state_dict()
    experts = [dense_expert("tuned", pristine, tuned)]
    experts += [load_lora_expert(root / f"lora{i}", shapes, on_other_base="ignore") for i in range(2)]
    lams = np.random.default_rng(0).uniform(-1, 1, size=(repeats, 3))
    rows = []
    for label, name, options in METHODS:
        start = time.perf_counter()
        fitness = MergeFitness(model, None, experts, [], method=get_method(name, **options))
        prepare = time.perf_counter() - start
        rows.append((label, prepare, seconds(lambda k, f=fitness: f.apply(np.abs(lams[k]) + 0.1), repeats)))
        fitness.restore()
        del fitness
    return rows


def run_merge_seconds(root: Path, repeats: int) -> float:
    """mergekit's ``run_merge`` per candidate (TIES), LoRA merge cache warm: loads, merges, writes the model."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    cache = str(root / "cache")
    options = MergeOptions(lora_merge_cache=cache, copy_tokenizer=False, write_model_card=False, quiet=True)
    sources = [str(root / "tuned"), *(f"{root / 'base'}+{root / f'lora{i}'}" for i in range(2))]

    def once(k: int) -> None:
        w = np.random.default_rng(k + 1).uniform(0.1, 1.0, size=3)
        recipe = {
            "merge_method": "ties",
            "base_model": str(root / "base"),
            "dtype": "float32",
            "models": [{"model": s, "parameters": {"weight": float(x), "density": 0.3}} for s, x in zip(sources, w)],
        }
        run_merge(MergeConfiguration.model_validate(recipe), str(root / f"out{k}"), options=options)

    once(-1)  # fills the LoRA merge cache (mergekit merges each adapter into the base once)
    return seconds(once, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        workspace(root, args.shape)
        rows = measure(root, args.repeats)
        disk = run_merge_seconds(root, max(3, args.repeats // 3))
    n = sum(p.numel() for p in transformers.AutoModelForCausalLM.from_config(
        transformers.LlamaConfig(**SHAPES[args.shape], num_key_value_heads=2, tie_word_embeddings=False)
    ).parameters())  # fmt: skip
    print(
        f"shape {args.shape} ({n / 1e6:.2f} M parameters), 3 experts (1 full fine-tune, 2 LoRA r=8), fp32, CPU "
        f"({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads)\n"
    )
    print("| merge | prepare (once), s | per candidate, ms |\n|---|---|---|")
    for label, prepare, per in rows:
        print(f"| {label} | {prepare:.3f} | {1000 * per:.1f} |")
    print(f"| TIES, mergekit run_merge from disk (mergekit-yaml per candidate) | — | {1000 * disk:.1f} |")


if __name__ == "__main__":
    main()
