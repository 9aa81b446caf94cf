"""One decode step of the embedded model, by how the step is done: what each speed-up pays.

All variants decode `--rows` rows of the Erdős prompt (B prompts x rows/B each), after a prefill,
for `--steps` timed steps (after `--context` untimed ones, so the cache holds prompt + context
tokens), on one model object. Variants:

  today       the sampler before issue 15: a left-padded batch with a row of cache per
              completion (transformers' DynamicCache, concatenated at every step) and the
              attention mask re-made at every step; MKL linears
  static      the same with transformers' StaticCache (preallocated; attention over its whole
              length, a full-width mask allocated once and sliced)
  shared      discover.model.shared_prefix: the prompt's keys/values once per prompt, each row's own
              keys in a preallocated buffer, no padding, no mask; MKL linears
  onednn      shared, with the linears through oneDNN (discover.model.cpu_linear; the default)
  compiled    shared, with the model's forward under torch.compile (dynamic shapes; MKL
              linears as inductor lowers them: it cannot lower the oneDNN-routed linears of
              `onednn` with dynamic shapes, an InductorError)

Rounds alternate the variants (rotated each round); figures are medians of per-step times. The
prefill of the rows (one per row for today/static, one per prompt otherwise) is timed as well.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench_decode.py --rows 32 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from bench_setup import initial_prompts
from transformers import DynamicCache, StaticCache

from discover.backends.hf import HFPolicy
from discover.doctor import cpu_model
from discover.model import shared_prefix
from discover.registry import load_environment


class Linears:
    """Switch one model's nn.Linear layers between MKL (F.linear) and oneDNN."""

    def __init__(self, model) -> None:
        self.mods = [m for m in model.modules() if getattr(m, "_discover_onednn", False)]
        self.fast = {id(m): m.forward for m in self.mods}

    def set(self, onednn: bool) -> None:
        for m in self.mods:
            if onednn:
                m.forward = self.fast[id(m)]
            elif "forward" in m.__dict__:
                del m.forward  # the class's own: F.linear


@torch.no_grad()
def padded(model, prompts: list[list[int]], rows: int, context: int, steps: int,
           static: bool) -> tuple[float, list[float]]:
    per = rows // len(prompts)
    batch = [p for p in prompts for _ in range(per)]
    width = max(len(p) for p in batch)
    total = width + context + steps + 1
    ids = torch.tensor([[0] * (width - len(p)) + p for p in batch])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
    position = (mask.cumsum(1) - 1).clamp(min=0)
    cache = (StaticCache(config=model.config, max_cache_len=total) if static
             else DynamicCache(config=model.config))
    full = torch.zeros(rows, total, dtype=mask.dtype)  # static: one mask, sliced each step
    full[:, :width] = mask
    t0 = time.perf_counter()
    model(input_ids=ids, attention_mask=full if static else mask, position_ids=position,
          past_key_values=cache, use_cache=True, logits_to_keep=1)
    prefill = time.perf_counter() - t0
    tok = torch.zeros(rows, 1, dtype=torch.long)
    times = []
    for t in range(context + steps):
        pos = position[:, -1:] + 1 + t
        t0 = time.perf_counter()
        if static:
            full[:, width + t] = 1
            kw = {"attention_mask": full}
        else:
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            kw = {"attention_mask": mask}
        model(input_ids=tok, position_ids=pos, past_key_values=cache, use_cache=True, **kw)
        times.append(time.perf_counter() - t0)
    return prefill, times[context:]


@torch.no_grad()
def shared(model, forward, prompts: list[list[int]], rows: int, context: int,
           steps: int) -> tuple[float, list[float]]:
    per = rows // len(prompts)
    t0 = time.perf_counter()
    records = []
    for p in prompts:
        rec = shared_prefix.Record()
        model(input_ids=torch.tensor([p]), use_cache=False, logits_to_keep=1,
              discover_shared=rec)
        records.append(rec)
    prefill = time.perf_counter() - t0
    suffix = shared_prefix.Suffix.empty(model, rows, context + steps, torch.zeros(1))
    groups = [(g * per, (g + 1) * per) for g in range(len(prompts))]
    position = torch.tensor([len(p) for p in prompts for _ in range(per)])[:, None]
    tok = torch.zeros(rows, 1, dtype=torch.long)
    times = []
    for t in range(context + steps):
        t0 = time.perf_counter()
        forward(input_ids=tok, position_ids=position + t, use_cache=False,
                discover_shared=shared_prefix.Attend(records, groups, suffix))
        suffix.length += 1
        times.append(time.perf_counter() - t0)
    return prefill, times[context:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=32)
    p.add_argument("--prompts", type=int, default=4, help="prompts the rows are split over")
    p.add_argument("--context", type=int, default=64, help="untimed decode steps first")
    p.add_argument("--steps", type=int, default=16, help="timed decode steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--variants", nargs="+",
                   default=["today", "static", "shared", "onednn", "compiled"])
    args = p.parse_args()
    if args.rows % args.prompts:
        raise SystemExit("--rows must be a multiple of --prompts")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores, torch CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    policy = HFPolicy()  # shared_prefix and cpu_linear installed
    model = policy.model
    linears = Linears(model)
    env = load_environment("erdos")
    prompts = [policy.encode(p) for p in initial_prompts(env, args.prompts)]
    compiled = None
    results: dict[str, list[tuple[float, list[float]]]] = {v: [] for v in args.variants}
    failed: dict[str, str] = {}
    for r in range(args.rounds):
        k = r % len(args.variants)
        for v in args.variants[k:] + args.variants[:k]:
            if v in failed:
                continue
            linears.set(v == "onednn")
            try:
                if v in ("today", "static"):
                    out = padded(model, prompts, args.rows, args.context, args.steps,
                                 v == "static")
                else:
                    forward = model
                    if v == "compiled":
                        if compiled is None:
                            t0 = time.perf_counter()
                            compiled = torch.compile(model, dynamic=True)
                            shared(model, compiled, prompts, args.rows, 2, 2)  # compiles
                            print(f"  compiled in {time.perf_counter() - t0:.0f} s", flush=True)
                        forward = compiled
                    out = shared(model, forward, prompts, args.rows, args.context, args.steps)
            except Exception as e:  # a variant that cannot run is a finding
                failed[v] = f"{type(e).__name__}: {str(e)[:300]}"
                print(f"  {v}: failed: {failed[v]}", flush=True)
                continue
            results[v].append(out)
            print(f"  round {r} {v:>8}: prefill {out[0]:6.2f} s, decode step "
                  f"{1000 * statistics.median(out[1]):6.1f} ms  (load {os.getloadavg()[0]:.1f})",
                  flush=True)
    linears.set(True)
    print(f"\n{args.rows} rows over {args.prompts} prompts of ~{len(prompts[0])} tokens, "
          f"{args.context} tokens generated before the {args.steps} timed steps; medians:")
    base = None
    for v, outs in results.items():
        if not outs:
            print(f"  {v:>8}: {failed.get(v, 'not run')}")
            continue
        step = statistics.median(t for _, ts in outs for t in ts)
        pre = statistics.median(pf for pf, _ in outs)
        base = base or (step, pre)
        print(f"  {v:>8}: decode step {1000 * step:6.1f} ms ({base[0] / step:4.2f}x today), "
              f"prefill {pre:6.2f} s ({base[1] / pre:5.2f}x today)")
    print(f"CPU: {cpu_model()}; load average after: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
