"""Ablations at an equal sample budget: does the learner, or PUCT, buy anything?

Five arms, each run with the same seeds, steps, groups and group size (so the same number of
samples), on the toy environment and on Erdős:

  entropic+puct   the method: entropic-advantage LoRA learner, PUCT parent selection;
  none+puct       no learner (best-of-N with the same archive and PUCT);
  none+greedy     no learner, always the best state (epsilon-random otherwise);
  none+fixed      no learner, always an initial state: plain best-of-N;
  null+puct       no model at all: every child re-runs its parent's program unchanged
                  (`--backend null`), so the table shows what the model and the learner add
                  over the starter programs and the search alone.

Every run is a real `discover.search.run` in this process (one local Ray for all; the model
loads from the cached safetensors each run), into its own directory under a temp folder. Per
arm and environment, as means over seeds:

  best score        the best verified score of a generated candidate (initial states excluded),
                    over the seeds that found any valid one ("found" says how many);
  last mean reward  the mean reward of all samples (failures included) in the last `--last` steps;
  valid rate        valid samples / all samples;
  samples to best   how many samples were drawn, in order, until the run's best first appeared.

The defaults are sized to finish in under 10 minutes on 2 idle cores, so they are a smoke-sized
budget (16 samples a run): differences between arms at this size are mostly noise. For figures
worth reading, raise --steps, --groups, --group-size, --max-new-tokens and the seeds.

    python scripts/ablate.py --steps 12 --groups 2 --group-size 4 --max-new-tokens 256 \\
        --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import torch

from discover import config as config_mod
from discover.config import Config
from discover.environment import load_environment
from discover.search import run

ARMS = {  # name: (learner, selection, backend)
    "entropic+puct": ("entropic", "puct", "hf"),
    "none+puct": ("none", "puct", "hf"),
    "none+greedy": ("none", "greedy", "hf"),
    "none+fixed": ("none", "fixed", "hf"),
    "null+puct": ("none", "puct", "null"),
}


def run_arm(env: str, arm: str, seed: int, args: argparse.Namespace, out: Path) -> dict:
    learner, selection, backend = ARMS[arm]
    cfg = Config()
    cfg.policy.backend = backend
    cfg.run.env, cfg.run.seed, cfg.run.selection = env, seed, selection
    cfg.run.steps, cfg.run.groups, cfg.run.group_size = args.steps, args.groups, args.group_size
    cfg.run.run_dir = str(out / f"{env}-{arm}-s{seed}")
    cfg.policy.max_new_tokens = args.max_new_tokens
    cfg.learner.method = learner
    cfg.env = {"time_budget_s": args.time_budget_s}
    config_mod.apply(cfg, config_mod.parse_set(args.set))
    torch.manual_seed(seed)  # the LoRA initialisation draws from torch's global generator
    t0 = time.monotonic()
    run_dir = run(cfg)
    seconds = time.monotonic() - t0
    return summarise(run_dir, load_environment(env).direction, args.last) | {"seconds": seconds}


def summarise(run_dir: Path, direction: str, last: int) -> dict:
    db = sqlite3.connect(f"file:{run_dir / 'archive.sqlite'}?mode=ro", uri=True)
    rows = db.execute("SELECT step, reward, ok, score FROM candidates WHERE initial = 0 "
                      "ORDER BY id").fetchall()
    db.close()
    valid = [(i, reward, score) for i, (_, reward, ok, score) in enumerate(rows) if ok]
    best = max(valid, key=lambda v: v[1]) if valid else None  # first of the best (ids ascend)
    steps = sorted({r[0] for r in rows})[-last:]
    tail = [r[1] for r in rows if r[0] in steps]
    return {"samples": len(rows), "valid_rate": len(valid) / max(1, len(rows)),
            "best_score": best[2] if best else None,
            "samples_to_best": best[0] + 1 if best else None,
            "last_mean_reward": statistics.mean(tail) if tail else float("nan")}


def mean_of(rows: list[dict], key: str) -> float | None:
    xs = [r[key] for r in rows if r[key] is not None]
    return statistics.mean(xs) if xs else None


def fmt(x: float | None, spec: str, width: int = 0) -> str:
    return ("-" if x is None else format(x, spec)).rjust(width)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["toy", "erdos"])
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--groups", type=int, default=2)
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--time-budget-s", type=float, default=2.0,
                   help="each program's time budget (the environment's time_budget_s)")
    p.add_argument("--last", type=int, default=1, help="mean reward over the last N steps")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="extra config overrides for every run, e.g. learner.lr=1e-4")
    p.add_argument("--out", default="", help="where run directories go (default: a temp dir)")
    args = p.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="ablate-"))
    budget = args.steps * args.groups * args.group_size
    print(f"{len(args.arms)} arms x {len(args.envs)} envs x seeds {args.seeds}: {args.steps} steps "
          f"x {args.groups} groups x {args.group_size} = {budget} samples a run, max_new_tokens "
          f"{args.max_new_tokens}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
          f"cores; runs in {out}", flush=True)
    t0 = time.monotonic()
    results: dict[tuple[str, str], list[dict]] = {}
    for env in args.envs:
        for seed in args.seeds:  # seed-major: an interrupted ablation still compares the arms
            for arm in args.arms:
                r = run_arm(env, arm, seed, args, out)
                results.setdefault((env, arm), []).append(r)
                print(f"  {env:<6} {arm:<14} seed {seed}: best {fmt(r['best_score'], '.6g')}, "
                      f"valid {r['valid_rate']:.0%}, samples to best "
                      f"{fmt(r['samples_to_best'], 'd')}, {r['seconds']:.0f} s", flush=True)
    for env in args.envs:
        direction = load_environment(env).direction
        print(f"\n{env} ({direction}imise), means over {len(args.seeds)} seeds, {budget} samples "
              f"a run:")
        print(f"{'arm':<15}{'best score':>12}{'found':>7}{'last mean reward':>18}"
              f"{'valid rate':>12}{'samples to best':>17}{'s/run':>7}")
        for arm in args.arms:
            rs = results[(env, arm)]
            found = sum(r["best_score"] is not None for r in rs)
            print(f"{arm:<15}{fmt(mean_of(rs, 'best_score'), '.6g', 12)}{found:>4}/{len(rs):<2}"
                  f"{fmt(mean_of(rs, 'last_mean_reward'), '.3f', 18)}"
                  f"{mean_of(rs, 'valid_rate'):>12.0%}"
                  f"{fmt(mean_of(rs, 'samples_to_best'), '.1f', 17)}"
                  f"{mean_of(rs, 'seconds'):>7.0f}")
    print(f"\ntotal {time.monotonic() - t0:.0f} s; load average after {os.getloadavg()[0]:.1f}; "
          f"run directories in {out}")
    (out / "ablate.json").write_text(json.dumps(
        {f"{e}/{a}": rs for (e, a), rs in results.items()}, indent=1))


if __name__ == "__main__":
    main()
