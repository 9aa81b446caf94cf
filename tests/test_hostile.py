"""The hostile-program suite (tests/hostile_programs.py) through the real scorer pool on Ray.

Every attack must end as the right failure kind within its limit plus a margin, leave no
process behind, write nothing outside its directory, never see the driver's secret, and leave
the scorers and the archive sound. `pytest -s -k hostile` (or scripts/hostile_report.py) prints
the counts.
"""

import math
import os
import secrets
from pathlib import Path

import hostile_programs as hostile
import pytest
import ray

from discover.arrays import WALL_MARGIN_S
from discover.sandbox import isolation
from discover.scoring import start_ray

pytestmark = pytest.mark.slow

MARGIN_S = 3.0  # start-up, kill and clean-up on top of a program's wall-clock limit
BUDGET_S = 2.0
SLOTS = 2


@pytest.fixture(scope="module")
def report():
    if ray.is_initialized():  # workers must inherit the secret: start Ray after setting it
        ray.shutdown()
    secret = secrets.token_hex(16)
    os.environ[hostile.SECRET_NAME] = secret
    start_ray(num_cpus=SLOTS)
    try:
        yield hostile.run_suite("erdos", {"time_budget_s": BUDGET_S},
                                limit_s=BUDGET_S + WALL_MARGIN_S, slots=SLOTS, secret=secret)
    finally:
        ray.shutdown()
        del os.environ[hostile.SECRET_NAME]


def test_every_attack_is_contained(report):
    summary = report.summary(MARGIN_S)
    print(f"\nsandbox isolation: {isolation()['mode']}\n{summary}")
    assert report.tried + len(report.skipped) == len(hostile.programs("m", Path("/c"), 1))
    assert report.tried >= 12, summary  # the weakest isolation mode still runs most of them
    assert [o.name for o in report.escapes] == [], summary
    assert report.leftover_processes == [], summary
    assert [o.name for o in report.misclassified] == [], summary
    assert [o.name for o in report.over_time(MARGIN_S)] == [], summary
    assert report.archive_problems == [], summary
    assert report.good_after, "a correct program no longer scores after the suite"


def test_the_suite_ran_in_parallel_within_its_bound(report):
    waves = math.ceil(report.tried / SLOTS)
    assert report.wall_s < waves * (report.limit_s + MARGIN_S), report.summary(MARGIN_S)


def test_the_checks_can_fail():
    """The report's counters see a breach when there is one (not a stand-in: real outcomes)."""
    o = hostile.Outcome("x", "crash", ("timeout",), 99.0, "log", ["left /tmp/x"])
    r = hostile.Report([o], {}, ["pid 1"], 5.0, 99.0, [], True)
    assert r.escapes == [o] and r.misclassified == [o] and r.over_time(3.0) == [o]
    assert "escapes: 1" in r.summary(3.0) and "processes left behind: 1" in r.summary(3.0)
