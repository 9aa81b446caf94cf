"""The learner's cost at the default CPU settings, and where a default step's time goes.

Part 1, one learner step in this process: the embedded SmolLM2 samples a default batch
(run.groups x run.group_size completions of the Erdős prompt, policy.max_new_tokens new tokens
each, all config defaults), then one `Learner.step` at the default learner settings (the
`[learner]` section's defaults: LoRA rank, targets, micro-batch, the size-rule rate) is timed.
Rewards are distinct within each group, so every completion carries an advantage: the most work a
step can do. The step's time is printed against the generation of the same batch, measured just
before (a ratio that survives a busy machine better than seconds), and its peak RSS from
/proc/self/status (VmHWM, reset just before the step through /proc/self/clear_refs).

Part 2, a real run: `discover run erdos --learner entropic --steps N` with every other setting
at its default (subprocess, the real CLI), sampling the resident memory of its whole process
tree (driver, Ray workers, sandboxes) every 0.5 s; then the share of each step spent in
generation, scoring and learning, from metrics.jsonl ("seconds"). Target: the run's peak under
8 GB. A step whose rewards are all equal (e.g. every program failed, common with the small model)
makes no update and costs no learning time; if no step of the run learned, the script also
prints the shares and the peak with part 1's learner step added, as an estimate.

    python scripts/bench_learner.py --steps 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_setup import initial_prompts
from learning_curve import tree_rss_bytes

from discover.backends.hf import HFPolicy
from discover.config import Config
from discover.learners.peft import PeftLearner, lora_modules
from discover.registry import load_environment
from discover.rundir import RunDir

MEMORY_TARGET_GB = 8.0


def vm_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS (VmHWM)
        return True
    except OSError:
        return False


def learner_step(cfg: Config) -> dict:
    policy = HFPolicy(model=cfg.policy.model, threads=cfg.policy.threads or None,
                      batch_size=cfg.policy.batch_size)
    learner = PeftLearner(policy, dataclasses.replace(cfg.learner, method="entropic"),
                          temperature=cfg.policy.temperature)
    env = load_environment("erdos")
    prompts = initial_prompts(env, cfg.run.groups, cfg.run.seed)
    t0 = time.perf_counter()
    groups = policy.sample(prompts, cfg.run.group_size, max_new_tokens=cfg.policy.max_new_tokens,
                           temperature=cfg.policy.temperature, seed=0)
    gen_s = time.perf_counter() - t0
    tokens = sum(len(s.completion_ids) for g in groups for s in g)
    rewards = [[float(i) for i in range(len(g))] for g in groups]  # all advantages non-zero
    before_kb = vm_kb("VmRSS")
    exact = reset_peak_rss()
    t0 = time.perf_counter()
    metrics = learner.step(groups, rewards)
    step_s = time.perf_counter() - t0
    peak_kb = vm_kb("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"part 1: one learner step, {cfg.run.groups} groups x {cfg.run.group_size}, "
          f"max_new_tokens {cfg.policy.max_new_tokens} ({tokens} completion tokens, prompts of "
          f"~{len(groups[0][0].prompt_ids)} tokens), LoRA rank {learner.cfg.lora_rank} on "
          f"{sorted(lora_modules(learner.model))}, lr {learner.lr:.3g}, micro-batch "
          f"{learner.cfg.micro_batch}")
    print(f"  generation of the batch: {gen_s:6.1f} s ({tokens / gen_s:.1f} tok/s)")
    print(f"  learner step:            {step_s:6.1f} s = {step_s / gen_s:.2f}x the generation "
          f"({metrics['completions']} completions, skipped={metrics['skipped']})")
    print(f"  RSS before the step {before_kb / 1e6:.2f} GB; peak during it "
          f"{peak_kb / 1e6:.2f} GB{'' if exact else ' (process lifetime peak)'}; "
          f"the step adds {(peak_kb - before_kb) / 1e6:.2f} GB", flush=True)
    return {"step_s": step_s, "added_gb": (peak_kb - before_kb) / 1e6}


def default_run(steps: int, seed: int, part1: dict | None) -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="bench-learner-")) / "run"
    cmd = [sys.executable, "-m", "discover.cli", "run", "erdos", "--learner", "entropic",
           "--steps", str(steps), "--seed", str(seed), "--run-dir", str(run_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak, stop = 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss_bytes(proc.pid))
            time.sleep(0.5)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.monotonic()
    _, err = proc.communicate()
    wall = time.monotonic() - t0
    stop.set()
    t.join()
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({' '.join(cmd)}):\n{err[-3000:]}")
    rows = [json.loads(line) for line in RunDir(run_dir).metrics.read_text().splitlines()]
    print(f"\npart 2: `discover run erdos --learner entropic --steps {steps}`, defaults otherwise "
          f"({wall:.0f} s wall, Ray start and model load included)")
    totals = {"generate": 0.0, "score": 0.0, "learn": 0.0}
    for m in rows:
        s = m["seconds"]
        step_total = sum(s.values())
        print(f"  step {m['step']}: {step_total:6.1f} s = generate {s['generate']:5.1f} "
              f"({s['generate'] / step_total:4.0%}), score {s['score']:5.1f} "
              f"({s['score'] / step_total:4.0%}), learn {s['learn']:5.1f} "
              f"({s['learn'] / step_total:4.0%}); {m['tokens']} tokens, "
              f"{m['valid']}/{m['total']} valid {m['failures']}, "
              f"{'no update (all rewards equal)' if m['learner'].get('skipped') else 'learned'}")
        for k in totals:
            totals[k] += s[k]
    all_s = sum(totals.values())
    print("  share over all steps: " + ", ".join(
        f"{k} {v / all_s:.0%}" for k, v in totals.items()))
    learned = [m for m in rows if not m["learner"].get("skipped")]
    if not learned and part1:  # a step that does update costs what part 1 measured
        n = len(rows)
        est = {"generate": totals["generate"] / n, "score": totals["score"] / n,
               "learn": part1["step_s"]}
        est_s = sum(est.values())
        print("  no step learned; a step that does, with part 1's learner step: " + ", ".join(
            f"{k} {v / est_s:.0%}" for k, v in est.items()) + f" of {est_s:.0f} s")
    met = "met" if peak / 1e9 < MEMORY_TARGET_GB else "MISSED"
    print(f"  peak resident memory of the run's process tree: {peak / 1e9:.2f} GB; "
          f"target < {MEMORY_TARGET_GB:g} GB: {met}")
    if not learned and part1:
        est_gb = peak / 1e9 + part1["added_gb"]
        print(f"  no step learned; with part 1's learner step on top: about {est_gb:.2f} GB; "
              f"target < {MEMORY_TARGET_GB:g} GB: "
              f"{'met' if est_gb < MEMORY_TARGET_GB else 'MISSED'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=2, help="steps of the real run in part 2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-step", action="store_true", help="part 2 only")
    p.add_argument("--skip-run", action="store_true", help="part 1 only")
    args = p.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    part1 = None if args.skip_step else learner_step(Config())
    if not args.skip_run:
        default_run(args.steps, args.seed, part1)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
