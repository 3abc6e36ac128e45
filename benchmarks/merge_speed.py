"""Seconds per candidate and tokens/s of three ways to evaluate merge candidates (``evogm-opt bench merge-speed``).

On a random-init model of a real shape with random rank-r LoRA experts, for the same prompts:

- ``reference``: the EvoGM reference code's way — dense task vectors on the CPU, θ = θ₀ + Σ λ_i τ_i summed there,
  then ``load_state_dict`` into the model on the device, then the forward;
- ``rebuild``: ``MergeFitness.apply`` — W ← W₀ + B_cat·diag(λ⊗s)·A_cat in place on the device, then the forward;
- ``batched``: ``BatchedLora`` — all P candidates' rows in shared forwards, weights untouched;
- ``base``: the plain model's forward on the same rows (the limit: no merge work at all).

Each way scores M prompts of L tokens per candidate with one teacher-forced forward (what multiple-choice
scoring does), in forwards of ``--batch-size`` rows. Run::

    evogm-opt bench merge-speed --shape small --device cpu            # anywhere, minutes
    evogm-opt bench merge-speed --shape qwen2.5-1.5b --device cuda   # the GPU figures

and it prints a markdown table (and ``--json`` writes the numbers).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from evogm_opt.atomic import atomic_write

SHAPES = {
    # Qwen2.5-1.5B's config (hidden 1536, MLP 8960, 28 layers, 12 heads / 2 KV heads, vocab 151936, tied)
    "qwen2.5-1.5b": dict(
        hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
        num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True,
    ),
    # the same architecture scaled down for a CPU run
    "small": dict(
        hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=4096, tie_word_embeddings=True,
    ),
}  # fmt: skip
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def build(shape: str, n_experts: int, rank: int, device: str, dtype: torch.dtype, seed: int = 0):
    import transformers
    from llm_merge.model.experts import LoraExpert, LoraFactors

    torch.manual_seed(seed)
    config = transformers.Qwen2Config(**SHAPES[shape], max_position_embeddings=4096)
    model = transformers.AutoModelForCausalLM.from_config(config).to(dtype).to(device).eval()
    experts = []
    for i in range(n_experts):
        factors = {}
        for name, p in model.named_parameters():
            if name.endswith(".weight") and any(t in name for t in TARGETS):
                out_f, in_f = p.shape
                a = torch.randn(rank, in_f) / in_f**0.5
                b = torch.randn(out_f, rank) * 0.01
                factors[name] = LoraFactors(a, b, scaling=2.0)
        experts.append(LoraExpert(f"e{i}", factors))
    return model, experts


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def _forward_all(model, ids: torch.Tensor, batch_size: int, before=None) -> None:
    for lo in range(0, len(ids), batch_size):
        if before is not None:
            before(lo, min(lo + batch_size, len(ids)))
        model(input_ids=ids[lo : lo + batch_size]).logits[:, -1].float().sum().item()


def measure(args: argparse.Namespace) -> dict:
    from llm_merge.model.fitness import MergeFitness

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[args.dtype]
    model, experts = build(args.shape, args.experts, args.rank, args.device, dtype)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (args.prompts, args.length), generator=torch.Generator().manual_seed(1))
    ids = ids.to(args.device)
    lams = np.random.default_rng(0).uniform(-1, 1, (args.population, args.experts)).astype(np.float32)
    fitness = MergeFitness(model, None, experts, [], "task_arithmetic", batch_size=args.batch_size)
    tokens_per_candidate = args.prompts * args.length

    def row(seconds: float, candidates: int) -> dict[str, float]:
        return {"s_per_candidate": seconds / candidates, "tokens_per_s": tokens_per_candidate * candidates / seconds}

    rows = {"base model (limit)": row(_time_base(model, ids, args), args.repeats)}
    n_ref = min(args.reference_candidates, args.population)
    seconds = _time_reference(model, fitness, experts, ids, lams[:n_ref], dtype, args)
    rows["(a) reference: CPU dense merge + load_state_dict"] = row(seconds, n_ref)
    seconds, switch = _time_rebuild(model, fitness, ids, lams, args)
    rows["(b) in-place rebuild"] = {**row(seconds, len(lams)), "switch_s": switch}
    rows[f"(c) batched-λ, P = {len(lams)}"] = row(_time_batched(model, fitness, ids, lams, args), len(lams))
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    settings = {key: value for key, value in vars(args).items() if key != "func"}  # the parser's dispatch
    return {"device": device_name, "torch_threads": torch.get_num_threads(), "settings": settings, "rows": rows}


def _time_base(model, ids: torch.Tensor, args: argparse.Namespace) -> float:
    """The base model alone: the limit every merge path approaches."""
    _forward_all(model, ids, args.batch_size)  # warm-up (kernels, allocator)
    _sync(args.device)
    t = time.perf_counter()
    for _ in range(args.repeats):
        _forward_all(model, ids, args.batch_size)
    _sync(args.device)
    return time.perf_counter() - t


def _time_reference(model, fitness, experts, ids, lams: np.ndarray, dtype, args: argparse.Namespace) -> float:
    """(a) the reference way: dense bf16 task vectors on the CPU, merged there, copied to the device."""
    names = list(fitness._params)
    pristine_cpu = {n: fitness._pristine[n].to("cpu", torch.bfloat16) for n in names}
    vectors = [{n: e.delta(n).to(torch.bfloat16) for n in names} for e in experts]
    t = time.perf_counter()
    for lam in lams:
        merged = {}
        for n in names:
            acc = pristine_cpu[n].float()
            for w, vec in zip(lam.tolist(), vectors):
                acc.add_(vec[n].float(), alpha=w)
            merged[n] = acc.to(dtype)
        model.load_state_dict(merged, strict=False)
        _forward_all(model, ids, args.batch_size)
    _sync(args.device)
    seconds = time.perf_counter() - t
    fitness.restore()
    return seconds


def _time_rebuild(model, fitness, ids, lams: np.ndarray, args: argparse.Namespace) -> tuple[float, float]:
    """(b) the in-place rebuild on the device: (seconds for all candidates, the candidate switch alone)."""
    fitness.apply(lams[0])
    _sync(args.device)
    t = time.perf_counter()
    for lam in lams:
        fitness.apply(lam)
    _sync(args.device)
    switch = (time.perf_counter() - t) / len(lams)
    t = time.perf_counter()
    for lam in lams:
        fitness.apply(lam)
        _forward_all(model, ids, args.batch_size)
    _sync(args.device)
    seconds = time.perf_counter() - t
    fitness.restore()
    return seconds, switch


def _time_batched(model, fitness, ids, lams: np.ndarray, args: argparse.Namespace) -> float:
    """(c) batched-λ: P × M rows in shared forwards."""
    stacked = ids.repeat(len(lams), 1)
    lam_rows = torch.from_numpy(lams).repeat_interleave(args.prompts, dim=0)
    with fitness.batched_lora() as lora:

        def set_rows(lo: int, hi: int) -> None:
            lora.set_rows(lam_rows[lo:hi])

        _forward_all(model, stacked[: args.batch_size], args.batch_size, set_rows)  # warm-up
        _sync(args.device)
        t = time.perf_counter()
        _forward_all(model, stacked, args.batch_size, set_rows)
        _sync(args.device)
    return time.perf_counter() - t


def table(result: dict) -> str:
    rows = result["rows"]
    base = rows["base model (limit)"]["tokens_per_s"]
    ref = rows["(a) reference: CPU dense merge + load_state_dict"]["s_per_candidate"]
    lines = [
        "| way | s / candidate | tokens/s | vs base throughput | speed-up vs (a) |",
        "|---|---|---|---|---|",
    ]
    for label, r in rows.items():
        lines.append(
            f"| {label} | {r['s_per_candidate']:.4f} | {r['tokens_per_s']:.0f} | {r['tokens_per_s'] / base:.0%} | "
            f"{ref / r['s_per_candidate']:.1f}× |"
        )
    switch = rows["(b) in-place rebuild"]["switch_s"]
    lines.append(f"\ncandidate switch (in-place rebuild alone): {switch * 1e3:.1f} ms")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evogm-opt bench merge-speed", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["bf16", "fp32", "fp16"], default="bf16")
    parser.add_argument("--experts", type=int, default=10)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--prompts", type=int, default=8, help="M prompts per candidate")
    parser.add_argument("--length", type=int, default=64, help="tokens per prompt")
    parser.add_argument("--batch-size", type=int, default=64, help="rows per forward")
    parser.add_argument("--repeats", type=int, default=5, help="base-model passes timed")
    parser.add_argument("--reference-candidates", type=int, default=5, help="candidates timed the slow way")
    parser.add_argument("--json", default=None, help="write the measurements here")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Measure, print the table, and write ``--json`` (atomically) if asked."""
    result = measure(args)
    print(f"device: {result['device']}, torch threads {result['torch_threads']}, settings {result['settings']}")
    print(table(result))
    if args.json:
        atomic_write(args.json, json.dumps(result, indent=2))
    return 0
