"""Where a candidate's start goes, and what a fork server would save (issue 36, item 4).

A prototype, not the sandbox: it measures, and checks what each forked candidate can see.
Kinds of one trivial evaluation, alternated in rounds (A B C ... then reversed) so that load
from other processes hits all alike; figures are medians over rounds, ratios against the bare
spawn measured in the same run:

  bare_pass     python -s -B -c pass: the floor of any fresh-process design
  bare_numpy    python -s -B -c "import numpy"
  bwrap_true    run_program(["/bin/true"]): the sandbox's containment around nothing
  bwrap_numpy   run_program([python, -s, -B, -c, "import numpy"]): containment + numpy
  run_function  the full run_function of a candidate returning three numbers (what scoring does)
  fork_shared   a server started once in one sealed bubblewrap view, numpy imported, forking a
                child per candidate: rlimits, a uid of the candidate's own, cwd a directory of
                its own. /tmp, /dev/shm, the PID, network and IPC namespaces are the server's,
                shared by every candidate it ever forks.
  fork_ns       the same server (with CAP_SYS_ADMIN kept), and each child first makes its own
                mount, PID, network, IPC and UTS namespaces, binds its own directories over
                /sandbox, /tmp and /dev/shm, detaches the jobs directory, mounts a fresh /proc
                as PID 1 of its namespace and runs the harness as PID 2: today's guarantees,
                rebuilt in code of ours instead of bubblewrap's.

Both fork kinds include what the host does per candidate (files in, uid, result.npy back,
directory removed, a scan for the uid's leftover processes), as run_function does.

    nice -n 19 python scripts/bench_forkserver.py --rounds 12 --per-round 4 [--check]

`--check` runs a probe candidate twice through each fork kind and through run_function and
prints what the second one saw of the first (files in /tmp, /dev/shm, its directory; processes).
Root only (the fork server drops to per-candidate uids and, for fork_ns, mounts).
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from discover import sandbox, sealed
from discover.doctor import cpu_model
from discover.sandbox import Limits, isolation, run_function, run_program

PROGRAM = "def solve():\n    return [1.0, 2.0, 3.0]\n"
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1",
       "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0",
       "PYTHONDONTWRITEBYTECODE": "1"}
JOBS = "/jobs"  # where the server sees the host's directory of per-candidate directories

SERVER = r'''
import ctypes, os, resource, signal, sys
import numpy  # the point: imported once
mode = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
NEWNS, NEWUTS, NEWIPC, NEWPID, NEWNET = 0x20000, 0x4000000, 0x8000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = \
    1, 2, 4, 8, 4096, 16384, 1 << 18
harness = compile(open(sys.argv[2], "rb").read(), "main.py", "exec")

def check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")

def mount(src, dst, fstype, flags):
    check(libc.mount(src and src.encode(), dst.encode(), fstype and fstype.encode(),
                     ctypes.c_ulong(flags), None), f"mount {dst}")

def limits(cpu, mem, fsize, nproc):
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))

def drop(uid):
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # from uid 0: every capability goes with it

def run_harness(home):
    os.environ.update(HOME=home, TMPDIR=home)
    os.chdir(home)
    exec(harness, {"__name__": "__main__", "__builtins__": __builtins__})
    os._exit(0)

def wait_exit(pid):
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)

def child(job, uid, cpu, mem, fsize, nproc):
    d = f"{JOBS}/{job}"
    out = os.open(f"{d}/stdout", os.O_WRONLY | os.O_CREAT, 0o600)
    err = os.open(f"{d}/stderr", os.O_WRONLY | os.O_CREAT, 0o600)
    os.dup2(out, 1); os.dup2(err, 2); os.close(out); os.close(err)
    os.setsid()
    if mode == "shared":
        limits(cpu, mem, fsize, nproc)
        drop(uid)
        run_harness(f"{d}/work")
    check(libc.unshare(NEWNS | NEWPID | NEWNET | NEWIPC | NEWUTS), "unshare")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    for src, dst in (("work", "/sandbox"), ("tmp", "/tmp"), ("shm", "/dev/shm")):
        mount(f"{d}/{src}", dst, None, MS_BIND)
    check(libc.umount2(JOBS.encode(), 2), "umount /jobs")  # MNT_DETACH: no other job in sight
    init = os.fork()  # PID 1 of the new namespace: when it dies, everything in it dies
    if init:
        os._exit(max(0, min(255, wait_exit(init) & 0xFF)))
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    pid = os.fork()
    if pid == 0:
        limits(cpu, mem, fsize, nproc)
        drop(uid)
        run_harness("/sandbox")
    rc = wait_exit(pid)
    os._exit(rc if rc >= 0 else 128 - rc)

JOBS = sys.argv[3]
print("ready", flush=True)
for line in sys.stdin:
    job, uid, cpu, mem, fsize, nproc = line.split()
    pid = os.fork()
    if pid == 0:
        try:
            child(job, *map(int, (uid, cpu, mem, fsize, nproc)))
        except BaseException as e:
            os.write(2, repr(e).encode())
        os._exit(99)
    print(job, wait_exit(pid), flush=True)
'''


class ForkServer:
    """One sealed bubblewrap sandbox holding a Python with numpy imported; `run` forks a child."""

    def __init__(self, mode: str, limits: Limits) -> None:
        self.mode, self.limits = mode, limits
        self.jobs = tempfile.mkdtemp(prefix="discover-forkserver-")
        os.chmod(self.jobs, 0o711)
        with open(os.path.join(self.jobs, "server.py"), "w") as f:
            f.write(SERVER)
        shutil.copy(os.path.join(os.path.dirname(sandbox.__file__), "_harness.py"),
                    os.path.join(self.jobs, "harness.py"))
        own = os.path.join(self.jobs, "server")
        for d in ("work", "tmp", "shm"):
            os.makedirs(os.path.join(own, d))
            if d != "work":  # shared by every candidate, as a host's /tmp is: sticky, 1777
                os.chmod(os.path.join(own, d), 0o1777)
        view = sealed.view(("numpy",), ())
        args = sealed.bwrap_args(view, *(os.path.join(own, d) for d in ("work", "tmp", "shm")),
                                 setuid=True)
        if mode == "ns":
            args[1:1] = ["--cap-add", "CAP_SYS_ADMIN"]
        i = args.index("--remount-ro")
        args[i:i] = ["--dir", JOBS, "--bind", self.jobs, JOBS]
        env = dict(ENV, HOME=sealed.WORK, TMPDIR=sealed.WORK)
        if view.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(view.pythonpath)
        self.proc = subprocess.Popen(
            [*args, sys.executable, "-s", "-B", f"{JOBS}/server.py", mode, f"{JOBS}/harness.py",
             JOBS], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"the {mode} fork server did not start")
        self.counter = itertools.count()

    def run(self, program: str) -> tuple[np.ndarray | None, str]:
        n = next(self.counter)
        uid = sandbox.UID_BASE + (os.getpid() % (1 << 22)) * 64 + n % 64
        job = os.path.join(self.jobs, f"j{n}")
        try:
            for d in ("work", "tmp", "shm"):
                os.makedirs(os.path.join(job, d))
            files = {"program.py": program.encode(),
                     "call.json": json.dumps({"function": "solve", "kwargs": {}, "arrays": {},
                                              "max_bytes": 64 << 20}).encode()}
            for name, data in files.items():
                with open(os.path.join(job, "work", name), "wb") as f:
                    f.write(data)
            for d in ("work", "tmp", "shm"):
                p = os.path.join(job, d)
                os.chmod(p, 0o700)
                os.chown(p, uid, uid)
                for name in os.listdir(p):
                    os.chown(os.path.join(p, name), uid, uid)
            lim = self.limits
            self.proc.stdin.write(f"j{n} {uid} {lim.cpu_seconds} {lim.memory_mb << 20} "
                                  f"{lim.file_mb << 20} {lim.max_procs}\n")
            self.proc.stdin.flush()
            reply = self.proc.stdout.readline().split()
            for pid in sandbox._live_pids_of(uid):  # leftovers, by uid, as run_program does
                os.kill(pid, signal.SIGKILL)
            stderr = open(os.path.join(job, "stderr"), errors="replace").read()
            path = os.path.join(job, "work", "result.npy")
            if reply[1:] != ["0"] or not os.path.exists(path):
                status = os.path.join(job, "work", "status.json")
                status = open(status).read() if os.path.exists(status) else ""
                return None, f"exit {reply[1:]}: {status[-500:]} {stderr[-500:]}"
            with open(path, "rb") as f:
                value = np.load(io.BytesIO(f.read()), allow_pickle=False)
            return value, open(os.path.join(job, "stdout"), errors="replace").read()
        finally:
            sandbox._remove(job)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        sandbox._remove(self.jobs)


def spawn(code: str) -> None:
    subprocess.run([sys.executable, "-s", "-B", "-c", code], env=ENV, check=True)


def expect_ok(res) -> None:
    if res.status != "ok":
        raise SystemExit(f"run_program failed: {res.stderr[-500:]}")


def kinds(servers: dict[str, ForkServer]) -> dict:
    lim = Limits(wall_s=30)

    def through_run_function() -> None:
        res = run_function(PROGRAM, "solve", {}, lim)
        if res.failure or res.value.tolist() != [1.0, 2.0, 3.0]:
            raise SystemExit(f"run_function failed: {res.log}")

    def forked(server: ForkServer):
        def once() -> None:
            value, log = server.run(PROGRAM)
            if value is None or value.tolist() != [1.0, 2.0, 3.0]:
                raise SystemExit(f"fork_{server.mode} failed: {log}")
        return once

    return {
        "bare_pass": lambda: spawn("pass"),
        "bare_numpy": lambda: spawn("import numpy"),
        "bwrap_true": lambda: expect_ok(run_program(["/bin/true"], {}, lim)),
        "bwrap_numpy": lambda: expect_ok(run_program(
            [sys.executable, "-s", "-B", "-c", "import numpy"], {}, lim, packages=("numpy",))),
        "run_function": through_run_function,
        **{f"fork_{m}": forked(s) for m, s in servers.items()},
    }


PROBE = r'''
import os
def solve():
    seen = []
    for d in ("/tmp", "/dev/shm", "."):
        seen += [f"{d}/{n}" for n in os.listdir(d) if n.startswith("left-")]
    for d in ("/tmp", "/dev/shm", "."):
        open(f"{d}/left-{os.getpid()}", "w").write("x")
    procs = [p for p in os.listdir("/proc") if p.isdigit()]
    jobs = os.path.exists("/jobs/server.py")
    try:
        import socket
        socket.create_connection(("1.1.1.1", 53), timeout=1)
        net = 1
    except OSError:
        net = 0
    print("pid", os.getpid(), "uid", os.getuid(), "processes", sorted(map(int, procs)),
          "left by others", seen, "sees /jobs", jobs, "network", net)
    return [os.getuid()]
'''


def check(servers: dict[str, ForkServer]) -> None:
    print("--check: a probe candidate run twice; what the second saw")
    for name, server in servers.items():
        for i in range(2):
            value, out = server.run(PROBE)
            seen = out.strip() if value is not None else "FAILED " + out
            print(f"  fork_{name} #{i + 1}: {seen}")
    for i in range(2):
        res = run_function(PROBE, "solve", {}, Limits(wall_s=30))
        print(f"  run_function #{i + 1}: {res.stdout.strip() or res.log}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--per-round", type=int, default=4)
    p.add_argument("--check", action="store_true", help="print what forked candidates can see")
    args = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("root only: the prototype server drops to per-candidate uids")
    iso = isolation()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; sandbox mode {iso['mode']}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    servers = {m: ForkServer(m, Limits(wall_s=30)) for m in ("shared", "ns")}
    try:
        if args.check:
            check(servers)
        fns = kinds(servers)
        for fn in fns.values():
            fn()  # warm the page cache for each
        times: dict[str, list[float]] = {k: [] for k in fns}
        for r in range(args.rounds):
            for name in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
                t0 = time.perf_counter()
                for _ in range(args.per_round):
                    fns[name]()
                times[name].append((time.perf_counter() - t0) / args.per_round)
    finally:
        for s in servers.values():
            s.close()
    base = statistics.median(times["bare_pass"])
    rf = statistics.median(times["run_function"])
    print(f"{args.rounds} rounds x {args.per_round} of each, medians (ms per evaluation; "
          f"evals/s on one core; x bare_pass; x run_function):")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"  {name:<13} {1000 * t:7.1f} ms  {1 / t:6.1f}/s  {t / base:5.2f}x  "
              f"{t / rf:5.2f}x   (512 a step: {512 * t:5.1f} s per core)")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
