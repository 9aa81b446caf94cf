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

    python scripts/bench_generate.py --rounds 3 --max-new-tokens 128
    OMP_WAIT_POLICY=PASSIVE python scripts/bench_generate.py   # on a busy machine, see docs
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from discover.environment import Parent, load_environment
from discover.policy_hf import HFPolicy

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--env", default="erdos", help="whose first prompt to use")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (policy.threads); 0: torch's default, all cores")
    args = p.parse_args()

    policy = HFPolicy(threads=args.threads or None)
    env = load_environment(args.env)
    art = env.initial_artifacts(1, 0)[0]
    ev = env.verify(art)
    prompt = env.render_prompt(Parent(code=None, artifact=ev.artifact, score=ev.score,
                                      parent_score=None))
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


if __name__ == "__main__":
    main()
