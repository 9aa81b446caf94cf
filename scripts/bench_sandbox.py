"""Sandbox overhead: evaluations/s of a trivial candidate through `run_function` vs a bare spawn.

The candidate defines `solve()` returning three numbers. Two ways to run it, alternated
(A B A B ...) so that load from other processes on a shared machine hits both alike:

  sandbox  discover.sandbox.run_function, the way every environment calls it: a fresh temp
           directory, the harness, rlimits, the sealed filesystem (bubblewrap), namespaces
           and a dropped uid where available, result read back from result.npy;
  bare     subprocess.run([sys.executable, "-s", "-B", "-c", ...]) doing the same work with
           none of that: import numpy, define the function, call it, np.save the result; same
           interpreter flags and thread variables as the sandbox, so only containment differs.

Each round times `--per-round` evaluations of each; the figures are medians over rounds.
Target: sandbox time per evaluation at most 1.3x the bare spawn's.

`--levels` also times `/bin/true` through `run_program` at every isolation level this machine
offers (sealed bubblewrap, unshare, ...), alternated the same way: what each level costs.
scripts/bench_forkserver.py splits a candidate's start further (interpreter, numpy, bubblewrap)
and times a fork-server prototype (issue 36, item 4; docs/scale.md).

    python scripts/bench_sandbox.py --rounds 12 --per-round 4 [--levels]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from discover.doctor import cpu_model
from discover.sandbox import Limits, available_levels, isolation, run_function, run_program

TARGET = 1.3
PROGRAM = "def solve():\n    return [1.0, 2.0, 3.0]\n"
BARE = ("import numpy as np\n" + PROGRAM +
        "np.save('result.npy', np.asarray(solve()), allow_pickle=False)\n")
# The sandbox's own interpreter flags and environment (one BLAS thread: numpy's import is
# cheaper), so that the ratio is containment alone, not a difference in what Python does.
BARE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


PROCESS_S: list[float] = []  # the sandboxed process's own wall time (RunResult.wall_s)


def sandbox_once() -> None:
    res = run_function(PROGRAM, "solve", {}, Limits(wall_s=30))
    if res.failure or res.value is None or res.value.tolist() != [1.0, 2.0, 3.0]:
        raise SystemExit(f"the sandboxed candidate failed: {res.log}")
    PROCESS_S.append(res.wall_s)


def bare_once(workdir: str) -> None:
    subprocess.run([sys.executable, "-s", "-B", "-c", BARE], cwd=workdir, env=BARE_ENV,
                   check=True)


def timed(fn, n: int) -> float:
    """Seconds per call, over n calls."""
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=12, help="alternating rounds (A B per round)")
    p.add_argument("--per-round", type=int, default=4, help="evaluations of each kind per round")
    p.add_argument("--levels", action="store_true",
                   help="also time a trivial run at every isolation level available")
    args = p.parse_args()

    iso = isolation()  # probed once, outside the timings
    print(f"sandbox mode: {iso['mode']}; {cpu_model()}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as workdir:
        sandbox_once()
        bare_once(workdir)  # warm the page cache for both
        sand, bare = [], []
        for r in range(args.rounds):
            # Alternate which goes first, so neither always follows the other.
            order = [("sandbox", sand), ("bare", bare)]
            if r % 2:
                order.reverse()
            for name, out in order:
                fn = sandbox_once if name == "sandbox" else (lambda: bare_once(workdir))
                out.append(timed(fn, args.per_round))
    s, b = statistics.median(sand), statistics.median(bare)
    ratios = [x / y for x, y in zip(sand, bare, strict=True)]
    print(f"{args.rounds} rounds x {args.per_round} evaluations each, medians:")
    print(f"  sandbox (run_function): {1 / s:7.2f} evals/s  ({1000 * s:6.1f} ms each)")
    print(f"  bare python -s -B -c:   {1 / b:7.2f} evals/s  ({1000 * b:6.1f} ms each)")
    print(f"  overhead: {s / b:.2f}x the bare spawn (per-round ratios: median "
          f"{statistics.median(ratios):.2f}, range {min(ratios):.2f}-{max(ratios):.2f}); "
          f"target <= {TARGET}x: {'met' if s / b <= TARGET else 'MISSED'}")
    proc = statistics.median(PROCESS_S)
    print(f"  of a sandboxed evaluation, {1000 * proc:.1f} ms is the contained process "
          f"(bwrap or unshare, setpriv, interpreter, harness) and {1000 * (s - proc):.1f} ms "
          f"our Python around it (temp dir, files, /proc and /tmp sweeps)")
    if args.levels:
        time_levels(args.rounds, args.per_round)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


def time_levels(rounds: int, per_round: int) -> None:
    levels = available_levels()
    runs: dict[str, list[float]] = {lvl["mode"]: [] for lvl in levels}

    def true_at(level: dict) -> None:
        res = run_program(["/bin/true"], {}, Limits(wall_s=30), level=level)
        if res.status != "ok":
            raise SystemExit(f"/bin/true failed at {level['mode']}: {res.stderr}")

    for r in range(rounds):
        for lvl in (levels if r % 2 == 0 else levels[::-1]):
            runs[lvl["mode"]].append(timed(lambda lvl=lvl: true_at(lvl), per_round))
    base = statistics.median(runs[levels[-1]["mode"]])
    print(f"/bin/true through run_program, per level ({rounds} rounds x {per_round}, medians):")
    for mode, times in runs.items():
        t = statistics.median(times)
        print(f"  {mode:<28} {1000 * t:6.1f} ms  ({t / base:.2f}x {levels[-1]['mode']})")


if __name__ == "__main__":
    main()
