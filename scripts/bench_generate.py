"""Generation speed: tokens/s of our transformers backend against a plain `model.generate` loop.

Both run the same model object (the embedded SmolLM2 loaded by HFPolicy) on the same prompt at
batch 1 and batch 8, sampling at temperature 1.0 with no top-k/top-p, up to `--max-new-tokens`:

  ours      HFPolicy.sample([prompt], n=batch): chat template, per-row seeded Gumbel-max draws,
            the sampling log-prob of every token kept, decoding to text;
  generate  model.generate(do_sample=True, temperature=1.0, top_k=0, top_p=1.0) on the same
            encoded prompt repeated `batch` times, then decoding to text.

Tokens counted are generated tokens up to and including each row's first EOS, in both. The
two are alternated (A B A B ...) per batch size so that load from other processes hits both
alike; figures are medians over rounds. Target: ours at least 0.9x generate's tokens/s.

`--backend vllm` (in the vLLM venv, scripts/setup_vllm.sh) compares instead the vllm backend
(VLLMPolicy: one engine in a Ray actor, vLLM's CPU build on a CPU) with the transformers backend
(HFPolicy, batch_size = the rows, so that it runs each call as one batch), same prompt, rows and
settings, alternated, and times the engine's start and LoRA hot-loads (`load_adapter` of a new
version, then the first call that uses it, against a call on the version already loaded).

    python scripts/bench_generate.py --rounds 3 --max-new-tokens 128
    OMP_WAIT_POLICY=PASSIVE python scripts/bench_generate.py   # on a busy machine, see docs
    .venv-vllm/bin/python scripts/bench_generate.py --backend vllm --batches 8 32
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_setup import initial_prompts

from discover.backends.hf import HFPolicy
from discover.doctor import cpu_model
from discover.registry import load_environment

TARGET = 0.9


def ours(policy: HFPolicy, prompt: str, batch: int, max_new: int, seed: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    out = policy.sample([prompt], batch, max_new_tokens=max_new, temperature=1.0, seed=seed)
    seconds = time.perf_counter() - t0
    return sum(len(s.completion_ids) for s in out[0]), seconds


@torch.no_grad()
def plain(policy: HFPolicy, prompt: str, batch: int, max_new: int, seed: int) -> tuple[int, float]:
    model, tok, eos = policy.model, policy.tokenizer, sorted(policy.eos_ids)
    t0 = time.perf_counter()
    ids = torch.tensor([policy.encode(prompt)] * batch)
    torch.manual_seed(seed)
    gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                         temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=max_new,
                         eos_token_id=eos, pad_token_id=policy.pad_id)
    new = gen[:, ids.shape[1]:].tolist()
    tokens = 0
    for row in new:
        end = next((j + 1 for j, t in enumerate(row) if t in policy.eos_ids), len(row))
        tok.decode(row[:end], skip_special_tokens=True)  # as ours returns text
        tokens += end
    return tokens, time.perf_counter() - t0


def compare_vllm(args, prompt: str) -> None:
    """The vllm backend against the transformers backend, alternated (see the docstring)."""
    import ray

    from discover.backends.vllm import VLLMPolicy
    from discover.model.store import resolve_model
    from discover.scoring import start_ray

    policies = {"hf": HFPolicy(threads=args.threads or None, batch_size=max(args.batches))}
    start_ray()
    t0 = time.perf_counter()
    vllm = VLLMPolicy(str(resolve_model("smollm2")), gpus=0.0, enable_lora=True, lora_rank=16,
                      max_model_len=args.max_model_len)
    start = time.perf_counter() - t0
    policies["vllm"] = vllm
    info = vllm.engines[0]
    print(f"{cpu_model()}; vLLM engine: {info['device']}, {info['dtype']}, started in "
          f"{start:.1f} s; transformers: {torch.get_num_threads()} torch threads; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)

    def call(name, batch, seed):
        t = time.perf_counter()
        out = policies[name].sample([prompt], batch, max_new_tokens=args.max_new_tokens,
                                    temperature=1.0, seed=seed)
        return sum(len(x.completion_ids) for x in out[0]), time.perf_counter() - t

    for name in policies:
        call(name, 2, 0)  # warm-up
    summary = []
    for batch in args.batches:
        rates: dict[str, list[float]] = {"hf": [], "vllm": []}
        for r in range(args.rounds):
            for name in (["hf", "vllm"] if r % 2 == 0 else ["vllm", "hf"]):
                tokens, seconds = call(name, batch, 1000 + r)
                rates[name].append(tokens / seconds)
                print(f"  rows {batch} round {r}: {name:<5} {tokens:5d} tokens {seconds:6.1f} s  "
                      f"{tokens / seconds:6.1f} tok/s", flush=True)
        summary.append((batch, statistics.median(rates["hf"]), statistics.median(rates["vllm"])))

    # LoRA hot-load: a new version each time (a new LoRARequest; vLLM loads it on first use).
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2"))
    peft = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, init_lora_weights=False,
                                           target_modules=["q_proj", "k_proj", "v_proj",
                                                           "o_proj"], task_type="CAUSAL_LM"))
    loads, firsts, warm = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for v in range(1, args.rounds + 2):
            path = Path(tmp) / f"v{v:05d}"
            peft.save_pretrained(path)
            t = time.perf_counter()
            vllm.load_adapter(path, v)
            loads.append(time.perf_counter() - t)
            firsts.append(call("vllm", 1, v)[1])  # loads the adapter into the engine
            warm.append(call("vllm", 1, v)[1])
        # Decoding through an adapter against the base model, alternated, at the first rows.
        batch, lora_rates = args.batches[0], {"base": [], "adapter": []}
        for r in range(args.rounds):
            for name in (["adapter", "base"] if r % 2 == 0 else ["base", "adapter"]):
                vllm.load_adapter(path, len(loads) if name == "adapter" else 0)  # 0: base
                tokens, seconds = call("vllm", batch, 2000 + r)
                lora_rates[name].append(tokens / seconds)
    print(f"\n{args.rounds} rounds, max_new_tokens {args.max_new_tokens}, medians:")
    for batch, h, v in summary:
        print(f"  rows {batch}: transformers {h:6.1f} tok/s, vllm {v:6.1f} tok/s, "
              f"vllm/transformers {v / h:.2f}x")
    extra = statistics.median(f - w for f, w in zip(firsts, warm, strict=True))
    print(f"  LoRA hot-load (rank 16, q/k/v/o): load_adapter {statistics.median(loads):.3f} s, "
          f"first call on the new version {extra:+.2f} s against one on a loaded version "
          f"({len(loads)} versions)")
    base, lora = (statistics.median(lora_rates[k]) for k in ("base", "adapter"))
    print(f"  vllm at {batch} rows: base model {base:.1f} tok/s, through the adapter "
          f"{lora:.1f} tok/s ({lora / base:.2f}x)")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    vllm.shutdown()
    ray.shutdown()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--env", default="erdos", help="whose first prompt to use")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (policy.threads); 0: torch's default, all cores")
    p.add_argument("--backend", choices=["hf", "vllm"], default="hf",
                   help="hf: ours against model.generate; vllm: the vllm backend against ours")
    p.add_argument("--max-model-len", type=int, default=0, help="vllm: 0 for the model's own")
    args = p.parse_args()

    env = load_environment(args.env)
    prompt = initial_prompts(env, 1)[0]
    if args.backend == "vllm":
        compare_vllm(args, prompt)
        return
    policy = HFPolicy(threads=args.threads or None)
    print(f"model: embedded SmolLM2-135M, {torch.get_num_threads()} torch threads; "
          f"{args.env} prompt of {len(policy.encode(prompt))} tokens; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    ours(policy, prompt, 1, 8, 0)  # warm-up
    plain(policy, prompt, 1, 8, 0)
    summary = []
    for batch in args.batches:
        rates: dict[str, list[float]] = {"ours": [], "generate": []}
        for r in range(args.rounds):
            order = [("ours", ours), ("generate", plain)]
            if r % 2:
                order.reverse()
            for name, fn in order:
                tokens, seconds = fn(policy, prompt, batch, args.max_new_tokens, 1000 + r)
                rates[name].append(tokens / seconds)
                print(f"  batch {batch} round {r}: {name:<8} {tokens:5d} tokens "
                      f"{seconds:6.1f} s  {tokens / seconds:6.1f} tok/s", flush=True)
        o, g = statistics.median(rates["ours"]), statistics.median(rates["generate"])
        summary.append((batch, o, g))
    print(f"\n{args.rounds} rounds, max_new_tokens {args.max_new_tokens}, medians:")
    for batch, o, g in summary:
        print(f"  batch {batch}: ours {o:6.1f} tok/s, generate {g:6.1f} tok/s, ratio {o / g:.2f}x;"
              f" target >= {TARGET}x: {'met' if o / g >= TARGET else 'MISSED'}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":  # (also the guard vLLM's spawned engine needs)
    main()
