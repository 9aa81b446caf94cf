"""Time the shipped TriMul programs (plain PyTorch and torch.compile) with the environment's own
harness on this machine's GPU, and print the figures, the GPU and the noise between runs.

    python scripts/trimul_time.py                # 3 harness runs per program
    python scripts/trimul_time.py --runs 5 --json times.json
    python scripts/trimul_time.py --runs 1 --retimes 2   # the search's noise rule (re-timing)

Each run is one full sandboxed evaluation (correctness configurations, then the 7 benchmarks
with fresh inputs each repeat); the noise is the spread of the geometric mean over runs. With
--retimes K each run goes through `evaluate`, as in a search: a first timing that beats the
best so far is re-timed K more times and the median of the re-timings is what counts
(environments/trimul/README.md, "Noise"). Per benchmark it prints the mean, and the min /
median / max over the timed repeats of the first run.
Needs a CUDA device; on a machine without one it says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from environments.trimul import PROGRAMS, RECORDS_US, TriMulEnvironment, program_source


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="harness runs per program")
    p.add_argument("--retimes", type=int, default=0,
                   help="re-timings of each run's first timing (the search's noise rule)")
    p.add_argument("--max-repeats", type=int, default=100, help="timed repeats per benchmark")
    p.add_argument("--max-bench-wall-s", type=float, default=60.0,
                   help="wall-clock limit per benchmark configuration")
    p.add_argument("--programs", nargs="+", default=list(PROGRAMS), choices=PROGRAMS)
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("trimul_time: needs a CUDA device (torch.cuda.is_available() is False here); "
              "TriMul times are only measured on a GPU. On CPU the environment checks "
              "correctness only: discover run trimul --set env.mode=correctness",
              file=sys.stderr)
        return 2
    gpu = torch.cuda.get_device_name()
    print(f"GPU: {gpu}; torch {torch.__version__}; {args.runs} harness runs per program, "
          f"{args.retimes} re-timings each")
    report: dict = {"gpu": gpu, "torch": torch.__version__, "retimes": args.retimes,
                    "max_repeats": args.max_repeats, "records_us": dict(RECORDS_US),
                    "programs": {}}
    for name in args.programs:
        runs = []
        for k in range(args.runs):
            # A fresh environment per run: its best-so-far starts empty, so with --retimes the
            # first timing is always re-timed, as a search's first candidate is.
            env = TriMulEnvironment(mode="timed", retimes=args.retimes,
                                    max_repeats=args.max_repeats,
                                    max_bench_wall_s=args.max_bench_wall_s)
            t0 = time.monotonic()
            ev = env.evaluate(program_source(name), None, seed=k)
            if not ev.ok:
                print(f"{name}: run {k} failed ({ev.failure}): {ev.log}", file=sys.stderr)
                return 1
            runs.append(ev.metrics)
            retimed = ev.metrics.get("retimes_us") or []
            print(f"  {name} run {k}: {ev.score:.1f} µs ({time.monotonic() - t0:.0f} s)"
                  + (f"; first {ev.metrics['first_us']:.1f}, re-timed "
                     + ", ".join(f"{t:.1f}" for t in retimed) if retimed else ""))
        report["programs"][name] = summary = summarize(runs)
        geo = summary["score_us"]
        print(f"{name}: score min {min(geo):.1f} / median {statistics.median(geo):.1f} / max "
              f"{max(geo):.1f} µs over {len(geo)} runs; every timing (first and re-timed) "
              f"{summary['min']:.1f}..{summary['max']:.1f} µs")
        for label, row in summary["benchmarks"].items():
            print(f"    {label:<32} mean {statistics.median(row['mean_us']):9.1f} µs  "
                  f"(repeats of run 0: {row['repeats']}, min {row['min_us']:.1f} / median "
                  f"{row['median_us']:.1f} / max {row['max_us']:.1f}; within-run s.e. "
                  f"<= {max(row['err_us']):.1f})")
    print("published: " + ", ".join(f"{k} {v:g} µs" for k, v in RECORDS_US.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


def summarize(runs: list[dict]) -> dict:
    """One program's figures from its runs' metrics: the recorded score of each run, every
    geometric mean measured (first timings and re-timings), and per benchmark the mean of each
    run plus the min/median/max over the first run's timed repeats."""
    score = [m.get("confirmed_us", m["geomean_us"]) for m in runs]
    every = [t for m in runs for t in [m["geomean_us"], *(m.get("retimes_us") or [])]]
    out = {"score_us": score, "first_us": [m["geomean_us"] for m in runs],
           "retimes_us": [m.get("retimes_us") or [] for m in runs],
           "min": min(every), "median": statistics.median(every), "max": max(every),
           "benchmarks": {}}
    for i, row in enumerate(runs[0]["benchmarks"]):
        out["benchmarks"][row["label"]] = {
            "mean_us": [m["benchmarks"][i]["mean_us"] for m in runs],
            "err_us": [m["benchmarks"][i]["err_us"] for m in runs],
            "repeats": row["runs"], "min_us": row["min_us"], "median_us": row["median_us"],
            "max_us": row["max_us"]}
    return out


if __name__ == "__main__":
    sys.exit(main())
