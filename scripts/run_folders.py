"""Run every OpenEvolve- or ShinkaEvolve-style problem folder under a path for a few steps, and
print a table: problem, shape, initial score, best score, valid rate, samples per hour.

Fetches nothing: give it folders you have, e.g. OpenEvolve's examples checked out by you.

    git clone https://github.com/algorithmicsuperintelligence/openevolve
    python scripts/run_folders.py openevolve/examples --steps 2 --learner none

Folders that are not problem folders (or that `discover` refuses) are listed with the reason;
each run is a `discover run FOLDER` of its own, in --out.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from discover.doctor import cpu_model
from discover.problem_folder import FolderError, read_folder
from discover.views.inspection import open_run, run_stats


def initial_score(run_dir: Path) -> float | None:
    run = open_run(run_dir)
    with run.archive.snapshot():
        states = run.archive.initial_states()
    return max((c.score for c in states if c.score is not None), default=None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("path", help="a folder of problem folders (or one problem folder)")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--groups", type=int, default=1)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--learner", default="entropic")
    p.add_argument("--timeout-s", type=float, help="per evaluation (default: each folder's own)")
    p.add_argument("--out", default="", help="where the run directories go (default: a temp dir)")
    args = p.parse_args()
    root = Path(args.path)
    candidates = [root] if (root / "evaluator.py").exists() or (root / "evaluate.py").exists() \
        else sorted(d for d in root.iterdir() if d.is_dir())
    out = Path(args.out or tempfile.mkdtemp(prefix="folders-"))
    print(f"{len(candidates)} folders under {root}; {args.steps} steps x {args.groups} x "
          f"{args.group_size}, learner {args.learner}; {cpu_model()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}; runs in {out}", flush=True)
    rows, skipped = [], []
    for folder in candidates:
        try:
            spec = read_folder(folder)
        except FolderError as e:
            skipped.append((folder.name, str(e).splitlines()[0]))
            continue
        rd = out / folder.name
        cmd = [sys.executable, "-m", "discover.cli", "run", str(folder), "--steps",
               str(args.steps), "--groups", str(args.groups), "--group-size", str(args.group_size),
               "--max-new-tokens", str(args.max_new_tokens), "--learner", args.learner,
               "--run-dir", str(rd)]
        if args.timeout_s:
            cmd += ["--set", f"env.timeout_s={args.timeout_s}"]
        t0 = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            reason = (r.stderr.strip().splitlines() or ["?"])[-1]
            skipped.append((folder.name, f"discover run exited {r.returncode}: {reason}"))
            continue
        s = run_stats(open_run(rd))
        rows.append((folder.name, spec.shape, initial_score(rd), s["best_score"],
                     s["valid_rate"], s["samples_per_hour"], time.monotonic() - t0))
        print(f"  {folder.name}: done in {rows[-1][-1]:.0f} s", flush=True)
    print(f"\n| problem | shape | initial | best | valid | samples/h | s |\n|{' --- |' * 7}")
    for name, shape, init, best, valid, rate, secs in rows:
        print(f"| {name} | {shape} | {init:.6g} | {best:.6g} | {valid:.0%} | {rate:.0f} | "
              f"{secs:.0f} |")
    for name, why in skipped:
        print(f"skipped {name}: {why}")


if __name__ == "__main__":
    main()
