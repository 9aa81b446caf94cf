"""Where a default learning step's time goes, part by part, and what issue 34's cuts save.

One batch is sampled once (the embedded SmolLM2, the Erdős prompt, run.groups x run.group_size
completions of policy.max_new_tokens, config defaults), with rewards distinct within a group
(every row carries an advantage) except in the last `--zero-groups` groups, whose rewards are
all equal (A = 0 for every row: common in a real run, where a group's programs all fail). Then
each arm, a learner of its own (its own model copy, the default [learner] settings), takes one
step on that batch and saves and hands off its adapter as the search does (rundir.save_adapter,
backends.base.publish_adapter); rounds alternate the arms' order, so load from other processes
hits all alike. Arms:

  before  the learner before issue 34: zero-advantage rows run forward and backward too, the
          movement probe runs the whole first micro-batch, and the embeddings' output requires
          grad (transformers' checkpointing hook; it only costs time with learner.layers);
  after   the default now: zero-advantage rows skipped (exact with kl_coef = 0), the probe on
          its first learner.probe_rows completions, no input-grad hook (peft.drop_input_grads);
  bf16    after, with the forward passes under bfloat16 autocast (the learner turns it on by
          itself only where the CPU has AMX-BF16, as the vLLM CPU engine does);
  topN    after, with learner.layers = N (LoRA on the top N decoder layers only).

Per arm: each part's seconds (the learner's StepClock: base forward, LoRA forward, loss,
backward, clip, optimiser, movement probe, advantages, zero grad; and the adapter save and
hand-off timed here), their sum, the whole (step + save + hand-off, timed around them) and the
residual (whole - sum: what no part covers). Medians over rounds; the ratios against `before`
are the figures to compare on a busy machine.

    python scripts/profile_learner.py --rounds 2 --zero-groups 1
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from discover.backends.base import Sample, publish_adapter
from discover.backends.hf import HFPolicy
from discover.config import Config
from discover.doctor import cpu_model
from discover.learners import peft
from discover.learners.peft import PeftLearner
from discover.model.cpu_flags import cpu_has_amx_bf16
from discover.rundir import RunDir, save_adapter

EXTRA = ("adapter save", "hand-off")


@contextmanager
def zero_rows_kept(keep: bool) -> Iterator[None]:
    """With `keep`, every completion runs forward and backward, A = 0 or not (the learner
    before issue 34); the loss and gradient are the same, only the work differs."""
    if not keep:
        yield
        return
    original = peft.step_items

    def every_row(*args, **kwargs):
        items, _, metrics = original(*args, **kwargs)
        return items, items, metrics

    peft.step_items = every_row
    try:
        yield
    finally:
        peft.step_items = original


def profile_step(learner: PeftLearner, groups: list[list[Sample]], rewards: list[list[float]],
                 rd: RunDir, keep_zero_rows: bool = False) -> dict:
    """One learning step as the search takes it (step, adapter save, hand-off), timed whole and
    by part: {"parts": {name: s}, "total": s, "residual": total - sum of parts, "metrics"}."""
    with zero_rows_kept(keep_zero_rows):
        t0 = time.perf_counter()
        metrics = learner.step(groups, rewards)
        t1 = time.perf_counter()
        save_adapter(learner, rd, learner.policy.version)
        t2 = time.perf_counter()
        publish_adapter(learner.policy, rd, learner.policy.version)
        t3 = time.perf_counter()
    parts = dict(learner.clock.seconds) | {"adapter save": t2 - t1, "hand-off": t3 - t2}
    total = t3 - t0
    return {"parts": parts, "total": total, "residual": total - sum(parts.values()),
            "metrics": metrics}


@dataclasses.dataclass
class Arm:
    name: str
    learner: PeftLearner
    keep_zero_rows: bool
    rd: RunDir
    rows: list[dict] = dataclasses.field(default_factory=list)


def make_arm(name: str, cfg: Config, work: Path) -> Arm:
    layers = int(name[3:]) if name.startswith("top") else 0
    policy = HFPolicy(model=cfg.policy.model, threads=cfg.policy.threads or None,
                      batch_size=cfg.policy.batch_size)
    lc = dataclasses.replace(cfg.learner, method="entropic", layers=layers)
    learner = PeftLearner(policy, lc, temperature=cfg.policy.temperature, seed=0)
    learner.bf16 = name == "bf16"
    if name == "before":  # the probe on a whole micro-batch; the input-grad hook back in
        learner.probe_rows = lc.micro_batch
        learner.model.get_base_model().enable_input_require_grads()
    rd = RunDir(work / name)
    rd.adapter(1).parent.mkdir(parents=True, exist_ok=True)
    return Arm(name, learner, name == "before", rd)


def batch(policy: HFPolicy, cfg: Config, zero_groups: int
          ) -> tuple[list[list[Sample]], list[list[float]], float]:
    from bench_setup import initial_prompts  # (scripts/ on the path when run as a script)

    from discover.registry import load_environment

    prompts = initial_prompts(load_environment("erdos"), cfg.run.groups, cfg.run.seed)
    t0 = time.perf_counter()
    groups = policy.sample(prompts, cfg.run.group_size, max_new_tokens=cfg.policy.max_new_tokens,
                           temperature=cfg.policy.temperature, seed=0)
    gen_s = time.perf_counter() - t0
    rewards = [[float(i) for i in range(len(g))] for g in groups]
    for r in rewards[len(rewards) - zero_groups:]:
        r[:] = [0.0] * len(r)
    return groups, rewards, gen_s


def report(arms: list[Arm]) -> None:
    names = sorted({p for a in arms for r in a.rows for p in r["parts"]},
                   key=lambda p: (p in EXTRA, p))
    med = {a.name: {p: statistics.median(r["parts"].get(p, 0.0) for r in a.rows) for p in names}
           | {"sum of parts": statistics.median(sum(r["parts"].values()) for r in a.rows),
              "residual": statistics.median(r["residual"] for r in a.rows),
              "whole step": statistics.median(r["total"] for r in a.rows)} for a in arms}
    ref = med[arms[0].name]["whole step"]
    print(f"\nseconds, median of {len(arms[0].rows)} round(s); last column of each arm: share "
          f"of {arms[0].name}'s whole step")
    print(f"  {'part':<16}" + "".join(f"{a.name:>18}" for a in arms))
    for p in [*names, "sum of parts", "residual", "whole step"]:
        print(f"  {p:<16}" + "".join(f"{med[a.name][p]:9.2f} {med[a.name][p] / ref:7.1%}"
                                     for a in arms))
    for a in arms:
        m = a.rows[-1]["metrics"]
        print(f"  {a.name}: {m['completions']} completions, loss {m['loss']:.4g}, policy_kl "
              f"{m.get('policy_kl', float('nan')):.3g}, logp_change "
              f"{m.get('logp_change', float('nan')):.3g} (last round)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--arms", nargs="+", default=["before", "after", "bf16", "top8"])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--zero-groups", type=int, default=1,
                   help="groups (of run.groups) whose rewards are all equal")
    p.add_argument("--max-new-tokens", type=int, default=0, help="0: the config default")
    args = p.parse_args()
    cfg = Config()
    cfg.policy.max_new_tokens = args.max_new_tokens or cfg.policy.max_new_tokens
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"{cpu_model()}, {os.cpu_count()} cores, AMX-BF16: {cpu_has_amx_bf16()}; "
          f"uptime: {uptime}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="profile-learner-"))
    arms = [make_arm(name, cfg, work) for name in args.arms]
    groups, rewards, gen_s = batch(arms[0].learner.policy, cfg, args.zero_groups)
    tokens = sum(len(s.completion_ids) for g in groups for s in g)
    print(f"batch: {cfg.run.groups} x {cfg.run.group_size} completions, {tokens} tokens "
          f"(max_new_tokens {cfg.policy.max_new_tokens}), prompts ~{len(groups[0][0].prompt_ids)}"
          f" tokens, {args.zero_groups} group(s) of equal rewards; sampled in {gen_s:.1f} s",
          flush=True)
    for k in range(args.rounds):
        for arm in arms if k % 2 == 0 else arms[::-1]:
            arm.rows.append(profile_step(arm.learner, groups, rewards, arm.rd, arm.keep_zero_rows))
            print(f"  round {k} {arm.name}: {arm.rows[-1]['total']:.1f} s, load "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
    report(arms)
    print(f"uptime after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout}")


if __name__ == "__main__":
    main()
