"""Run the hostile-program suite through the real scorer pool and print the counts.

    .venv/bin/python scripts/hostile_report.py [--env erdos] [--budget-s 2] [--slots 2]

Starts a local Ray with a secret in its environment, runs tests/hostile_programs.py's suite, prints
one line per program and the totals (programs tried, escapes, processes left behind, ...).
Exit code 1 if anything escaped, was left behind, or ended as the wrong failure kind.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

import ray

from discover.sandbox import isolation
from discover.scoring import start_ray

# The suite is a test helper, kept out of the package that runs searches.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import hostile_programs as hostile  # noqa: E402

MARGIN_S = 3.0  # start-up, kill and clean-up on top of the program's wall-clock limit
WALL_MARGIN_S = {"erdos": 3.0, "toy": 0.0}  # what each environment adds to its time budget


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="erdos", choices=sorted(WALL_MARGIN_S))
    p.add_argument("--budget-s", type=float, default=2.0, help="the environment's time budget")
    p.add_argument("--slots", type=int, default=2, help="scorer actors (parallel programs)")
    args = p.parse_args()
    os.environ[hostile.SECRET_NAME] = secrets.token_hex(16)  # before Ray starts its workers
    start_ray(num_cpus=max(2, args.slots))
    try:
        report = hostile.run_suite(args.env, {"time_budget_s": args.budget_s},
                                   limit_s=args.budget_s + WALL_MARGIN_S[args.env],
                                   slots=args.slots)
    finally:
        ray.shutdown()
    print(f"sandbox isolation: {isolation()['mode']}")
    print(report.summary(MARGIN_S))
    bad = (report.escapes or report.leftover_processes or report.misclassified
           or report.over_time(MARGIN_S) or report.archive_problems or not report.good_after)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
