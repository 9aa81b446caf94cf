"""Run untrusted candidate programs in a contained process (docs/ARCHITECTURE.md: sandbox).

Each run gets a fresh temporary directory, a minimal environment, resource limits, a wall-clock
timeout that kills the whole process tree, and reports back through files of bounded size.
Containment is the strongest this machine allows, probed once (`isolation()`; every working
level: `available_levels()`):

  bwrap (sealed): bubblewrap builds the program a filesystem of its own: read-only the OS's
               programs and libraries (/usr and the loader's cache), the interpreter (its prefix
               and, for a venv, pyvenv.cfg and the executable's symlinks) with its site
               directories emptied, and the packages and paths its environment declares
               (`Environment.sandbox_packages` / `sandbox_paths`, with their requirements); its
               own writable directory (/sandbox), a private /tmp and /dev/shm, a private /proc
               and a minimal /dev; nothing else of the host (no home directories, checkouts,
               run directories, other runs, caches). Plus new network, PID, IPC and UTS
               namespaces. As root, bwrap runs privileged and `setpriv` drops the program to a
               uid/gid of its own for every run (RLIMIT_NPROC applies; leftovers are found and
               killed by uid); not root, bwrap runs in an unprivileged user namespace.
  unshare:     (bubblewrap missing or refused) a new network namespace, a PID namespace whose
               processes all die with its init, a private /proc, and as root a dropped uid: the
               program can write nowhere but its directory (and world-writable dirs, swept
               afterwards), but it can READ whatever the host lets that uid read;
  otherwise:   a new session and process group, killed as a group.

Why bubblewrap: it is the tool made for exactly this (Flatpak's sandbox, and several coding
agents'), packaged by every distribution (`apt-get install bubblewrap`), a few tens of ms per
start beyond the namespaces we made before (docs/benchmarks.md), and it composes the view from
explicit binds on an empty tmpfs root, so what is not named is not there, including whatever
the host gains later. The alternative, our own mount namespace with pivot_root, would
re-implement the same steps (mount propagation, /proc, /dev, read-only remounts) in code of
ours that nobody else reviews.

`run_program` runs any command (e.g. a compiled C++ binary); `run_function` runs model-written
Python through _harness.py and returns the function's value as a numeric ndarray.
"""

from __future__ import annotations

import ctypes
import functools
import io
import itertools
import json
import math
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from discover import sealed

TAIL_BYTES = 8192  # of stdout / stderr read back
DISK_POLL_S = 0.25  # how often what a run wrote is measured
MAX_FILES = 10_000  # files and directories one run may create
LOG_CHARS = 2000  # of stderr kept in FunctionResult.log
_MEMORY_PATTERNS = ("MemoryError", "bad_alloc", "Cannot allocate memory", "out of memory")
_HARNESS_EXIT = {0: "ok", 10: "crash", 11: "syntax_error", 12: "memory", 13: "invalid_output"}
_UNSHARE_SIGKILL = "unshare: sigprocmask unblock failed: Invalid argument"
WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")
# Per-run uids/gids far above real accounts: pid-based so that concurrent scorer processes
# never share one (a shared uid would share RLIMIT_NPROC: one fork bomb would starve the rest).
UID_BASE = 1 << 30
_run_counter = itertools.count()
_PR_SET_PDEATHSIG = 1
_PRCTL = getattr(ctypes.CDLL(None), "prctl", None) if sys.platform == "linux" else None


@dataclass
class Limits:
    wall_s: float = 10.0  # wall-clock timeout; whole process tree killed
    cpu_s: float | None = None  # RLIMIT_CPU; default ceil(wall_s) + 1
    # RLIMIT_AS; None sets none (the driver's own is inherited): CUDA reserves far more address
    # space than it touches (tens of GiB of mappings at start-up), so GPU programs need None.
    memory_mb: int | None = 2048
    file_mb: int = 64  # RLIMIT_FSIZE (per file)
    disk_mb: int = 512  # all files it writes together (polled; its directory, /tmp, /dev/shm)
    max_procs: int = 64  # RLIMIT_NPROC (only effective when running as a dropped uid)
    output_mb: int = 64  # max size of a result file read back

    def __post_init__(self) -> None:
        for name in ("wall_s", "file_mb", "disk_mb", "max_procs", "output_mb"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Limits.{name} must be positive, got {getattr(self, name)!r}")
        if self.memory_mb is not None and not self.memory_mb > 0:
            raise ValueError(f"Limits.memory_mb must be positive or None (no address-space "
                             f"limit), got {self.memory_mb!r}")
        if self.cpu_s is not None and not self.cpu_s > 0:
            raise ValueError(f"Limits.cpu_s must be positive or None, got {self.cpu_s!r}")

    @property
    def cpu_seconds(self) -> int:
        return math.ceil(self.cpu_s) if self.cpu_s is not None else math.ceil(self.wall_s) + 1


@dataclass
class RunResult:
    status: str  # "ok" | "timeout" | "memory" | "crash"  (exit 0 -> "ok")
    returncode: int | None  # negative = signal
    stdout: str  # tail
    stderr: str  # tail
    wall_s: float
    outputs: dict[str, bytes]  # requested output files that exist and are <= output_mb
    reason: str = ""  # why the sandbox killed it, if it did


@dataclass
class FunctionResult:
    failure: str | None  # None, or "syntax_error", "crash", "timeout", "memory", "invalid_output"
    value: np.ndarray | None  # what the function returned, as a numeric ndarray
    stdout: str
    stderr: str
    wall_s: float
    log: str  # short human-readable reason + stderr tail, for the archive/prompt


# --- isolation: probed once ------------------------------------------------------------------

def _namespace_args(as_root: bool) -> list[str]:
    # --kill-child: when unshare dies (we SIGKILL it on timeout) its child, the namespace's init,
    # gets SIGKILL, and when init dies the kernel kills every process left in the namespace.
    user = [] if as_root else ["--user", "--map-root-user"]
    return ["unshare", *user, "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]


def _drop_args(uid: int) -> list[str]:
    # Changing uid clears the parent-death signal that `unshare --kill-child` set; set it again.
    death = ["--pdeathsig=KILL"] if _setpriv_has_pdeathsig() else []
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *death]


@functools.cache
def _setpriv_has_pdeathsig() -> bool:  # util-linux >= 2.33
    try:
        return "--pdeathsig" in subprocess.run(["setpriv", "--help"], capture_output=True,
                                               text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False


def _levels() -> list[dict]:
    """The set-ups this machine might offer, strongest first."""
    as_root = os.geteuid() == 0
    have = {tool: shutil.which(tool) is not None for tool in ("bwrap", "unshare", "setpriv")}
    drop = as_root and have["setpriv"]
    levels = []  # (tool, drop_uid)
    if have["bwrap"]:
        levels.append(("bwrap", drop))
    if have["unshare"]:
        levels.append(("unshare", drop))
    if drop:
        levels.append(("", True))
    levels.append(("", False))
    out = []
    for tool, uid_drop in levels:
        iso = {"tool": tool or "none", "sealed": tool == "bwrap", "netns": bool(tool),
               "pidns": bool(tool), "user_ns": bool(tool) and not as_root, "uid_drop": uid_drop}
        flags = "+".join(k for k in ("netns", "pidns", "user_ns", "uid_drop") if iso[k])
        iso["mode"] = ("bwrap+" + flags) if iso["sealed"] else flags or "process_group"
        out.append(iso)
    return out


@functools.cache
def _probe(level: tuple) -> tuple[dict | None, str]:
    """The level (with the sandboxed python's version and notes) if it runs numpy as it claims:
    PID 1 or 2 in a PID namespace, a dropped uid, no sight of a host file when sealed."""
    iso = dict(level)
    with tempfile.NamedTemporaryFile(prefix="discover-probe-") as marker:
        os.chmod(marker.name, 0o644)  # readable by anyone: only a sealed view hides it
        probe = ("import os, sys, numpy; print(os.getpid(), os.getuid(), sys.version.split()[0],"
                 " int(os.path.exists(sys.argv[1])))")
        res = _run(iso, [sys.executable, "-c", probe, marker.name], {}, Limits(wall_s=60), (),
                   None, ("numpy",), ())
    fields = res.stdout.split()
    if (res.status == "ok" and len(fields) == 4 and (fields[0] in ("1", "2") or not iso["pidns"])
            and (not iso["uid_drop"] or fields[1].isdigit() and int(fields[1]) >= UID_BASE)
            and (fields[3] == "0" or not iso["sealed"])):
        ours = sys.version.split()[0]
        notes = [] if fields[2] == ours else [  # e.g. its libpython unreadable to the uid
            f"sandboxed python is {fields[2]}, the driver's {ours}"]
        return {**iso, "python": fields[2], "notes": notes}, ""
    why = res.stderr.strip()[-300:] or res.stdout.strip()[-300:] or res.status
    return None, f"{iso['mode']} refused: {why}"


@functools.cache
def isolation() -> dict:
    """What containment is in effect: the strongest level that runs numpy as it claims."""
    refused = []
    for level in _levels():
        iso, why = _probe(tuple(level.items()))
        if iso is not None:
            return {**iso, "notes": refused + iso["notes"]}
        refused.append(why)
    raise RuntimeError(f"the sandbox cannot run {sys.executable} at all: {refused}")


def available_levels() -> list[dict]:
    """Every level that works on this machine, strongest first (for tests and `doctor`)."""
    return [iso for level in _levels() if (iso := _probe(tuple(level.items()))[0]) is not None]


# --- one run ------------------------------------------------------------------------------------

def run_program(argv: list[str], files: dict[str, bytes], limits: Limits,
                outputs: list[str] = (), stdin: bytes | None = None,
                packages: tuple[str, ...] = (), paths: tuple[str, ...] = (),
                level: dict | None = None) -> RunResult:
    """Write `files` into a fresh directory, run `argv` there under `limits`, return the result.

    argv[0] may name one of `files` (e.g. a compiled binary); it is made executable.
    `outputs` are paths, relative to the run directory, to read back after the run.
    `packages` (Python distributions, with their requirements) and `paths` (host paths or
    globs; /dev/... as devices) are what a sealed program may read beyond the OS and the
    interpreter: an environment's `sandbox_packages` and `sandbox_paths`.
    `level`: one of `available_levels()`; by default `isolation()`, the strongest.
    """
    if not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError(f"argv must be a non-empty list of strings, got {argv!r}")
    for name in [*files, *outputs]:
        _check_relative(name)
    return _run(level or isolation(), list(argv), files, limits, tuple(outputs), stdin,
                tuple(packages), tuple(paths))


def _check_relative(name: str) -> None:
    parts = Path(name).parts
    if not name or Path(name).is_absolute() or ".." in parts:
        raise ValueError(f"sandbox file names must be relative paths inside the run directory "
                         f"without '..', got {name!r}")


def _run(iso: dict, argv: list[str], files: dict[str, bytes], limits: Limits,
         outputs: tuple[str, ...], stdin: bytes | None, packages: tuple[str, ...] = (),
         paths: tuple[str, ...] = ()) -> RunResult:
    uid = UID_BASE + (os.getpid() % (1 << 22)) * 64 + next(_run_counter) % 64 \
        if iso["uid_drop"] else None
    root = tempfile.mkdtemp(prefix="discover-sandbox-")
    try:
        work = os.path.join(root, "work")  # the program's directory; logs stay outside it
        # A sealed program's /tmp and /dev/shm: here, so that the disk limit counts them.
        tmp, shm = os.path.join(root, "tmp"), os.path.join(root, "shm")
        for d in (work, tmp, shm):
            os.mkdir(d)
        for name, data in files.items():
            path = os.path.join(work, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        if argv[0] in files:
            os.chmod(os.path.join(work, argv[0]), 0o755)
            if "/" not in argv[0]:
                argv[0] = "./" + argv[0]  # a file of ours, not a PATH lookup
        if uid is not None:
            os.chmod(root, 0o711)  # traverse only, to reach work/
            for top in (work, tmp, shm):  # and no concurrent run (another uid) can read it
                os.chmod(top, 0o700)
                for dirpath, _, names in os.walk(top):
                    os.chown(dirpath, uid, uid)
                    for n in names:
                        os.chown(os.path.join(dirpath, n), uid, uid)
        inside, extra = work, {}  # the program's directory as it sees it
        if iso["sealed"]:
            view = sealed.view(packages, paths)
            prefix = sealed.bwrap_args(view, work, tmp, shm, setuid=uid is not None)
            inside = sealed.WORK
            if view.pythonpath:
                extra["PYTHONPATH"] = os.pathsep.join(view.pythonpath)
        else:
            prefix = _namespace_args(os.geteuid() == 0) if iso["netns"] else []
        if uid is not None:
            prefix += _drop_args(uid)
        # Nothing from the parent's environment: it may hold secrets.
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": inside, "TMPDIR": inside,
               "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
               "OPENBLAS_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
               **extra}
        nproc = limits.max_procs if uid is not None or os.geteuid() == 0 \
            else _own_tasks() + limits.max_procs  # a shared uid: leave room for the others
        stdin_path = os.path.join(root, "stdin")
        with open(stdin_path, "wb") as f:
            f.write(stdin or b"")
        with open(stdin_path, "rb") as fin, open(os.path.join(root, "stdout"), "wb+") as fout, \
                open(os.path.join(root, "stderr"), "wb+") as ferr:
            start = time.monotonic()
            try:
                proc = subprocess.Popen(
                    prefix + argv, cwd=work, env=env, stdin=fin, stdout=fout, stderr=ferr,
                    start_new_session=True, close_fds=True,
                    preexec_fn=functools.partial(_in_child, _rlimits(limits, nproc),
                                                 os.getpid()))
            except OSError as e:  # e.g. argv[0] does not exist
                return RunResult("crash", None, "", f"cannot start {argv[0]}: {e}",
                                 time.monotonic() - start, {})
            # Sealed, it cannot reach the host's world-writable directories: no need to look.
            disk = functools.partial(_over_disk, (work, tmp, shm),
                                     None if iso["sealed"] else uid, limits.disk_mb << 20)
            returncode, cpu_s, killed = _wait(proc, limits.wall_s, disk)
            wall_s = time.monotonic() - start
            _kill_leftovers(proc.pid, uid)
            stdout, stderr = _tail(fout), _tail(ferr)
        if iso["tool"] == "unshare" and returncode == 1 and \
                stderr.rstrip().endswith(_UNSHARE_SIGKILL):
            # unshare re-raises its child's fatal signal on itself but cannot for SIGKILL.
            returncode, stderr = -signal.SIGKILL, stderr.rstrip()[:-len(_UNSHARE_SIGKILL)]
        if iso["tool"] == "bwrap" and returncode is not None and 128 < returncode <= 128 + 64:
            returncode = 128 - returncode  # bwrap reports its child's death by signal n as 128+n
        got = {name: data for name in outputs
               if (data := _read_output(work, name, limits.output_mb << 20)) is not None}
        # Past its CPU seconds it got SIGXCPU, or SIGKILL at the hard limit: a timeout too.
        if killed and killed != "wall":
            status = "crash"  # over a resource the kernel does not limit for us (disk)
        elif killed or returncode == -signal.SIGXCPU or \
                (returncode != 0 and cpu_s >= limits.cpu_seconds - 0.05):
            status = "timeout"
        elif returncode == 0:
            status = "ok"
        elif any(p in stderr for p in _MEMORY_PATTERNS):
            status = "memory"
        else:
            status = "crash"
        return RunResult(status, returncode, stdout, stderr, wall_s, got,
                         "" if killed in ("", "wall") else killed)
    finally:
        _remove(root)
        if uid is not None and not iso["sealed"]:
            _sweep_world_writable(uid)


def _rlimits(limits: Limits, nproc: int) -> list[tuple[int, tuple[int, int]]]:
    mb, cpu = 1 << 20, limits.cpu_seconds
    wanted = [
        # soft < hard: SIGXCPU first (a namespace init ignores it), SIGKILL one second later.
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_FSIZE, (limits.file_mb * mb,) * 2),
        (resource.RLIMIT_NPROC, (nproc, nproc)),
        (resource.RLIMIT_CORE, (0, 0)),
    ]
    if limits.memory_mb is not None:
        wanted.append((resource.RLIMIT_AS, (limits.memory_mb * mb,) * 2))
    out = []
    for res, (soft, hard) in wanted:  # never above our own hard limit (not root: cannot raise)
        cap = resource.getrlimit(res)[1]
        if cap != resource.RLIM_INFINITY:
            soft, hard = min(soft, cap), min(hard, cap)
        out.append((res, (soft, hard)))
    return out


def _in_child(rlimits: list[tuple[int, tuple[int, int]]], parent: int) -> None:
    """In the child between fork and exec: only plain calls (no imports, no locks).

    Limits, and SIGKILL when the parent dies: a killed scorer or driver must not leave the
    program running (with namespaces, its death tears the whole namespace down)."""
    for res, value in rlimits:
        resource.setrlimit(res, value)
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)


def _wait(proc: subprocess.Popen, wall_s: float,
          over: Callable[[], str] = lambda: "") -> tuple[int, float, str]:
    """Wait up to wall_s, then SIGKILL the process group; kill it earlier when `over()` (polled
    every DISK_POLL_S) names a reason. Returns (returncode, cpu_s, why killed: "", "wall", or
    over()'s reason)."""
    deadline = time.monotonic() + wall_s
    next_poll = time.monotonic() + DISK_POLL_S
    killed, pause = "", 0.001
    while True:
        try:
            pid, status, usage = os.wait4(proc.pid, 0 if killed else os.WNOHANG)
        except ChildProcessError:  # reaped by someone else's SIGCHLD handler: status unknown
            proc.returncode = -signal.SIGKILL if killed else 255
            return proc.returncode, 0.0, killed
        if pid:
            break
        now = time.monotonic()
        if now >= deadline:
            _killpg(proc.pid)
            killed = "wall"
            continue
        if now >= next_poll:
            next_poll = now + DISK_POLL_S
            if reason := over():
                _killpg(proc.pid)
                killed = reason
                continue
        time.sleep(pause)
        pause = min(pause * 2, 0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)  # tell Popen it is reaped
    # wait4 counts the descendants it (and unshare) reaped: the program's CPU time.
    return proc.returncode, usage.ru_utime + usage.ru_stime, killed


def _over_disk(dirs: tuple[str, ...], uid: int | None, max_bytes: int) -> str:
    """Why the run must stop for what it wrote, or "": bytes on disk (or in /dev/shm's memory)
    in its directories and, with a uid of its own, its files in the world-writable ones."""
    used, files, stack = 0, 0, list(dirs)
    if uid is not None:
        for top in WORLD_WRITABLE:
            try:
                stack += [e.path for e in os.scandir(top)
                          if e.stat(follow_symlinks=False).st_uid == uid]
            except OSError:
                continue
    while stack:
        path = stack.pop()
        try:
            st = os.lstat(path)
            used += st.st_blocks * 512
            files += 1
            if stat.S_ISDIR(st.st_mode):
                stack += [e.path for e in os.scandir(path)]
        except OSError:
            continue
        if used > max_bytes:
            return f"wrote more than disk_mb={max_bytes >> 20} MB"
        if files > MAX_FILES:
            return f"created more than {MAX_FILES} files"
    return ""


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_leftovers(pgid: int, uid: int | None) -> None:
    """Kill what may remain: the process group, and with a uid of its own, every process of it."""
    _killpg(pgid)
    if uid is None:
        return
    deadline = time.monotonic() + 5.0
    while (pids := _live_pids_of(uid)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.005)


def _live_pids_of(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        m = re.search(r"^Uid:\s+(\d+)", status, re.M)
        if m and int(m.group(1)) == uid and not re.search(r"^State:\s+[ZX]", status, re.M):
            pids.append(int(entry))
    return pids


def _own_tasks() -> int:
    """Threads and processes of this uid now (RLIMIT_NPROC counts them all)."""
    me, n = os.getuid(), 0
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == me:
                n += len(os.listdir(f"/proc/{entry}/task"))
        except OSError:
            continue
    return n


def _tail(f: io.BufferedRandom) -> str:
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - TAIL_BYTES))
    return f.read(TAIL_BYTES).decode("utf-8", errors="replace")


def _read_output(work: str, name: str, max_bytes: int) -> bytes | None:
    """The file if it is a regular file inside `work` of at most max_bytes; never a symlink."""
    path = os.path.join(work, name)
    if not os.path.realpath(path).startswith(os.path.realpath(work) + os.sep):
        return None  # a symlinked directory pointing elsewhere
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not (st.st_mode & 0o170000 == 0o100000) or st.st_size > max_bytes:
            return None
        return f.read(max_bytes + 1)[:max_bytes]


def _remove(root: str) -> None:
    def make_writable(func, path, _exc):  # not root: a program may chmod its dirs to 000
        os.chmod(os.path.dirname(path), 0o700)
        if os.path.isdir(path):
            os.chmod(path, 0o700)
        func(path)

    try:
        shutil.rmtree(root, onerror=make_writable)
    except OSError:
        shutil.rmtree(root, ignore_errors=True)


def _sweep_world_writable(uid: int) -> None:
    """Remove what the run's uid left in /tmp, /var/tmp and /dev/shm (only it owns them)."""
    for top in WORLD_WRITABLE:
        try:
            entries = list(os.scandir(top))
        except OSError:
            continue
        for e in entries:
            try:
                if e.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if e.is_dir(follow_symlinks=False):
                    shutil.rmtree(e.path, ignore_errors=True)
                else:
                    os.unlink(e.path)
            except OSError:
                pass


# --- Python functions ---------------------------------------------------------------------------

@functools.cache
def _harness_source() -> bytes:
    return Path(__file__).with_name("_harness.py").read_bytes()


def run_function(program: str, function: str, kwargs: dict, limits: Limits,
                 packages: tuple[str, ...] = (), paths: tuple[str, ...] = ()) -> FunctionResult:
    """Run Python `program` in the sandbox and return program.<function>(**kwargs).

    kwargs values: None, bool, int, float, str, lists/dicts of those (sent as JSON), or numpy
    arrays (sent as .npy files, loaded with allow_pickle=False). `packages` and `paths`: what
    the program may read besides numpy (which the harness needs), as for `run_program`.
    """
    if not isinstance(program, str):
        raise TypeError(f"program must be Python source text, got {type(program).__name__}")
    if not function.isidentifier():
        raise ValueError(f"function must be a Python identifier, got {function!r}")
    files = {"main.py": _harness_source(), "program.py": program.encode("utf-8", "replace")}
    plain, arrays = {}, {}
    for name, value in kwargs.items():
        if not (isinstance(name, str) and name.isidentifier()):
            raise ValueError(f"keyword argument names must be identifiers, got {name!r}")
        if isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                raise TypeError(f"argument {name!r}: object arrays cannot be sent to a program")
            buf = io.BytesIO()
            np.save(buf, value, allow_pickle=False)
            arrays[name] = f"arg_{name}.npy"
            files[arrays[name]] = buf.getvalue()
        else:
            plain[name] = value
    try:
        call = json.dumps({"function": function, "kwargs": plain, "arrays": arrays,
                           "max_bytes": limits.output_mb << 20}, default=_json_scalar)
    except (TypeError, ValueError) as e:
        raise TypeError(f"kwargs must be JSON values or numpy arrays: {e}") from e
    files["call.json"] = call.encode()

    res = run_program([sys.executable, "-s", "-B", "main.py"], files, limits,
                      outputs=["status.json", "result.npy"],
                      packages=tuple(dict.fromkeys(("numpy", *packages))), paths=paths)
    failure, reason = _function_outcome(res)
    value = None
    if failure is None:
        value, reason = _load_result(res.outputs.get("result.npy"), limits.output_mb)
        failure = None if value is not None else "invalid_output"
    log = reason if failure is None else f"{failure}: {reason}"
    if res.stderr.strip() and res.stderr.strip() not in reason:
        log += "\n--- stderr (tail) ---\n" + res.stderr[-LOG_CHARS:]
    return FunctionResult(failure, value, res.stdout, res.stderr, res.wall_s, log)


def _json_scalar(o: object) -> object:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _function_outcome(res: RunResult) -> tuple[str | None, str]:
    """The failure kind and a reason, from the run and the harness's status file."""
    if res.status == "timeout":
        return "timeout", f"killed after {res.wall_s:.1f} s (wall-clock or CPU-time limit)"
    if res.reason:
        return "crash", f"killed by the sandbox: {res.reason}"
    reported = {}
    try:
        reported = json.loads(res.outputs.get("status.json", b"{}"))
    except ValueError:
        pass
    status = reported.get("status") if isinstance(reported, dict) else None
    if status not in _HARNESS_EXIT.values():
        status = _HARNESS_EXIT.get(res.returncode) if res.returncode != 0 else None
    message = str(reported.get("message", ""))[-LOG_CHARS:] if isinstance(reported, dict) else ""
    if status == "ok" and res.returncode == 0:
        return None, "ok"
    if status in ("syntax_error", "memory", "invalid_output", "crash"):
        return status, message or f"exit code {res.returncode}"
    if res.status == "memory":
        return "memory", "out of memory"
    if res.returncode == 0:
        return "crash", "the program exited before its function returned"
    return "crash", _describe_exit(res.returncode)


def _describe_exit(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def _load_result(data: bytes | None, output_mb: int) -> tuple[np.ndarray | None, str]:
    if data is None:
        return None, f"result.npy missing or larger than output_mb={output_mb}"
    try:
        value = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as e:  # any malformed file is the program's fault
        return None, f"result.npy is not a readable array: {type(e).__name__}: {e}"
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biufc":
        return None, f"result is not a numeric array (dtype {getattr(value, 'dtype', None)})"
    return value, "ok"
