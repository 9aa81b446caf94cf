"""A run on a shared machine: how much slower beside a co-tenant, and two runs at once.

Workloads (each a real `discover run` in its own process, nothing set in its environment by this
script: threading is what `discover` chooses itself):

  toy    discover run toy --steps 2 --groups 2 --group-size 2 --max-new-tokens 48
         --set env.time_budget_s=2 --learner none    (issue 25's command)
  erdos  discover run erdos --steps 1                (a default Erdős step, learning on)

Conditions, alternated round by round (alone, spinner, pair, alone, spinner, pair, ...) so that
load from elsewhere hits each alike:

  alone    the workload by itself;
  spinner  beside one process spinning on a core (a pure-Python busy loop) the whole time;
  pair     two copies of the workload started together (the slower one's time counts).

Printed: each condition's median seconds and its slowdown against alone, the load average, and
the CPU model. Issue 25's targets on 2 cores: toy pair <= 2x, toy spinner <= 1.5x, Erdős step
beside a spinner <= 1.6x.

    python scripts/bench_cotenant.py --workloads toy erdos --rounds 3
    python scripts/bench_cotenant.py --workloads toy --backend vllm   # the vLLM CPU build's venv
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from discover.doctor import cpu_model

WORKLOADS = {
    "toy": ["toy", "--steps", "2", "--groups", "2", "--group-size", "2", "--max-new-tokens", "48",
            "--set", "env.time_budget_s=2", "--learner", "none"],
    "erdos": ["erdos", "--steps", "1"],
}
TARGETS = {("toy", "pair"): 2.0, ("toy", "spinner"): 1.5, ("erdos", "spinner"): 1.6}
SPIN = "while True:\n    pass\n"


def command(workload: str, backend: str, run_dir: Path) -> list[str]:
    cmd = [sys.executable, "-m", "discover.cli", "run", *WORKLOADS[workload], "--run-dir",
           str(run_dir)]
    return cmd + (["--backend", backend] if backend != "hf" else [])


def timed_runs(cmds: list[list[str]]) -> float:
    """Start the commands together; seconds until the last one ends."""
    t0 = time.monotonic()
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for c in cmds]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a run failed ({p.returncode}): {err[-2000:]}")
    return time.monotonic() - t0


def once(workload: str, condition: str, backend: str, tmp: Path, n: int) -> float:
    dirs = [tmp / f"{workload}-{condition}-{n}-{k}" for k in range(2)]
    if condition == "pair":
        return timed_runs([command(workload, backend, d) for d in dirs])
    spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if condition == "spinner" else None
    try:
        return timed_runs([command(workload, backend, dirs[0])])
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workloads", nargs="+", default=["toy", "erdos"], choices=list(WORKLOADS))
    p.add_argument("--conditions", nargs="+", default=["alone", "spinner", "pair"],
                   choices=["alone", "spinner", "pair"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--backend", default="hf", choices=["hf", "vllm"])
    args = p.parse_args()
    conditions = ["alone", *[c for c in args.conditions if c != "alone"]]
    print(f"{cpu_model()}, {os.cpu_count()} cores; backend {args.backend}; {args.rounds} rounds; "
          f"load average before {os.getloadavg()[0]:.1f}", flush=True)
    times: dict[tuple[str, str], list[float]] = {}
    loads = []
    with tempfile.TemporaryDirectory(prefix="cotenant-") as tmp:
        for n in range(args.rounds):
            for workload in args.workloads:
                for condition in conditions:
                    s = once(workload, condition, args.backend, Path(tmp), n)
                    times.setdefault((workload, condition), []).append(s)
                    loads.append(os.getloadavg()[0])
                    print(f"  round {n}: {workload:<6} {condition:<8} {s:7.1f} s  "
                          f"(load {loads[-1]:.1f})", flush=True)
    print(f"\n| workload | condition | median s | slowdown vs alone | target |\n|{' --- |' * 5}")
    for workload in args.workloads:
        alone = statistics.median(times[(workload, "alone")])
        for condition in conditions:
            med = statistics.median(times[(workload, condition)])
            target = TARGETS.get((workload, condition))
            mark = "" if target is None else f"<= {target}x " + \
                ("met" if med / alone <= target else "NOT met")
            print(f"| {workload} | {condition} | {med:.1f} | {med / alone:.2f}x | {mark} |")
    print(f"\nload average during: {min(loads):.1f}-{max(loads):.1f}; {cpu_model()}")


if __name__ == "__main__":
    main()
