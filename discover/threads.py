"""How the run's processes use the cores: chosen once, before torch or numpy start a thread pool.

Researchers run `discover` beside other work (a second run, a served model). OpenMP threads that
spin while they wait (libgomp's default) and another busy process on the same cores starve each
other: a toy run took 2.2x as long beside one spinning process, and two runs at once 6.9x
(issue 25). So unless the user chose a wait policy, every process of a run waits PASSIVEly: this
module runs on `import discover`, and Ray workers and the vLLM engine inherit the variable from
the driver. Threads are sized to the cores this process may use (its CPU affinity and its
cgroup's CPU quota), not to the machine's count.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

WAIT_VARIABLE = "OMP_WAIT_POLICY"
CGROUP = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Choice:
    wait_policy: str
    chosen_by: str  # "discover" or "the user"
    torch_was_loaded: bool  # torch's pool started before discover could choose: too late there
    cores: int
    why_cores: str


def cgroup_cpus(root: Path = CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in cores (v2 `cpu.max`, v1 `cpu.cfs_quota_us`),
    None where there is none."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cores(root: Path = CGROUP) -> tuple[int, str]:
    """(cores this process may use, why): its affinity, capped by its cgroup's quota."""
    try:
        n, why = len(os.sched_getaffinity(0)), "CPU affinity"
    except AttributeError:  # not on Linux
        n, why = os.cpu_count() or 1, "the machine's count"
    quota = cgroup_cpus(root)
    if quota is not None and quota < n:
        return max(1, math.floor(quota)), f"cgroup CPU quota {quota:g}"
    return n, why


def choose() -> Choice:
    """Set the wait policy unless the user did; say what was chosen."""
    by = "the user" if WAIT_VARIABLE in os.environ else "discover"
    os.environ.setdefault(WAIT_VARIABLE, "PASSIVE")
    cores, why = usable_cores()
    return Choice(os.environ[WAIT_VARIABLE], by, "torch" in sys.modules, cores, why)


CHOICE = choose()
