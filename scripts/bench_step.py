"""Samples per hour of a whole step, learning on: the default step against today's step shape.

One step here is what `discover.search.run_step` does in phases 3-5 (sample, score, learn),
with the same parts: the embedded SmolLM2 samples G completions of each of B Erdős prompts
(the environment's initial states with the starter program, answered in its editable block
with the prefill), every program goes through the real sandbox on a local Ray scorer pool
(`GroupScorer`, as the search uses it), and the LoRA learner takes one step on the result.
Rewards are the environment's plus a tie-break of 1e-3 x the sample's index, so that every group
has unequal rewards and every completion carries a gradient (the most work a step can do; with
the small model most Erdős programs fail, all rewards of a group would be equal and the learner
would skip). PUCT selection and the SQLite commit (milliseconds) are left out.

Arms, each with its own model copy, at the same max_new_tokens and seeds:

  today    2 x 4 rows, batch 8, a prefill per row (left-padded batch, growing cache), MKL
           linears, one learner forward per completion (micro-batches of 4), scoring after
           sampling: the step as it was before issue 15 (flags: policy.shared_prefill = false,
           policy.onednn = false, policy.batch_size = 8, learner.batched = false,
           learner.micro_batch = 4, run.stream_scoring = false);
  BxG      the default code at B groups x G completions (config defaults unless --shapes):
           one batch of all rows, a prefill per prompt, oneDNN linears, decoding stopped at the
           block's end marker or the fence that closes the answer's code block, the batched
           learner, streamed scoring.

Rounds alternate the arms (A B C A B C ...; the order is rotated each round) so that load from
other processes hits all alike; figures are medians over rounds. The headline is samples per
hour = completions / step seconds x 3600. Target: the default shape at least 3x today's.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench_step.py --rounds 3 --max-new-tokens 128
    python scripts/bench_step.py --shapes 2x4 4x8 8x8   # step times per shape, for settings

`--runs ARM ...` times whole runs instead (`discover run erdos` as the demo runs it, each arm a
subprocess, arms alternated round by round, the same seed): a step's seconds from the run's
metrics, averaged over steps 1 .. S-1 (step 0 of an overlap run has no update beside it), and
each arm's step as a ratio of the `none` arm's of the same round (issue 34's target: the
default learning step at most 1.35x a step without a learner). Arms: none (--learner none),
learn (the default: what Erdős recommends, the cheap learner since issue 34), method (the
method's update after each step, with the probe: the default before), overlap (the same beside
sampling: run.overlap), overlap-1 (overlap, learner.threads = 1), and
learn-lean / overlap-lean (no movement probe, no gradient checkpointing), learn-top8 /
overlap-top8 (lean, and LoRA on the top 8 decoder layers only: learner.layers = 8), learn-np /
overlap-np (lean, and the prompt pass without gradient: learner.prompt_grad = false), split-lean /
split-np (overlap-lean / overlap-np with a core each: policy.threads = learner.threads = 1).

    python scripts/bench_step.py --runs none learn method --steps 4 --rounds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import torch
from bench_setup import initial_parents

from discover import prompt
from discover.backends.hf import HFPolicy
from discover.config import Config
from discover.doctor import cpu_model
from discover.environment import Parent
from discover.learners.peft import PeftLearner
from discover.registry import load_environment
from discover.scoring import GroupScorer, ScorerPool, start_ray

TARGET = 3.0


class Arm:
    def __init__(self, name: str, groups: int, group_size: int, batch_size: int, new: bool,
                 cfg: Config) -> None:
        self.name, self.groups, self.group_size, self.new = name, groups, group_size, new
        self.policy = HFPolicy(model=cfg.policy.model, threads=cfg.policy.threads or None,
                               batch_size=batch_size, shared_prefill=new, onednn=new)
        self.learner = PeftLearner(self.policy, dataclasses.replace(
            cfg.learner, method="entropic", micro_batch=cfg.learner.micro_batch if new else 4,
            batched=new), temperature=cfg.policy.temperature, seed=0)
        self.rows: list[dict] = []

    def describe(self) -> str:
        p, lr = self.policy, self.learner
        return (f"{self.name}: {self.groups} x {self.group_size} rows, batch {p.batch_size}, "
                f"{'shared' if p.shared_prefill else 'per-row'} prefill, "
                f"{'stop at the block end or closing fence, ' if self.new else ''}"
                f"{'batched' if lr.batched else 'per-completion'} learner (micro-batch "
                f"{lr.cfg.micro_batch}), {'streamed' if self.new else 'serial'} scoring")


def step(arm: Arm, env, pool: ScorerPool, parents: list[Parent], prompts: list[str],
         max_new: int, seed: int, temperature: float) -> dict:
    t0 = time.monotonic()
    scorer = GroupScorer(env, pool, parents[:arm.groups], seed, "block")
    fills = [prompt.prefill(env, x, "block") for x in parents[:arm.groups]]
    samples = arm.policy.sample(prompts[:arm.groups], arm.group_size, max_new_tokens=max_new,
                                temperature=temperature, seed=seed, prefill=fills,
                                stop=prompt.stop(env, "block") if arm.new else (),
                                on_sample=scorer.send if arm.new else None)
    t1 = time.monotonic()
    groups = scorer.children(samples)
    t2 = time.monotonic()
    rewards = [[c.reward + 1e-3 * i for i, c in enumerate(g)] for g in groups]
    learn = arm.learner.step(samples, rewards)
    t3 = time.monotonic()
    n = sum(len(g) for g in samples)
    return {"samples": n, "seconds": t3 - t0, "generate": t1 - t0, "score": t2 - t1,
            "learn": t3 - t2, "per_hour": 3600 * n / (t3 - t0),
            "valid": sum(c.ok for g in groups for c in g), "skipped": learn["skipped"],
            "tokens": sum(len(s.completion_ids) for g in samples for s in g)}


def shape(text: str) -> tuple[int, int, int]:
    parts = [int(x) for x in text.lower().split("x")]
    if len(parts) not in (2, 3) or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"a shape is BxG or BxGxBATCH, got {text!r}")
    b, g = parts[:2]
    return b, g, parts[2] if len(parts) == 3 else 0


# Each arm names every setting it is about, so that what Erdős recommends (the cheap learner:
# overlap, no probe, the prompt without gradient) does not leak into the arms that compare them.
LEAN = ["--set", "learner.probe_rows=0", "--set", "learner.grad_checkpointing=false"]
PROBE = ["--set", "learner.probe_rows=2"]
TOP8 = ["--set", "learner.layers=8"]  # LoRA on the top 8 decoder layers: a shorter backward
WHOLE = ["--set", "learner.prompt_grad=true"]  # the method's gradient, through the prompt too
NO_PROMPT_GRAD = ["--set", "learner.prompt_grad=false"]  # the backward skips the prompt
# Overlap with a core each: two OpenMP pools of 2 threads on 2 cores oversubscribe them.
SPLIT = ["--set", "policy.threads=1", "--set", "learner.threads=1"]
OVERLAP = ["--set", "run.overlap=true"]
AFTER = ["--set", "run.overlap=false"]  # the update after each step's sampling
RUN_ARMS = {"none": ["--learner", "none"], "learn": [],
            "method": [*AFTER, *WHOLE, *PROBE], "overlap": [*OVERLAP, *WHOLE, *PROBE],
            "overlap-1": [*OVERLAP, *WHOLE, *PROBE, "--set", "learner.threads=1"],
            "learn-lean": [*AFTER, *WHOLE, *LEAN], "overlap-lean": [*OVERLAP, *WHOLE, *LEAN],
            "learn-top8": [*AFTER, *WHOLE, *LEAN, *TOP8],
            "overlap-top8": [*OVERLAP, *WHOLE, *LEAN, *TOP8],
            "learn-np": [*AFTER, *LEAN, *NO_PROMPT_GRAD],
            "overlap-np": [*OVERLAP, *LEAN, *NO_PROMPT_GRAD],
            "split-lean": [*OVERLAP, *WHOLE, *LEAN, *SPLIT],
            "split-np": [*OVERLAP, *LEAN, *NO_PROMPT_GRAD, *SPLIT]}
RUN_TARGET = 1.35


def whole_runs(arms: list[str], steps: int, rounds: int, seed: int, extra: list[str]) -> None:
    """Whole `discover run erdos` runs per arm, alternated; step seconds from metrics.jsonl."""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; erdos, {steps} steps, seed {seed}, "
          f"{rounds} rounds, demo settings {' '.join(extra) or '(the recommended)'}", flush=True)
    rows: dict[str, list[float]] = {a: [] for a in arms}
    with tempfile.TemporaryDirectory(prefix="bench-runs-") as tmp:
        for r in range(rounds):
            for arm in arms[r % len(arms):] + arms[:r % len(arms)]:
                rd = Path(tmp) / f"{arm}-{r}"
                t0 = time.monotonic()
                subprocess.run([sys.executable, "-m", "discover.cli", "run", "erdos", "--steps",
                                str(steps), "--seed", str(seed), "--run-dir", str(rd), *extra,
                                *RUN_ARMS[arm]], check=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
                metrics = [json.loads(line) for line in open(rd / "metrics.jsonl")]
                steady = [sum(m["seconds"].values()) for m in metrics[1:]]
                parts = {k: statistics.mean(m["seconds"][k] for m in metrics[1:])
                         for k in ("generate", "score", "learn")}
                rows[arm].append(statistics.mean(steady))
                valid = sum(m["valid"] for m in metrics)
                print(f"  round {r} {arm:>9}: step {rows[arm][-1]:6.1f} s (generate "
                      f"{parts['generate']:5.1f}, score {parts['score']:4.1f}, learn "
                      f"{parts['learn']:5.1f}) valid {valid}/{sum(m['total'] for m in metrics)}"
                      f", run {time.monotonic() - t0:5.0f} s (load {os.getloadavg()[0]:.1f})",
                      flush=True)
    print(f"\nsteps 1..{steps - 1}, mean step seconds, medians over {rounds} rounds:")
    for arm in arms:
        line = f"  {arm:>9}: {statistics.median(rows[arm]):6.1f} s"
        if "none" in rows and arm != "none":
            ratios = [x / y for x, y in zip(rows[arm], rows["none"], strict=True)]
            ratio = statistics.median(ratios)
            line += (f"  {ratio:.2f}x none's (rounds {', '.join(f'{x:.2f}' for x in ratios)})"
                     f"; target <= {RUN_TARGET}x: {'met' if ratio <= RUN_TARGET else 'MISSED'}")
        print(line)
    print(f"CPU: {cpu_model()}; load average after: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--shapes", type=shape, nargs="+", default=None,
                   help="BxG[xBATCH] shapes of the default code (default: run.groups x "
                        "run.group_size, batch policy.batch_size)")
    p.add_argument("--no-today", action="store_true", help="leave out today's step")
    p.add_argument("--budget", type=float, default=10.0,
                   help="env.time_budget_s, every program's wall-clock safety limit (default "
                        "10 s); the work is Erdos's default env.iterations (the starter takes "
                        "about 0.8 s, as in the demo), equal in all arms")
    p.add_argument("--runs", nargs="+", choices=sorted(RUN_ARMS), default=None,
                   help="time whole demo runs of these arms instead (see above)")
    p.add_argument("--steps", type=int, default=4, help="--runs: steps per run")
    p.add_argument("--seed", type=int, default=0, help="--runs: the runs' seed")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="--runs: a setting for every arm")
    args = p.parse_args()
    if args.runs:
        whole_runs(args.runs, args.steps, args.rounds, args.seed,
                   [x for kv in args.set for x in ("--set", kv)])
        return
    cfg = Config()
    shapes = args.shapes or [(cfg.run.groups, cfg.run.group_size, cfg.policy.batch_size)]
    torch.manual_seed(0)
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores, torch CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}", flush=True)
    env = load_environment("erdos", time_budget_s=args.budget)
    most = max([b for b, _, _ in shapes] + [2])
    # initial states as a search shows them: the starter program on a construction
    parents = initial_parents(env, most, starter=True)
    prompts = [prompt.render(env, x, "block") for x in parents]
    start_ray(num_cpus=os.cpu_count())
    pool = ScorerPool("erdos", {"time_budget_s": args.budget}, cfg.ray.scorer_slots)
    arms = [] if args.no_today else [Arm("today", 2, 4, 8, False, cfg)]
    for b, g, batch in shapes:
        arms.append(Arm(f"{b}x{g}", b, g, batch or cfg.policy.batch_size, True, cfg))
    for arm in arms:
        print("  " + arm.describe())
    print(f"Erdos prompts of {len(arms[0].policy.encode(prompts[0]))} tokens, max_new_tokens "
          f"{args.max_new_tokens}, temperature {cfg.policy.temperature}, {args.rounds} rounds; "
          f"scorer pool of {pool.size}, {env.iterations} iterations a program (wall limit "
          f"{args.budget:g} s)", flush=True)
    for arm in arms:  # warm-up: first calls allocate and load
        arm.policy.sample(prompts[:1], 2, max_new_tokens=4, temperature=1.0, seed=0)
    for r in range(args.rounds):
        order = arms[r % len(arms):] + arms[:r % len(arms)]
        for arm in order:
            row = step(arm, env, pool, parents, prompts, args.max_new_tokens, 1000 + r,
                       cfg.policy.temperature)
            arm.rows.append(row)
            print(f"  round {r} {arm.name:>6}: {row['seconds']:6.1f} s (generate "
                  f"{row['generate']:5.1f}, score {row['score']:4.1f}, learn {row['learn']:5.1f}"
                  f"{', SKIPPED' if row['skipped'] else ''}) {row['samples']:3d} samples "
                  f"{row['tokens']:5d} tokens {row['valid']:2d} valid -> "
                  f"{row['per_hour']:6.0f} samples/h  (load {os.getloadavg()[0]:.1f})",
                  flush=True)
    pool.shutdown()
    print(f"\nmedians over {args.rounds} rounds, max_new_tokens {args.max_new_tokens}:")
    med = {}
    for arm in arms:
        m = {k: statistics.median(x[k] for x in arm.rows)
             for k in ("seconds", "generate", "score", "learn", "per_hour")}
        med[arm.name] = m
        print(f"  {arm.name:>6}: step {m['seconds']:6.1f} s (generate {m['generate']:5.1f}, "
              f"score {m['score']:4.1f}, learn {m['learn']:5.1f}) "
              f"{m['per_hour']:6.0f} samples/h")
    if "today" in med:
        base = med["today"]["per_hour"]
        ratios = {arm.name: [x["per_hour"] / y["per_hour"] for x, y in
                             zip(arm.rows, arms[0].rows, strict=True)] for arm in arms[1:]}
        for name, rs in ratios.items():
            print(f"  {name} / today: {med[name]['per_hour'] / base:.2f}x samples per hour "
                  f"(per round {', '.join(f'{x:.2f}' for x in rs)})")
        default = f"{cfg.run.groups}x{cfg.run.group_size}"
        if default in med:
            ratio = med[default]["per_hour"] / base
            print(f"  target: the default step ({default}) >= {TARGET:g}x today's samples per "
                  f"hour: {ratio:.2f}x, {'met' if ratio >= TARGET else 'MISSED'}")
    print(f"CPU: {cpu_model()}; load average after: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
