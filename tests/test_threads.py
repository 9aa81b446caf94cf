"""Every process of a run waits passively unless the user chose otherwise, with threads sized to
the cores it may use (issue 25): the CLI's, Ray's workers and sandboxed programs."""

import os
import subprocess
import sys
import textwrap

import pytest

from discover.sandbox import Limits, run_function
from discover.threads import cgroup_cpus, usable_cores


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    return {**env, **extra}


def test_cgroup_quota_v2_and_v1(tmp_path):
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpus(tmp_path) is None
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpus(tmp_path) == 1.5
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpus(v1) is None
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    assert cgroup_cpus(v1) == 0.5
    assert cgroup_cpus(tmp_path / "none") is None


def test_usable_cores_follow_affinity_and_quota(tmp_path):
    n = len(os.sched_getaffinity(0))
    assert usable_cores(tmp_path / "none") == (n, "CPU affinity")
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    cores, why = usable_cores(tmp_path)
    assert cores == 1 and "quota" in why
    (tmp_path / "cpu.max").write_text("10000 100000\n")  # a tenth of a core: still one thread
    assert usable_cores(tmp_path)[0] == 1


def test_affinity_sizes_torch_threads_in_a_new_process():
    code = ("import os; os.sched_setaffinity(0, {0}); import discover, torch; "
            "from discover.backends.hf import HFPolicy; "
            "print(os.environ['OMP_WAIT_POLICY'], discover.CHOICE.cores)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=clean_env(), timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["PASSIVE", "1"]


def test_the_user_choice_stands():
    code = "import discover, os; print(os.environ['OMP_WAIT_POLICY'], discover.CHOICE.chosen_by)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=clean_env(OMP_WAIT_POLICY="ACTIVE"), timeout=60)
    assert out.stdout.split() == ["ACTIVE", "the", "user"]


@pytest.mark.slow
def test_ray_workers_inherit_the_policy():
    code = textwrap.dedent("""
        import os, ray
        from discover.scoring import start_ray
        start_ray()
        print(ray.get(ray.remote(lambda: os.environ.get("OMP_WAIT_POLICY")).remote()))
        ray.shutdown()
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=clean_env(RAY_ADDRESS=""), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "PASSIVE"


def test_sandboxed_programs_wait_passively_on_one_thread():
    # (a function's value must be numeric: the answer is coded as numbers)
    res = run_function("import os\ndef f():\n    return [os.environ.get('OMP_WAIT_POLICY') == "
                       "'PASSIVE', int(os.environ.get('OMP_NUM_THREADS'))]\n", "f", {},
                       Limits(wall_s=20))
    assert res.failure is None, res.log
    assert list(res.value) == [1, 1]
