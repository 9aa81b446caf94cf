"""Hostile candidate programs through the real scorer pool, with containment checked from outside.

Each program defines `solve(*args, **kwargs)`, so it fits any Python environment that calls
`solve` and accepts a list of numbers in [0, 1] (erdos, toy). Each attacks one thing: time,
processes, memory, disk, output, files outside its directory, host files it may not read,
the parent's secrets, the network, its parent, its own exit, the result it returns, or what it
leaves behind.

`run_suite` scores them all in parallel through `ScorerPool` (on Ray), records them as one step
of a real archive, then checks from outside, per program: the failure kind, the time it took,
processes left behind, files written outside its directory (a canary directory, marker files in
the world-writable directories), the secret in anything stored, connections reaching a socket of
ours, and scorers killed. A program that finds a secret or reaches a host says so by raising
with "BREACH" in its message. tests/test_hostile.py asserts on the report;
scripts/hostile_report.py prints it.

Attacks that the sandbox's isolation mode on this machine does not claim to stop (e.g. the
network without a network namespace) are left out and listed in the report as skipped.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import ray

from discover.archive import Archive, Candidate
from discover.backends.base import Sample
from discover.environment import Parent
from discover.puct import Puct
from discover.registry import load_environment
from discover.rundir import RunDir
from discover.sandbox import UID_BASE, WORLD_WRITABLE, isolation  # public names only
from discover.scoring import ScorerPool, score_groups

SECRET_NAME = "DISCOVER_HOSTILE_SECRET"
GOOD = "def solve(*args, **kwargs):\n    return [0.5] * 20\n"


@dataclass
class Hostile:
    name: str
    code: str
    kinds: tuple  # acceptable failure kinds; None: it may run to the end (and must be harmless)


def programs(marker: str, canary: Path, port: int) -> list[Hostile]:
    """The suite. `marker` names every file and daemon they create (so the check can find them);
    `canary` is a directory of ours with a file in it; `port` a socket of ours listening."""
    head = "import os, sys, time, signal\nimport numpy as np\n\ndef solve(*args, **kwargs):\n"

    def prog(body: str) -> str:
        return head + "".join(f"    {line}\n" for line in body.strip("\n").splitlines())

    target = canary / "canary.txt"
    # Readable by anyone on the host; a sealed sandbox shows none of them.
    checkout = Path(__file__).resolve().parents[1]
    host_files = [target, canary, RunDir(canary.parent).archive, checkout,
                  checkout / "discover" / "sandbox.py", Path.home(), Path.home() / ".cache"]
    return [
        Hostile("infinite_loop", prog("while True:\n    pass"), ("timeout",)),
        Hostile("ignores_sigterm", prog("""
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):
    signal.signal(s, signal.SIG_IGN)
while True:
    time.sleep(0.01)"""), ("timeout",)),
        Hostile("fork_bomb", prog("""
while True:
    try:
        os.fork()
    except OSError:
        pass"""), ("timeout", "crash")),
        Hostile("memory_bomb", prog("""
hoard = []
while True:
    hoard.append(np.empty(2**27))  # 1 GiB of address space at a time"""), ("memory",)),
        Hostile("disk_filler", prog(f"""
chunk = b"x" * 2**20
for i in range(10**6):
    for d in (".", "/tmp", "/dev/shm", "/var/tmp"):
        try:
            with open(f"{{d}}/{marker}-fill-{{i}}", "wb") as f:
                for _ in range(32):
                    f.write(chunk)
        except OSError:
            pass"""), ("crash", "timeout")),
        Hostile("stdout_flood", prog("""
line = "x" * 2**20
while True:
    print(line)
    print(line, file=sys.stderr)"""), ("crash", "timeout")),
        Hostile("writes_outside", prog(f"""
attempts = [
    lambda: open({str(target)!r}, "w").write("overwritten"),
    lambda: open({str(target)!r}, "a").write("appended"),
    lambda: os.remove({str(target)!r}),
    lambda: os.chmod({str(target)!r}, 0o777),
    lambda: open({str(canary / (marker + "-new"))!r}, "w").write("x"),
    lambda: os.symlink("/etc/passwd", {str(canary / (marker + "-link"))!r}),
    lambda: open("../{marker}-parent", "w").write("x"),
    lambda: open("/root/{marker}-root", "w").write("x"),
    lambda: open("/etc/{marker}-etc", "w").write("x"),
    lambda: open("/tmp/{marker}-tmp", "w").write("x"),
    lambda: open("/dev/shm/{marker}-shm", "w").write("x"),
    lambda: open("/var/tmp/{marker}-vartmp", "w").write("x"),
]
for attempt in attempts:
    try:
        attempt()
    except OSError:
        pass
return [0.5] * 20"""), (None,)),
        Hostile("reads_secrets", prog(f"""
found = [v for k, v in os.environ.items() if k == {SECRET_NAME!r}]
for pid in ["self", "1", "0"] + os.listdir("/proc"):
    for name in ("environ", "cmdline"):
        try:
            data = open(f"/proc/{{pid}}/{{name}}", "rb").read().decode(errors="replace")
        except OSError:
            continue
        found += [p.split("=", 1)[1] for p in data.split("\\0") if p.startswith({SECRET_NAME!r})]
if found:
    raise SystemExit(f"BREACH: found the secret: {{found}}")
return [0.5] * 20"""), (None,)),
        Hostile("reads_host", prog(f"""
seen = []
for path in {[str(p) for p in host_files]!r}:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, "rb").read(1)
        seen.append(path)
    except OSError:
        pass
if seen:
    raise SystemExit(f"BREACH: read host files: {{seen}}")
return [0.5] * 20"""), (None,)),
        Hostile("opens_network", prog(f"""
import socket
reached = 0
for host, port in [("127.0.0.1", {port}), ("10.255.255.1", 80), ("1.1.1.1", 53)]:
    try:
        socket.create_connection((host, port), timeout=1).close()
        reached += 1
    except OSError:
        pass
try:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", {port}))
except OSError:
    pass
if reached:
    raise SystemExit(f"BREACH: reached {{reached}} hosts")
return [0.5] * 20"""), (None,)),
        Hostile("kills_parent", prog("""
for target in (os.getppid(), 1):
    try:
        os.kill(target, signal.SIGKILL)
    except OSError:
        pass
for pid in range(2, 1 << 16):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
os.kill(-1, signal.SIGKILL)
return [0.5] * 20"""), ("crash", None)),
        Hostile("os_exit", prog("os._exit(0)"), ("crash",)),
        Hostile("segfault", prog("import ctypes\nctypes.string_at(0)"), ("crash",)),
        Hostile("returns_nan", prog("return np.full(20, np.nan)"), ("invalid_artifact",)),
        Hostile("returns_inf", prog("return np.full(20, np.inf)"), ("invalid_artifact",)),
        Hostile("returns_giant_array", prog("return np.zeros(20_000_000)"),
                ("invalid_output",)),
        Hostile("returns_unserialisable", prog("return object()"), ("invalid_output",)),
        Hostile("returns_generator", prog("return (x for x in range(3))"), ("invalid_output",)),
        Hostile("leaves_daemon", prog(f"""
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sh", ["sh", "-c", "while true; do touch /tmp/{marker}-daemon; "
                                         "sleep 0.2; done # {marker}"])
    os._exit(0)
os.wait()
return [0.5] * 20"""), (None,)),
    ]


@dataclass
class Outcome:
    name: str
    kind: str | None
    expected: tuple
    seconds: float
    log: str
    breaches: list[str] = field(default_factory=list)  # containment failures: escapes

    @property
    def right_kind(self) -> bool:
        return self.kind in self.expected


# Attacks that need a given containment to be stopped: left out in modes without it.
NEEDS = {"reads_host": ("sealed",), "opens_network": ("netns",), "writes_outside": ("uid_drop",),
         "kills_parent": ("uid_drop", "pidns"), "leaves_daemon": ("uid_drop", "pidns")}


def skipped(iso: dict) -> dict[str, str]:
    """{program: why it is left out} for this isolation mode (NEEDS: any one suffices)."""
    return {name: f"needs {' or '.join(needs)} (mode: {iso['mode']})"
            for name, needs in NEEDS.items() if not any(iso[n] for n in needs)}


@dataclass
class Report:
    outcomes: list[Outcome]
    skipped: dict[str, str]
    leftover_processes: list[str]
    limit_s: float  # the sandbox's wall-clock limit for one program
    wall_s: float  # the whole suite
    archive_problems: list[str]
    good_after: bool  # a correct program still scores right after the suite

    @property
    def tried(self) -> int:
        return len(self.outcomes)

    @property
    def escapes(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.breaches]

    @property
    def misclassified(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.right_kind]

    def over_time(self, margin_s: float) -> list[Outcome]:
        return [o for o in self.outcomes if o.seconds > self.limit_s + margin_s]

    def summary(self, margin_s: float) -> str:
        lines = [f"{'program':<24} {'kind':<17} {'expected':<26} {'s':>6}  breaches"]
        for o in self.outcomes:
            lines.append(f"{o.name:<24} {o.kind or 'ok':<17} "
                         f"{'/'.join(k or 'ok' for k in o.expected):<26} {o.seconds:>6.1f}  "
                         f"{'; '.join(o.breaches) or '-'}")
        lines += [f"{name:<24} skipped: {why}" for name, why in self.skipped.items()]
        lines.append(
            f"programs tried: {self.tried}, escapes: {len(self.escapes)}, processes left "
            f"behind: {len(self.leftover_processes)}, wrong failure kind: "
            f"{len(self.misclassified)}, over limit+{margin_s:g}s: "
            f"{len(self.over_time(margin_s))}, archive problems: {len(self.archive_problems)}, "
            f"suite wall time: {self.wall_s:.1f} s (limit per program {self.limit_s:g} s)")
        return "\n".join(lines)


def run_suite(env_name: str, env_options: dict, limit_s: float, slots: int = 2,
              secret: str | None = None) -> Report:
    """Run every hostile program through a fresh ScorerPool on the running Ray.

    `limit_s` is the environment's wall-clock limit for one program, for the report. The secret
    must already be in the environment Ray's workers inherited (set SECRET_NAME before
    ray.init); it is looked for in every log and in the archive file afterwards."""
    secret = secret or os.environ.get(SECRET_NAME, "")
    marker = f"discover-hostile-{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory(prefix="discover-hostile-") as tmp:
        root = Path(tmp)
        canary = root / "canary"
        canary.mkdir()
        os.chmod(root, 0o755)
        os.chmod(canary, 0o755)  # readable by anyone, writable by us only
        (canary / "canary.txt").write_text("intact")
        server, accepted = _listen()
        left_out = skipped(isolation())
        suite = [h for h in programs(marker, canary, server.getsockname()[1])
                 if h.name not in left_out]
        env = load_environment(env_name, **env_options)
        pool = ScorerPool(env_name, env_options, slots=slots)
        try:
            pids_before = _actor_pids(pool)
            # One step of a real archive: the programs as completions of one group, scored
            # through the same path as a search's (extract, sandbox via the pool, verify).
            archive = Archive(RunDir(root).archive)
            puct = Puct()
            init = env.verify(env.initial_artifacts(1, 0)[0])
            [init_id] = archive.add_initial([Candidate(None, -1, None, None, init.artifact,
                                                       init.score, init.reward, True)], puct)
            parent = Parent(code=None, artifact=init.artifact, score=init.score,
                            parent_score=None)
            t0 = time.monotonic()
            [children] = score_groups(env, pool, [parent],
                                      [[Sample(text=f"```python\n{h.code}```") for h in suite]],
                                      seed=1, edit="whole")
            wall_s = time.monotonic() - t0
            archive.commit_step(0, [(init_id, children)], puct, {"total": len(children)})
            problems = archive.integrity_check()
            archive.close()
            time.sleep(1.0)  # a surviving daemon would touch its file again by now
            pids_after = _actor_pids(pool)
            good = pool.evaluate([(GOOD, None, 0)])[0][0]
        finally:
            pool.shutdown()
            server.close()
        stored = RunDir(root).archive.read_bytes()
        outcomes = []
        for h, c in zip(suite, children, strict=True):
            o = Outcome(h.name, c.failure, h.kinds, c.eval_s, c.log)
            o.breaches += _left_files(marker, h.name, canary)
            if secret and (secret in c.log or secret in c.stdout):
                o.breaches.append("the secret reached its log")
            if "BREACH" in c.log:
                o.breaches.append(c.log[c.log.index("BREACH"):][:200])
            outcomes.append(o)
        if secret and secret.encode() in stored:
            _blame(outcomes, "reads_secrets", "the secret is in the archive file")
        if accepted:
            _blame(outcomes, "opens_network", f"{len(accepted)} connections reached our socket")
        target = canary / "canary.txt"
        if not target.exists() or target.read_text() != "intact" or \
                (target.stat().st_mode & 0o777) != 0o644 or len(os.listdir(canary)) != 1:
            _blame(outcomes, "writes_outside", "the canary directory was changed")
        if pids_after != pids_before:
            _blame(outcomes, "kills_parent",
                   f"scorer processes died: {pids_before} -> {pids_after}")
        leftovers = _leftover_processes(marker, pids_before + pids_after)
    return Report(outcomes, left_out, leftovers, limit_s, wall_s, problems, good.ok)


def _blame(outcomes: list[Outcome], name: str, breach: str) -> None:
    """Attribute a breach seen from outside to the program that attempts it."""
    hit = [o for o in outcomes if o.name == name] or outcomes
    hit[0].breaches.append(breach)


def _listen() -> tuple[socket.socket, list]:
    """A TCP socket on 127.0.0.1 that records every connection it accepts."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list = []

    def serve() -> None:
        while True:
            try:
                conn, addr = server.accept()
            except OSError:  # closed
                return
            accepted.append(addr)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server, accepted


def _actor_pids(pool: ScorerPool) -> list[int]:
    return sorted(ray.get([a.__ray_call__.remote(lambda self: os.getpid())
                           for a in pool.actors]))


def _left_files(marker: str, name: str, canary: Path) -> list[str]:
    """Files this program's attacks would leave outside its directory."""
    tags = {"disk_filler": ["-fill-"], "writes_outside": ["-tmp", "-shm", "-vartmp", "-new",
                                                          "-link", "-root", "-etc", "-parent"],
            "leaves_daemon": ["-daemon"]}.get(name, [])
    found = []
    for top in [*WORLD_WRITABLE, "/root", "/etc", str(canary), tempfile.gettempdir()]:
        try:
            names = os.listdir(top)
        except OSError:
            continue
        found += [f"{top}/{n}" for n in names if n.startswith(marker)
                  and any(n[len(marker):].startswith(t) for t in tags)]
    return [f"left {f}" for f in found[:5]]


def _leftover_processes(marker: str, scorer_pids: list[int]) -> list[str]:
    """Live processes of the sandbox uids of our scorers, or naming the marker."""
    ranges = [(UID_BASE + (pid % (1 << 22)) * 64, UID_BASE + (pid % (1 << 22)) * 64 + 64)
              for pid in scorer_pids]
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if re.search(r"^State:\s+[ZX]", status, re.M):
            continue
        uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))
        if marker.encode() in cmdline or any(lo <= uid < hi for lo, hi in ranges):
            found.append(f"pid {entry} uid {uid}: {cmdline[:80]!r}")
    return found
