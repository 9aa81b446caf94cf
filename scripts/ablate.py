"""Paired ablations at an equal sample budget: does the learner, or the model, buy anything?

Arms (each run with the same seeds, steps, groups and group size, so the same samples):

  entropic+puct       the method: entropic-advantage LoRA learner, PUCT parent selection;
  entropic-zero+puct  the same with learner.copies = zero (copies of the parent get A = 0);
  none+puct           no learner (best-of-N with the same archive and PUCT): the baseline;
  none+greedy         no learner, always the best state (epsilon-random otherwise);
  none+fixed          no learner, always an initial state: plain best-of-N;
  null+puct           no model: every child re-runs its parent's program unchanged.

Pairing: per environment and seed the initial states are seeded ONCE (a run of its own,
`init-ENV-sSEED`) and every arm starts from them (`run.init_from`), with the same seed, so the
arms differ only in what the arm changes (and in what `--arm-set ARM SECTION.KEY=VALUE` sets
for that arm alone: each arm at its own best settings). `--init-from DIR` reuses the `init-*`
runs of an earlier ablation's folder (or one run directory, for one environment and seed). With
`--out` an earlier call's folder, finished runs are reused (their time is their steps' logged
seconds) and a run stopped part-way resumes: an ablation can be finished in several sittings.

Printed per environment: each run's best verified score (initial states included: the run's
result), best generated score, valid rate, how many valid children copy their parent's program
and how many edit it (per run, and per arm over the seeds), the knob edits tried a step (children,
run or not, giving a top-level NAME = value of the parent's a new value: discover.edits.retunes)
over each run's first and second half, seconds and, for learning arms, the
mean KL of the adapted model to the base and the mean |change| of the sampled tokens' log-probs
per update (near 0: the learner did not move the model); then each arm's paired difference
against none+puct per seed (positive: the arm is better, in the environment's direction), the
mean with a bootstrap 90% interval, and wins/losses/ties.

    python scripts/ablate.py --envs erdos --steps 6 --groups 2 --group-size 8 \\
        --max-new-tokens 160

Equal time (`--equal-time`): every arm gets the same wall-clock budget instead of the same
steps: `--budget-s`, or else the learning arm's time at `--steps` on the first seed (that run is
the calibration: it goes first). Every other run has steps capped at STEP_CAP and
run.budget_s = the budget. The budget covers the steps only, as run.budget_s counts them: from
the first step's start (Ray start, model load, seeding of the initial states excluded); the
learning arm's time is its steps' generate + score + learn seconds (metrics.jsonl), which leaves
out only PUCT selection and the commit (milliseconds). A budget run starts a step while its
elapsed time is under the budget, so it may overrun by up to one step: this favours the budget
arms over the calibration run. Arms of one seed run one after another, never side by side, in
the order given on even seeds and reversed on odd ones, so that load drift hits them alike.
The table gives each run's steps and samples reached. Two more tables compare the same runs:
at strict equal time (each run's best among its steps that ended within the budget: the
overrun of its last step left out) and at equal samples (each pair at the steps both reached).

    python scripts/ablate.py --envs erdos --steps 6 --equal-time
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

import numpy as np

from discover import config as config_mod
from discover.config import Config
from discover.doctor import cpu_model
from discover.edits import is_copy, retunes
from discover.registry import load_environment, recommended
from discover.rundir import RunDir
from discover.search import run

ARMS = {  # name: (learner, selection, backend, extra config)
    "entropic+puct": ("entropic", "puct", "hf", []),
    "entropic-zero+puct": ("entropic", "puct", "hf", ["learner.copies=zero"]),
    "none+puct": ("none", "puct", "hf", []),
    "none+greedy": ("none", "greedy", "hf", []),
    "none+fixed": ("none", "fixed", "hf", []),
    "null+puct": ("none", "puct", "null", []),
}
BASELINE = "none+puct"
STEP_CAP = 100_000  # an equal-time run's steps: the budget ends it first


def config(env: str, seed: int, args: argparse.Namespace, run_dir: Path,
           *arm: dict) -> Config:
    """The config of one run: the environment's recommended settings <- the script's settings <-
    its --set <- what the run (`arm`) sets, layered as the CLI layers a run's (config.resolve)."""
    mine = {"run": {"env": env, "seed": seed, "run_dir": str(run_dir), "steps": args.steps,
                    "groups": args.groups, "group_size": args.group_size},
            "policy": {"max_new_tokens": args.max_new_tokens}}
    return config_mod.resolve([mine, config_mod.parse_set(args.set), *arm], recommended)


def seed_initial(env: str, seed: int, args: argparse.Namespace, out: Path) -> Path:
    """The initial states of (env, seed), stored once: a one-sample run with no model."""
    rd = out / f"init-{env}-s{seed}"
    if RunDir(rd).holds_run():
        return rd
    return run(config(env, seed, args, rd, {"run": {"steps": 1, "groups": 1, "group_size": 1},
                                            "policy": {"backend": "null"},
                                            "learner": {"method": "none"}}))


def run_arm(env: str, arm: str, seed: int, init: Path, args: argparse.Namespace,
            out: Path, budget: float = 0.0) -> dict:
    """One arm's run: `args.steps` steps, or with `budget` > 0 as many as fit in `budget`
    seconds of steps. A run finished by an earlier call is reused; one stopped part-way resumes
    (under a budget, with what is left of it)."""
    learner, selection, backend, extra = ARMS[arm]
    own = [kv for name, kv in args.arm_set if name == arm]  # this arm's own best settings
    cfg = config(env, seed, args, out / f"{env}-{arm}-s{seed}",
                 {"policy": {"backend": backend}, "learner": {"method": learner},
                  "run": {"selection": selection, "init_from": str(init)}},
                 config_mod.parse_set([*extra, *own]))
    rd = Path(cfg.run.run_dir)
    marker = out / f"{rd.name}.budget"  # written when a budget run has ended
    if (stored_steps(rd) >= args.steps if not budget
            else marker.exists() and float(marker.read_text()) == budget):
        return result(rd)  # finished by an earlier call of this script: reuse it
    resume = RunDir(rd).config.exists()
    if budget:
        cfg.run.steps = STEP_CAP
        cfg.run.budget_s = budget - (step_seconds(rd) if resume else 0.0)
    t0 = time.monotonic()
    if not budget or cfg.run.budget_s > 0:  # (0 would mean no budget: a spent one runs nothing)
        run(cfg, resume=resume)
    if budget:
        marker.write_text(repr(budget))
    return result(rd, time.monotonic() - t0)


def result(run_dir: Path, wall: float | None = None) -> dict:
    """summarise() and the run's steps, its steps' seconds and its wall time (a reused run's:
    its steps' seconds)."""
    step_s = step_seconds(run_dir)
    return summarise(run_dir) | {"steps": stored_steps(run_dir), "step_s": step_s,
                                 "seconds": step_s if wall is None else wall}


def stored_steps(run_dir: Path) -> int:
    if not RunDir(run_dir).holds_run():
        return 0
    db = sqlite3.connect(f"file:{RunDir(run_dir).archive}?mode=ro", uri=True)
    try:
        return db.execute("SELECT COUNT(*) FROM steps").fetchone()[0]
    finally:
        db.close()


def step_seconds(run_dir: Path) -> float:
    """A reused run's time: its steps' generate + score + learn seconds from metrics.jsonl."""
    lines = RunDir(run_dir).metrics.read_text().splitlines()
    return sum(sum(json.loads(x)["seconds"].values()) for x in lines if x.strip())


def summarise(run_dir: Path) -> dict:
    db = sqlite3.connect(f"file:{RunDir(run_dir).archive}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT reward, ok, score, initial, step FROM candidates "
                          "ORDER BY id").fetchall()
        steps = [json.loads(m) for (m,) in db.execute("SELECT metrics FROM steps ORDER BY step")]
        tried = db.execute("SELECT c.code, p.code, c.ok, c.step FROM candidates c JOIN "
                           "candidates p ON c.parent_id = p.id WHERE c.initial = 0").fetchall()
        (env,) = db.execute("SELECT value FROM meta WHERE key = 'env'").fetchone()
    finally:
        db.close()
    language = load_environment(json.loads(env)).language
    pairs = [(child, parent) for child, parent, ok, _ in tried if ok]
    copies = sum(is_copy(child, parent, language) for child, parent in pairs)
    # Knob edits tried, valid or not, per step: does the learner stop trying them?
    knob_tries = [[0, 0] for _ in steps]
    for child, parent, ok, step in tried:
        if 0 <= step < len(steps) and retunes(child, parent, language):
            knob_tries[step][0] += 1
            knob_tries[step][1] += bool(ok)
    generated = [r for r in rows if not r[3]]
    valid = [r for r in rows if r[1]]
    best = max(valid, key=lambda r: r[0])
    # The best after each step (initial states included): equal-sample figures of budget runs.
    by_step = [max((r for r in valid if r[3] or r[4] <= k), key=lambda r: r[0])[2]
               for k in range(len(steps))]
    best_gen = max((r for r in generated if r[1]), key=lambda r: r[0], default=None)
    learn = [m["learner"] for m in steps if m.get("learner", {}).get("policy_kl") is not None]
    ends = list(np.cumsum([sum(m["seconds"].values()) for m in steps]))
    # What the valid children are: copies of their parent's program (comments and whitespace
    # aside: discover.edits.is_copy, the learner's notion) or edits (docs/benchmarks.md).
    return {"samples": len(generated), "best_by_step": by_step,
            "copies": copies, "edits": len(pairs) - copies, "knob_tries": knob_tries,
            "step_end_s": [float(x) for x in ends],
            "valid_rate": sum(r[1] for r in generated) / max(1, len(generated)),
            "best": best[2], "best_reward": best[0],
            "best_generated": best_gen[2] if best_gen else None,
            "policy_kl": statistics.mean(m["policy_kl"] for m in learn) if learn else None,
            "logp_change": statistics.mean(m["logp_change"] for m in learn) if learn else None,
            "copy_adv_share": statistics.mean(m.get("copy_adv_share", 0) for m in learn)
            if learn else None}


def bootstrap(xs: list[float], level: float = 0.9, n: int = 10_000) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean (a fixed generator: the table repeats)."""
    rng = np.random.default_rng(0)
    means = rng.choice(np.asarray(xs), size=(n, len(xs)), replace=True).mean(axis=1)
    return (float(np.quantile(means, (1 - level) / 2)),
            float(np.quantile(means, (1 + level) / 2)))


def fmt(x: float | None, spec: str, width: int = 0) -> str:
    return ("-" if x is None else format(x, spec)).rjust(width)


def table(env: str, arms: list[str], seeds: list[int], results: dict) -> None:
    direction = load_environment(env).direction
    print(f"\n{env} ({direction}imise): per run (seed: best, best generated, valid, copies/"
          f"edits, steps, samples, steps' s, KL, dlogp)")
    for arm in arms:
        for seed in seeds:
            r = results[(env, arm, seed)]
            print(f"  {arm:<19} s{seed}: {r['best']:.6g}  {fmt(r['best_generated'], '.6g')}  "
                  f"{r['valid_rate']:.0%}  {r['copies']}/{r['edits']}  {r['steps']} steps  "
                  f"{r['samples']} samples  {r['step_s']:.0f} s  {fmt(r['policy_kl'], '.2g')}  "
                  f"{fmt(r['logp_change'], '.2g')}")
    print("per arm, every seed (a copy: a valid child whose program is its parent's, comments "
          "and whitespace aside; an edit: any other valid child):")
    for arm in arms:
        runs = [results[(env, arm, seed)] for seed in seeds]
        n, steps = sum(r["samples"] for r in runs), sum(r["steps"] for r in runs)
        copies, edits = sum(r["copies"] for r in runs), sum(r["edits"] for r in runs)
        print(f"  {arm:<19} {n} children, valid {(copies + edits) / max(1, n):.0%}, copies "
              f"{copies / max(1, n):.0%}, edits {edits / max(1, n):.1%} "
              f"({edits / max(1, steps):.1f} a step)")
    print("knob edits tried a step (a new value for a top-level NAME = value of the parent's, "
          "run or not; valid in brackets), each run's first half of steps, then its second:")
    for arm in arms:
        halves = [[0, 0, 0], [0, 0, 0]]  # steps, tries, valid tries
        for seed in seeds:
            by_step = results[(env, arm, seed)].get("knob_tries", [])
            for i, (tries, ok) in enumerate(by_step):
                h = halves[i >= len(by_step) / 2]
                h[0], h[1], h[2] = h[0] + 1, h[1] + tries, h[2] + ok
        print(f"  {arm:<19} " + ", then ".join(
            f"{t / max(1, n):.2f} ({v / max(1, n):.2f})" for n, t, v in halves))
    if BASELINE not in arms:
        return
    sign = -1.0 if direction == "min" else 1.0
    print(f"paired difference against {BASELINE} (positive: better), 90% bootstrap interval:")
    for arm in arms:
        if arm == BASELINE:
            continue
        d = [sign * (results[(env, arm, s)]["best"] - results[(env, BASELINE, s)]["best"])
             for s in seeds]
        lo, hi = bootstrap(d)
        wins, losses = sum(x > 0 for x in d), sum(x < 0 for x in d)
        per_seed = " ".join(f"{x:+.5f}" for x in d)
        print(f"  {arm:<19} {per_seed} | mean {statistics.mean(d):+.5f} [{lo:+.5f}, {hi:+.5f}]"
              f" | wins {wins}, losses {losses}, ties {len(d) - wins - losses}")


def within(r: dict, budget: float) -> int:
    """How many of a run's steps had ended within `budget` seconds of steps (at least 1)."""
    return max(1, sum(t <= budget for t in r["step_end_s"]))


def cut_tables(env: str, arms: list[str], seeds: list[int], results: dict,
               budget: float) -> None:
    """From equal-time runs, two more paired tables of the same runs. Strict equal time: each
    run's best among the steps that ended within the budget (a budget run may overrun it by up
    to one step, a longer step more). Equal samples: each pair at the steps both reached."""
    if BASELINE not in arms:
        return
    sign = -1.0 if load_environment(env).direction == "min" else 1.0
    cuts = {"strict equal time (the steps that ended within the budget)":
            lambda a, b: (within(a, budget), within(b, budget)),
            "equal samples (each pair at the steps both reached)":
            lambda a, b: (min(len(a["best_by_step"]), len(b["best_by_step"])),) * 2}
    for title, cut in cuts.items():
        print(f"{title}, against {BASELINE} (positive: better):")
        for arm in arms:
            if arm == BASELINE:
                continue
            d, at = [], []
            for s in seeds:
                mine, base = results[(env, arm, s)], results[(env, BASELINE, s)]
                k, j = cut(mine, base)
                d.append(sign * (mine["best_by_step"][k - 1] - base["best_by_step"][j - 1]))
                at.append(f"{k}/{j}")
            lo, hi = bootstrap(d)
            wins, losses = sum(x > 0 for x in d), sum(x < 0 for x in d)
            print(f"  {arm:<19} {' '.join(f'{x:+.5f}' for x in d)} (steps {', '.join(at)}) | "
                  f"mean {statistics.mean(d):+.5f} [{lo:+.5f}, {hi:+.5f}] | wins {wins}, "
                  f"losses {losses}, ties {len(d) - wins - losses}")


def learning_arm(arms: list[str]) -> str | None:
    """The first arm with a learner: at equal time without --budget-s, its time is the budget."""
    return next((a for a in arms if ARMS[a][0] != "none"), None)


def arm_order(arms: list[str], index: int, first: str | None = None) -> list[str]:
    """The arms of the `index`-th seed in the order they run: `first` (the calibration run)
    leads where given, and the order is reversed on odd seeds so load drift hits arms alike."""
    base = [first, *(a for a in arms if a != first)] if first else list(arms)
    return base if index % 2 == 0 else base[::-1]


def init_states(env: str, seed: int, args: argparse.Namespace, out: Path) -> Path:
    given = Path(args.init_from) if args.init_from else None
    if given is not None and RunDir(given).holds_run():
        return given
    return seed_initial(env, seed, args, given or out)


def run_env(env: str, args: argparse.Namespace, out: Path, results: dict) -> float:
    """Every seed's arms, seed-major (an interrupted ablation still pairs the arms); at equal
    time returns the budget the runs got."""
    budget = args.budget_s
    for i, seed in enumerate(args.seeds):
        init = init_states(env, seed, args, out)
        calibrate = args.equal_time and not budget
        for arm in arm_order(args.arms, i, learning_arm(args.arms) if calibrate else None):
            given = budget if args.equal_time else 0.0
            r = results[(env, arm, seed)] = run_arm(env, arm, seed, init, args, out, given)
            if args.equal_time and not budget:  # the calibration run: the budget is its time
                budget = r["step_s"]
                print(f"  equal-time budget: {budget:.1f} s of steps ({arm}, {args.steps} steps)")
            print(f"  {env} {arm:<19} seed {seed}: best {r['best']:.6g}, generated "
                  f"{fmt(r['best_generated'], '.6g')}, valid {r['valid_rate']:.0%}, KL "
                  f"{fmt(r['policy_kl'], '.2g')}, dlogp {fmt(r['logp_change'], '.2g')}, "
                  f"{r['steps']} steps, {r['samples']} samples, {r['step_s']:.0f} s of steps "
                  f"({r['seconds']:.0f} s wall), load {os.getloadavg()[0]:.1f}", flush=True)
    return budget


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["erdos"])
    p.add_argument("--arms", nargs="+", default=["entropic+puct", "none+puct", "null+puct"],
                   choices=list(ARMS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--groups", type=int, default=2)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=160)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="config overrides for every run, e.g. env.iterations=2000")
    p.add_argument("--arm-set", nargs=2, action="append", default=[],
                   metavar=("ARM", "SECTION.KEY=VALUE"),
                   help="an override for one arm's runs only, after --set: each arm at its own "
                        "best settings, e.g. --arm-set entropic+puct policy.temperature=1.2")
    p.add_argument("--init-from", default="",
                   help="a folder of an earlier ablation (its init-ENV-sSEED runs), or a run")
    p.add_argument("--out", default="", help="where run directories go (default: a temp dir)")
    p.add_argument("--equal-time", action="store_true",
                   help="the same wall-clock budget of steps for every arm, not the same steps")
    p.add_argument("--budget-s", type=float, default=0.0,
                   help="with --equal-time: the budget (default: the learning arm's time at "
                        "--steps, first seed)")
    args = p.parse_args()
    for arm, _ in args.arm_set:
        if arm not in args.arms:
            p.error(f"--arm-set names {arm!r}, which is not among --arms {args.arms}")
    if args.equal_time and not args.budget_s and learning_arm(args.arms) is None:
        p.error("--equal-time with no learning arm needs --budget-s")
    if args.budget_s and not args.equal_time:
        p.error("--budget-s goes with --equal-time")
    return args


def main() -> None:
    args = parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="ablate-"))
    out.mkdir(parents=True, exist_ok=True)
    samples = args.steps * args.groups * args.group_size
    shape = (f"equal time ({f'{args.budget_s:g} s' if args.budget_s else 'the learning arm'}'s"
             f" at {args.steps} steps) of {args.groups} groups x {args.group_size}"
             if args.equal_time else f"{args.steps} steps x {args.groups} groups x "
             f"{args.group_size} = {samples} samples a run")
    print(f"{len(args.arms)} arms x {len(args.envs)} envs x seeds {args.seeds}: {shape}, "
          f"max_new_tokens {args.max_new_tokens}, {' '.join(args.set)}"
          f"{''.join(f'; {a}: {kv}' for a, kv in args.arm_set)}; {cpu_model()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; runs in {out}",
          flush=True)
    t0 = time.monotonic()
    results: dict[tuple[str, str, int], dict] = {}
    budgets = {env: run_env(env, args, out, results) for env in args.envs}
    for env in args.envs:
        if args.equal_time:
            print(f"\n{env}: every arm had {budgets[env]:.1f} s of steps")
        table(env, args.arms, args.seeds, results)
        if args.equal_time:
            cut_tables(env, args.arms, args.seeds, results, budgets[env])
    print(f"\ntotal {time.monotonic() - t0:.0f} s; load average after {os.getloadavg()[0]:.1f}; "
          f"run directories in {out}")
    (out / "ablate.json").write_text(json.dumps(
        {f"{e}/{a}/s{s}": r for (e, a, s), r in results.items()}, indent=1))


if __name__ == "__main__":
    main()
