"""Time the shipped TriMul programs (plain PyTorch and torch.compile) with the environment's own
harness on this machine's GPU, and print the figures, the GPU and the noise between runs.

    python scripts/trimul_time.py                # 3 harness runs per program
    python scripts/trimul_time.py --runs 5 --json times.json

Each run is one full sandboxed evaluation (correctness configurations, then the 7 benchmarks
with fresh inputs each repeat); the noise is the spread of the geometric mean over runs.
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
    p.add_argument("--programs", nargs="+", default=list(PROGRAMS), choices=PROGRAMS)
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("trimul_time: needs a CUDA device (torch.cuda.is_available() is False here); "
              "TriMul times are only measured on a GPU. On CPU the environment checks "
              "correctness only: discover run trimul --set env.mode=correctness",
              file=sys.stderr)
        return 2
    env = TriMulEnvironment(mode="timed", retimes=0)
    gpu = torch.cuda.get_device_name()
    print(f"GPU: {gpu}; torch {torch.__version__}; {args.runs} harness runs per program")
    report: dict = {"gpu": gpu, "torch": torch.__version__, "programs": {}}
    for name in args.programs:
        runs = []
        for k in range(args.runs):
            t0 = time.monotonic()
            ev = env.run(program_source(name), seed=k)
            if not ev.ok:
                print(f"{name}: run {k} failed ({ev.failure}): {ev.log}", file=sys.stderr)
                return 1
            runs.append(ev.metrics)
            print(f"  {name} run {k}: {ev.score:.1f} µs ({time.monotonic() - t0:.0f} s)")
        geo = [m["geomean_us"] for m in runs]
        summary = {"geomean_us": geo, "min": min(geo), "median": statistics.median(geo),
                   "max": max(geo), "benchmarks": {}}
        print(f"{name}: geometric mean min {min(geo):.1f} / median {statistics.median(geo):.1f}"
              f" / max {max(geo):.1f} µs")
        for i, row in enumerate(runs[0]["benchmarks"]):
            means = [m["benchmarks"][i]["mean_us"] for m in runs]
            errs = [m["benchmarks"][i]["err_us"] for m in runs]
            summary["benchmarks"][row["label"]] = {"mean_us": means, "err_us": errs}
            print(f"    {row['label']:<32} median {statistics.median(means):9.1f} µs  "
                  f"(runs {min(means):.1f}..{max(means):.1f}; within-run s.e. "
                  f"<= {max(errs):.1f})")
        report["programs"][name] = summary
    print("published: " + ", ".join(f"{k} {v:g} µs" for k, v in RECORDS_US.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
