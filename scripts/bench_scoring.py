"""Scorer throughput: the Ray scorer pool with 1 and 2 CPU slots, and against multiprocessing.

A real local Ray (2 CPUs), the real `erdos` environment and the real sandbox score a CPU-bound
candidate that burns `--cpu-s` seconds of CPU and returns a valid step function. Three ways to
score the same `--jobs` candidates, alternated round by round so that load from other processes
hits all three alike:

  ray-1   discover.scoring.ScorerPool(..., slots=1): one scorer actor;
  ray-2   ScorerPool(..., slots=2): two actors;
  mp-2    a plain multiprocessing.Pool(2) whose workers call the same environment's evaluate.

Pools are built and warmed (one evaluation per worker) outside the timings. Figures are medians
over rounds. Targets: ray-2 at least 1.7x the throughput of ray-1; ray-2's time at most 1.2x
mp-2's (the pool's own overhead).

    python scripts/bench_scoring.py --rounds 3 --jobs 8 --cpu-s 0.5
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time

import ray

from discover.registry import load_environment
from discover.scoring import ScorerPool, start_ray

ENV = "erdos"
OPTIONS = {"time_budget_s": 10.0}
SPEEDUP_TARGET = 1.7
OVERHEAD_TARGET = 1.2
CANDIDATE = """import time
import numpy as np

def solve(parent, iters, seed):
    t0, x = time.process_time(), 0
    while time.process_time() - t0 < {cpu_s}:  # CPU-bound work
        x += 1
    return np.full(20, 0.5)
"""

_env = None  # one environment per multiprocessing worker, as each Ray actor holds one


def _init_worker() -> None:
    global _env
    _env = load_environment(ENV, **OPTIONS)


def _evaluate(job: tuple) -> bool:
    program, artifact, seed = job
    return _env.evaluate(program, artifact, seed).ok


def time_ray(slots: int, jobs: list[tuple]) -> float:
    pool = ScorerPool(ENV, OPTIONS, slots=slots)
    try:
        pool.evaluate(jobs[:pool.size])  # start the actors and the environment in each
        t0 = time.perf_counter()
        results = pool.evaluate(jobs)
        seconds = time.perf_counter() - t0
    finally:
        pool.shutdown()
    if not all(ev.ok for ev, _ in results):
        raise SystemExit(f"a candidate failed in the Ray pool: {results[0][0].log}")
    return seconds


def time_mp(workers: int, jobs: list[tuple]) -> float:
    # spawn: forking a process that runs Ray's threads is unsafe.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        pool.map(_evaluate, jobs[:workers], chunksize=1)
        t0 = time.perf_counter()
        ok = pool.map(_evaluate, jobs, chunksize=1)
        seconds = time.perf_counter() - t0
    if not all(ok):
        raise SystemExit("a candidate failed in multiprocessing.Pool")
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=8, help="candidates scored per measurement")
    p.add_argument("--cpu-s", type=float, default=0.5, help="CPU seconds each candidate burns")
    args = p.parse_args()

    start_ray(num_cpus=2)
    print(f"Ray CPUs: {ray.cluster_resources().get('CPU')}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    program = CANDIDATE.format(cpu_s=args.cpu_s)
    jobs = [(program, None, i) for i in range(args.jobs)]
    arms = {"ray-1": lambda: time_ray(1, jobs), "ray-2": lambda: time_ray(2, jobs),
            "mp-2": lambda: time_mp(2, jobs)}
    times: dict[str, list[float]] = {name: [] for name in arms}
    names = list(arms)
    for r in range(args.rounds):
        for name in names[r % 3:] + names[:r % 3]:  # rotate the order each round
            times[name].append(arms[name]())
            print(f"  round {r}: {name:<6} {times[name][-1]:6.1f} s", flush=True)
    ray.shutdown()

    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"\n{args.rounds} rounds x {args.jobs} candidates of {args.cpu_s} CPU-s each, medians:")
    for name, t in med.items():
        print(f"  {name:<6} {args.jobs / t:6.2f} evals/s  ({t:6.1f} s)")
    speedup = med["ray-1"] / med["ray-2"]
    overhead = med["ray-2"] / med["mp-2"]
    print(f"  speed-up 1 -> 2 slots: {speedup:.2f}x; target >= {SPEEDUP_TARGET}x: "
          f"{'met' if speedup >= SPEEDUP_TARGET else 'MISSED'}")
    print(f"  Ray pool overhead over multiprocessing.Pool(2): {overhead:.2f}x; target <= "
          f"{OVERHEAD_TARGET}x: {'met' if overhead <= OVERHEAD_TARGET else 'MISSED'}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
