"""The sandbox with real subprocesses: hostile and broken programs end as the right failure kind,
within their limit, and leave nothing behind."""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import numpy as np
import pytest

from discover import sandbox
from discover.sandbox import Limits, run_function, run_program

MARGIN_S = 3.0  # start-up, kill and clean-up on top of a limit
ISO = sandbox.isolation()
needs_uid = pytest.mark.skipif(not ISO["uid_drop"],
                               reason=f"no uid of its own in this sandbox mode ({ISO['mode']})")


def our_sandbox_pids() -> list[int]:
    """Live processes running under a uid of one of this process's runs."""
    lo = sandbox.UID_BASE + (os.getpid() % (1 << 22)) * 64
    found = []
    for entry in os.listdir("/proc"):
        try:
            status = open(f"/proc/{entry}/status").read() if entry.isdigit() else ""
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if "Uid" in fields and lo <= int(fields["Uid"].split()[0]) < lo + 64 \
                and fields["State"].split()[0] not in "ZX":
            found.append(int(entry))
    return found


def pids_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and marker.encode() in open(f"/proc/{entry}/cmdline", "rb").read():
                found.append(int(entry))
        except OSError:
            continue
    return [p for p in found if p != os.getpid()]


@pytest.fixture(autouse=True)
def nothing_left_behind(monkeypatch, tmp_path_factory):
    """Runs use a temp root of their own, which must be empty after each test, as must /proc."""
    tmp_path_factory.getbasetemp()  # pytest's own tmp_path stays where it was
    root = tempfile.mkdtemp(prefix="discover-test-sandbox-")
    os.chmod(root, 0o711)  # the dropped uid must traverse it to its work directory
    monkeypatch.setattr(tempfile, "tempdir", root)
    yield
    left = os.listdir(root)
    os.rmdir(root) if not left else None
    assert left == [], f"sandbox directories not removed: {left}"
    if ISO["uid_drop"]:
        assert our_sandbox_pids() == []


def call(body: str, limits: Limits | None = None, **kwargs) -> sandbox.FunctionResult:
    program = "import os, sys, time\nimport numpy as np\n\ndef f(**kw):\n" + "".join(
        f"    {line}\n" for line in body.strip().splitlines())
    return run_function(program, "f", kwargs, limits or Limits(wall_s=5))


# --- correct programs ---------------------------------------------------------------------------

def test_returns_the_array_with_json_and_array_arguments():
    program = "import numpy as np\ndef f(x, scale, names):\n    return x * scale + len(names)\n"
    x = np.arange(6, dtype=np.float64).reshape(2, 3)
    res = run_function(program, "f", {"x": x, "scale": 2.0, "names": ["a", "b"]}, Limits())
    assert res.failure is None, res.log
    np.testing.assert_array_equal(res.value, x * 2 + 2)
    assert res.value.dtype == np.float64


def test_stdout_is_returned_and_nan_passes_through():
    res = call("print('hello from the program')\nreturn [1.0, float('nan'), float('inf')]")
    assert res.failure is None, res.log
    assert "hello from the program" in res.stdout
    assert np.isnan(res.value[1]) and np.isinf(res.value[2])


def test_run_program_with_stdin_outputs_and_an_executable_file():
    script = b"#!/bin/sh\ncat > copy.txt\necho to-stderr >&2\necho done\n"
    res = run_program(["prog.sh"], {"prog.sh": script}, Limits(wall_s=5),
                      outputs=["copy.txt", "absent.txt"], stdin=b"some input")
    assert res.status == "ok" and res.returncode == 0
    assert res.outputs == {"copy.txt": b"some input"}
    assert res.stdout == "done\n" and "to-stderr" in res.stderr


def test_bad_arguments_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="relative"):
        run_program(["true"], {"../escape": b""}, Limits())
    with pytest.raises(ValueError, match="identifier"):
        run_function("def f(): pass", "not a name", {}, Limits())
    with pytest.raises(TypeError, match="JSON"):
        run_function("def f(x): pass", "f", {"x": object()}, Limits())
    with pytest.raises(ValueError, match="wall_s"):
        Limits(wall_s=0)


# --- broken programs ----------------------------------------------------------------------------

def test_syntax_error():
    res = run_function("def f(:\n    return 1\n", "f", {}, Limits())
    assert res.failure == "syntax_error" and "SyntaxError" in res.log


def test_exception_is_a_crash_with_the_traceback():
    res = call("raise ValueError('boom-123')")
    assert res.failure == "crash" and "boom-123" in res.log and "ValueError" in res.log


def test_missing_function_is_a_crash_naming_it():
    res = run_function("def g():\n    return 1\n", "f", {}, Limits())
    assert res.failure == "crash" and "no function 'f'" in res.log


def test_exit_code_and_segfault_are_crashes():
    res = call("os._exit(3)")
    assert res.failure == "crash" and res.value is None and "code 3" in res.log
    res = call("import ctypes\nctypes.string_at(0)")
    assert res.failure == "crash" and "SIGSEGV" in res.log


@pytest.mark.parametrize("body", [
    "return object()",  # object dtype
    "return [[1, 2], [3]]",  # ragged
    "return 'a string'",
    "return None",
])
def test_unconvertible_return_values_are_invalid_output(body):
    res = call(body)
    assert res.failure == "invalid_output" and res.value is None, res.log


def test_array_beyond_output_mb_is_invalid_output():
    res = call("return np.zeros(1_000_000)", Limits(wall_s=5, output_mb=1))  # 8 MB
    assert res.failure == "invalid_output" and "bytes" in res.log


# --- hostile programs ---------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    "while True:\n    pass",
    "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "while True:\n    time.sleep(0.01)",
])
def test_endless_programs_time_out(body):
    t0 = time.monotonic()
    res = call(body, Limits(wall_s=2))
    assert res.failure == "timeout", res.log
    assert time.monotonic() - t0 < 2 + MARGIN_S


def test_cpu_limit_is_a_timeout():
    t0 = time.monotonic()
    res = call("while True:\n    pass", Limits(wall_s=30, cpu_s=1))
    assert res.failure == "timeout", res.log
    # well before the 30 s wall clock: the CPU limit stopped it (a loaded machine may take a
    # few wall seconds to hand out one CPU second)
    assert time.monotonic() - t0 < 15


def test_memory_bomb():
    res = call("a = np.ones(50 * 10**9 // 8)\nreturn a[:3]", Limits(wall_s=5, memory_mb=1024))
    assert res.failure == "memory", res.log


def test_memory_limit_none_sets_no_address_space_limit():
    """GPU programs run with memory_mb=None: CUDA maps far more address space than it uses."""
    probe = "import resource; print(*resource.getrlimit(resource.RLIMIT_AS))"
    limited = run_program([sys.executable, "-c", probe], {}, Limits(wall_s=30, memory_mb=512))
    assert limited.stdout.split() == [str(512 << 20)] * 2, limited.stderr
    free = run_program([sys.executable, "-c", probe], {}, Limits(wall_s=30, memory_mb=None))
    assert free.stdout.split() == [str(v) for v in resource.getrlimit(resource.RLIMIT_AS)]
    with pytest.raises(ValueError, match="memory_mb"):
        Limits(memory_mb=0)


def test_run_program_maps_bad_alloc_to_memory():
    res = run_program(["sh", "-c", "echo 'terminate called after throwing an instance of "
                       "std::bad_alloc' >&2; exit 134"], {}, Limits(wall_s=5))
    assert res.status == "memory" and res.returncode != 0


def test_fork_bomb_is_contained():
    t0 = time.monotonic()
    res = call("while True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
               Limits(wall_s=2, max_procs=32))
    assert res.failure in ("timeout", "crash"), res.log
    assert time.monotonic() - t0 < 2 + MARGIN_S
    # the autouse fixture checks that no process survives


def test_gigabytes_to_stdout_are_bounded():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    res = call("line = 'x' * 1_000_000\nwhile True:\n    print(line)",
               Limits(wall_s=5, file_mb=16))
    assert res.failure == "crash" and "File too large" in res.log, res.log
    assert len(res.stdout) <= sandbox.TAIL_BYTES
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000


@needs_uid
def test_cannot_write_outside_its_directory(tmp_path):
    target = tmp_path / "escaped.txt"
    name = f"/root/discover-escape-{uuid.uuid4().hex}"
    res = call(f"""
written = []
for path in [{str(target)!r}, {name!r}]:
    try:
        open(path, "w").write("x")
        written.append(path)
    except OSError:
        pass
open("inside.txt", "w").write("fine")
return len(written)""")
    assert res.failure is None, res.log
    assert int(res.value) == 0
    assert not target.exists() and not os.path.exists(name)


def test_cannot_see_the_parent_environment(monkeypatch):
    monkeypatch.setenv("DISCOVER_TEST_SECRET", "hunter2")
    res = call("return [int('DISCOVER_TEST_SECRET' in os.environ), "
               "int('hunter2' in repr(dict(os.environ)))]")
    assert res.failure is None, res.log
    assert res.value.tolist() == [0, 0]


def test_no_network():
    if not ISO["netns"]:
        pytest.skip(f"no network namespace in this sandbox mode ({ISO['mode']})")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        res = call(f"""
import socket
import subprocess
import sys
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
    return 1
except OSError:
    return 0""")
    assert res.failure is None, res.log
    assert int(res.value) == 0


@pytest.mark.parametrize("body", [
    "os.kill(os.getppid(), 9)\nos.killpg(os.getpgid(0), 9)\nreturn 1",
    "os.kill(os.getppid(), 9)\nos.killpg(os.getpgid(0), 9)\nos.kill(-1, 9)\nreturn 1",
])
def test_killing_its_parent_does_not_touch_the_driver(body):
    if "kill(-1" in body and not (ISO["uid_drop"] or ISO["pidns"]):
        pytest.skip("kill(-1) would reach the driver's processes in this sandbox mode")
    res = call(body)
    assert res.failure in (None, "crash"), res.log
    assert res.wall_s < 5 + MARGIN_S  # and pytest is still here to check it


def test_daemon_does_not_outlive_the_run():
    marker = f"discover-daemon-{uuid.uuid4().hex}"
    flag = f"/tmp/{marker}"
    res = call(f"""
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sh", ["sh", "-c", "sleep 1.5; touch {flag}; sleep 60 # {marker}"])
    os._exit(0)
os.wait()
return 1""")
    assert res.failure is None, res.log
    assert pids_with(marker) == []
    time.sleep(2.0)
    assert not os.path.exists(flag)


def test_symlinked_outputs_are_not_followed():
    res = run_program(["sh", "-c", "ln -s /etc/passwd out.txt; mkdir d; ln -s /etc d/etc"], {},
                      Limits(wall_s=5), outputs=["out.txt", "d/etc/passwd"])
    assert res.status == "ok" and res.outputs == {}


def test_isolation_reports_the_mode():
    assert ISO["mode"] and isinstance(ISO["netns"], bool) and isinstance(ISO["uid_drop"], bool)
    if os.geteuid() == 0 and ISO["uid_drop"]:
        res = run_program(["sh", "-c", "id -u; echo $$"], {}, Limits(wall_s=5))
        uid, pid = res.stdout.split()
        assert int(uid) >= sandbox.UID_BASE
        assert pid in ("1", "2") or not ISO["pidns"]  # bwrap's own init is 1, the program 2


# --- what a run writes: its directory and the world-writable ones, together ---------------------

@pytest.mark.parametrize("where", [".", "/dev/shm", "/tmp"])
def test_disk_filler_is_stopped(where):
    if where != "." and not ISO["uid_drop"]:
        pytest.skip(f"files outside its directory are not attributable in mode {ISO['mode']}")
    t0 = time.monotonic()
    res = call(f"""
chunk = b"x" * 2**20
for i in range(10**6):
    with open(f"{where}/fill-{{os.getpid()}}-{{i}}", "wb") as f:
        for _ in range(4):
            f.write(chunk)""", Limits(wall_s=20, disk_mb=32))
    assert res.failure == "crash" and "disk_mb=32" in res.log, res.log
    assert time.monotonic() - t0 < 20  # stopped by the disk limit, not the clock


def test_file_count_is_bounded():
    res = call("os.mkdir('d')\nfor i in range(10**7):\n    open(f'd/{i}', 'w').close()",
               Limits(wall_s=60))
    assert res.failure == "crash" and f"more than {sandbox.MAX_FILES} files" in res.log, res.log


def test_a_killed_parent_takes_its_program_down():
    """A scorer or driver killed mid-run (SIGKILL: no clean-up of ours runs) leaves nothing."""
    marker = f"discover-orphan-{uuid.uuid4().hex}"
    program = (f"import os\ndef f():\n    os.execv('/bin/sh', ['sh', '-c', "
               f"'sleep 120; true # {marker}'])\n")
    tmp_path = tempfile.mkdtemp()  # in the fixture's root, which the dropped uid can cross
    os.chmod(tmp_path, 0o711)
    parent = subprocess.Popen(  # (the program goes by environment: argv would show the marker)
        [sys.executable, "-c", "import os\nfrom discover.sandbox import Limits, run_function\n"
         "run_function(os.environ['PROGRAM'], 'f', {}, Limits(wall_s=120))"],
        env={**os.environ, "TMPDIR": str(tmp_path), "PROGRAM": program})
    deadline = time.monotonic() + 60
    while not pids_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids_with(marker), "the program never started"
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while pids_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids_with(marker) == []
    shutil.rmtree(tmp_path)  # what the killed parent could not clean up
