"""A short search on every CPU environment: does the embedded model beat a parent?

For each environment, `discover run ENV --steps 3` (the real CLI, all defaults but the flags
below: the embedded model, the starter programs as initial states, 2 x 8 completions a step,
answers in the starter's editable block) into its own run directory; then, from the archive,
per run:

  valid          generated candidates with a verified artefact / all generated;
  better         valid ones that beat their own parent's score;
  edited better  of those, the ones whose code (comments and blank lines aside) differs from
                 the parent's: the model changed the program (a starter that improves its
                 parent's artefact, or runs with a new seed, can score higher unchanged, so
                 "better" alone is what the null backend also gets);
  best           the best generated score against the best initial state.

Programs get a small budget (`--set` defaults per environment below) so that the model, not
the scorer, takes the time; `--learner none` by default (learning is not what this measures;
`--learner entropic` to include it).

    OMP_WAIT_POLICY=PASSIVE python scripts/each_env.py            # all nine, ~30 min on 2 cores
    python scripts/each_env.py --envs erdos ac1 --steps 3
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from discover.doctor import cpu_model
from discover.edits import code_only
from discover.registry import load_environment
from discover.rundir import RunDir

ENVS = {  # name: options that keep one program's scoring short (Erdős, AC and circle packing
    # need none: their default env.iterations take about 0.8 s a program)
    "toy": [],
    "erdos": [],
    "ac1": [],
    "ac2": [],
    "circle_packing_26": [],
    "circle_packing_32": [],
    "ahc039": ["env.cases=2", "env.cpu_s=1"],
    "ahc058": ["env.cases=2", "env.cpu_s=1"],
    "denoising": ["env.time_budget_s=10"],
}


def summarize(rd: Path, direction: str, language: str = "python") -> dict:
    con = sqlite3.connect(f"file:{RunDir(rd).archive}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT c.ok, c.score, c.code, p.score, p.code, c.initial FROM "
                           "candidates c LEFT JOIN candidates p ON p.id = c.parent_id").fetchall()
    finally:
        con.close()
    sign = 1 if direction == "max" else -1
    gen = [r for r in rows if not r[5]]
    valid = [r for r in gen if r[0]]
    better = [r for r in valid if r[3] is not None and sign * (r[1] - r[3]) > 0]
    edited = [r for r in better if code_only(r[2], language) != code_only(r[4], language)]
    pick = max if direction == "max" else min
    starts = [r[1] for r in rows if r[5] and r[1] is not None]
    return {"generated": len(gen), "valid": len(valid), "better": len(better),
            "edited": len(edited), "best": pick([r[1] for r in valid], default=None),
            "start": pick(starts, default=None)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=160)
    p.add_argument("--learner", default="none")
    p.add_argument("--out", default="", help="where run directories go (default: a temp dir)")
    args = p.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="discover-each-"))
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average "
          f"{os.getloadavg()[0]:.1f}; {args.steps} steps, max_new_tokens {args.max_new_tokens}, "
          f"learner {args.learner}; runs in {out}", flush=True)
    rows = []
    for name in args.envs:
        rd = out / name
        cmd = [sys.executable, "-m", "discover.cli", "run", name, "--steps", str(args.steps),
               "--run-dir", str(rd), "--max-new-tokens", str(args.max_new_tokens),
               "--learner", args.learner]
        for opt in ENVS[name]:
            cmd += ["--set", opt]
        t0 = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True)
        took = time.monotonic() - t0
        if r.returncode != 0:
            print(f"  {name}: FAILED ({r.returncode}): {r.stderr[-500:]}", flush=True)
            continue
        env = load_environment(name)
        s = summarize(rd, env.direction, env.language)
        rows.append((name, s, took))
        print(f"  {name}: {s['valid']}/{s['generated']} valid, {s['better']} better than their "
              f"parent, {s['edited']} of them edited; best {s['best']} (start {s['start']}); "
              f"{took:.0f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    print("\n| env | valid | better than parent | edited and better | best generated | best "
          "initial | run |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, s, took in rows:
        print(f"| {name} | {s['valid']}/{s['generated']} | {s['better']} | {s['edited']} | "
              f"{s['best']:.6g} | {s['start']:.6g} | {took:.0f} s |" if s["best"] is not None
              else f"| {name} | 0/{s['generated']} | 0 | 0 | - | {s['start']} | {took:.0f} s |")
    print(f"CPU: {cpu_model()}; load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
