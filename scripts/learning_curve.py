"""Does test-time learning help? Same budget and seeds, --learner entropic against --learner none.

Runs `discover run toy` as subprocesses (the real CLI), then prints the mean reward and
valid-program rate of the last steps for each learner, and the peak memory of the process tree
(driver + Ray workers + sandboxes).

Every run gets `--set learner.lr=1e-3` unless told otherwise: at the default 4e-5 (sized for long
runs) twelve steps move the 135M model too little to change what it samples. About 25 minutes on
2 idle cores with the defaults.

    python scripts/learning_curve.py --steps 12 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from discover.rundir import RunDir


def tree_rss_bytes(root_pid: int) -> int:
    """Resident memory of a process and all its descendants (Ray workers included)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ppid, pages = int(fields[1]), int(fields[21])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
        rss[int(d)] = pages * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack += children.get(pid, [])
    return total


def run_one(env: str, learner: str, seed: int, args: argparse.Namespace, out: Path) -> dict:
    run_dir = out / f"{env}-{learner}-s{seed}"
    cmd = [sys.executable, "-m", "discover.cli", "run", env, "--learner", learner,
           "--seed", str(seed), "--steps", str(args.steps), "--groups", str(args.groups),
           "--group-size", str(args.group_size), "--max-new-tokens", str(args.max_new_tokens),
           "--run-dir", str(run_dir), *sum((["--set", s] for s in args.set), [])]
    # A fresh session so that Ray's processes are in this run's tree and die with it.
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss_bytes(proc.pid))
            time.sleep(0.5)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.monotonic()
    _, err = proc.communicate()
    stop.set()
    t.join()
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({' '.join(cmd)}):\n{err[-3000:]}")
    steps = [json.loads(line) for line in RunDir(run_dir).metrics.read_text().splitlines()]
    last = steps[-args.last:]
    return {
        "learner": learner, "seed": seed, "seconds": time.monotonic() - t0, "peak_gb": peak / 1e9,
        "mean_reward": statistics.mean(s["mean_reward"] for s in last),
        "valid_rate": sum(s["valid"] for s in last) / sum(s["total"] for s in last),
        "first_mean_reward": statistics.mean(s["mean_reward"] for s in steps[:args.last]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--env", default="toy")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--groups", type=int, default=2)
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--last", type=int, default=4, help="average over the last N steps")
    p.add_argument("--learners", nargs="+", default=["entropic", "none"])
    p.add_argument("--set", action="append", default=["learner.lr=1e-3"],
                   help="extra config overrides for every run (section.key=value)")
    p.add_argument("--out", default="", help="where run directories go (default: a temp dir)")
    args = p.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="learning_curve-"))
    rows = []
    for learner in args.learners:
        for seed in args.seeds:
            row = run_one(args.env, learner, seed, args, out)
            rows.append(row)
            print(f"  {learner:<10} seed {seed}: last-{args.last} mean reward "
                  f"{row['mean_reward']:.3f}, valid {row['valid_rate']:.0%}, "
                  f"{row['seconds']:.0f}s, peak {row['peak_gb']:.2f} GB", flush=True)
    print(f"\n{args.env}: {args.steps} steps x {args.groups} groups x {args.group_size}, "
          f"seeds {args.seeds}; figures over the last {args.last} steps")
    print(f"{'learner':<12}{'mean reward':>12}{'first steps':>13}{'valid rate':>12}{'peak GB':>9}")
    summary = {}
    for learner in args.learners:
        rs = [r for r in rows if r["learner"] == learner]
        summary[learner] = (statistics.mean(r["mean_reward"] for r in rs),
                            statistics.mean(r["valid_rate"] for r in rs))
        print(f"{learner:<12}{summary[learner][0]:>12.3f}"
              f"{statistics.mean(r['first_mean_reward'] for r in rs):>13.3f}"
              f"{summary[learner][1]:>12.1%}{max(r['peak_gb'] for r in rs):>9.2f}")
    if "none" in summary:
        for learner, (reward, valid) in summary.items():
            if learner != "none":
                base_r, base_v = summary["none"]
                print(f"{learner} vs none: mean reward {reward - base_r:+.3f}, "
                      f"valid rate {100 * (valid - base_v):+.1f} points")
    print(f"peak memory of any run: {max(r['peak_gb'] for r in rows):.2f} GB (target < 8 GB)")


if __name__ == "__main__":
    main()
