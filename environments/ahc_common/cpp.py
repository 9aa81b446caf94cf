"""Compile and run a C++ program inside the sandbox.

Compilation runs in the sandbox too (a compiler fed hostile source is untrusted work: includes
of /dev/zero, template bombs): one sandbox call writes the binary, which comes back as an output
file. Each test case is then one more sandbox call running that binary with the case on stdin.
Compiling once and running per case, rather than compile+run per case, pays the compiler (2-5
s) once per candidate instead of once per case.

The program's stdout goes to a file, not the sandbox's stdout tail (8 KiB): an AHC039 answer
can be larger than that.
"""

from __future__ import annotations

import hashlib
import signal
from collections import OrderedDict
from dataclasses import dataclass

from discover.sandbox import Limits, run_program
from environments.ahc_common.tester_parse import decode

CXX = ["g++", "-std=gnu++20", "-O2"]
SOURCE, BINARY, ANSWER = "main.cpp", "prog", "out.txt"
# The binary comes back without its execute bit; the shell restores it and runs the program as
# its child, not by exec: the first process of the sandbox's PID namespace ignores SIGXCPU and
# SIGABRT, so a program in that place would overrun its CPU seconds until the hard limit, and
# abort() would show up as SIGSEGV. The shell reports a child's death by signal n as 128 + n.
# "$@" hands the program its own arguments (its seed), each one word whatever it holds.
RUN_ARGV = ["/bin/sh", "-c", f'chmod 700 {BINARY} && ./{BINARY} "$@" > {ANSWER}', "sh"]
COMPILE_MEMORY_MB = 4096  # cc1plus maps far more address space than it touches
LOG_CHARS = 1500
BINARY_CACHE = 16


@dataclass
class Compiled:
    binary: bytes | None  # None when compilation failed
    failure: str | None  # None, "syntax_error" or "timeout"
    log: str  # compiler diagnostics (tail)
    wall_s: float


@dataclass
class CaseRun:
    status: str  # "ok" | "timeout" | "memory" | "crash" (discover.sandbox.RunResult.status)
    raw: bytes  # the program's stdout
    stderr: str  # tail
    reason: str  # why it failed, in words ("" when ok)
    wall_s: float

    @property
    def output(self) -> str:
        """stdout as text; InvalidArtifact (a wrong answer) if it is not strict UTF-8."""
        return decode(self.raw)


_cache: OrderedDict[str, bytes] = OrderedDict()  # sha256 of the source -> binary


def compile_cpp(source: str, timeout_s: float = 60.0, paths: tuple[str, ...] = ()) -> Compiled:
    """g++ -std=gnu++20 -O2 in the sandbox; the binary of a source seen before comes cached.
    Sealed, the compiler sees the OS (its headers and libraries), its directory and `paths`
    (the environment's sandbox_paths) only: an #include of any other host file fails."""
    key = hashlib.sha256(repr((source, paths)).encode()).hexdigest()
    if key in _cache:
        _cache.move_to_end(key)
        return Compiled(_cache[key], None, "", 0.0)
    limits = Limits(wall_s=timeout_s, cpu_s=timeout_s, memory_mb=COMPILE_MEMORY_MB)
    res = run_program([*CXX, "-o", BINARY, SOURCE], {SOURCE: source.encode()}, limits,
                      outputs=[BINARY], paths=paths)
    diagnostics = res.stderr.strip()[-LOG_CHARS:]
    if res.status == "timeout":
        return Compiled(None, "timeout", f"compilation exceeded {timeout_s:g} s\n{diagnostics}",
                        res.wall_s)
    binary = res.outputs.get(BINARY)
    if res.status != "ok" or binary is None:
        return Compiled(None, "syntax_error", f"compilation failed:\n{diagnostics}", res.wall_s)
    _cache[key] = binary
    while len(_cache) > BINARY_CACHE:
        _cache.popitem(last=False)
    return Compiled(binary, None, diagnostics, res.wall_s)


def run_binary(binary: bytes, stdin: bytes, cpu_s: float = 2.0, memory_mb: int = 1024,
               wall_s: float | None = None, paths: tuple[str, ...] = (),
               args: tuple[str, ...] = ()) -> CaseRun:
    """Run a compiled program on one input, with `args` as its command-line arguments; the
    limits are the contest's (CPU seconds)."""
    # Wall clock only catches a program that sleeps or blocks; CPU time is the contest's limit.
    limits = Limits(wall_s=wall_s or 3 * cpu_s + 2, cpu_s=cpu_s, memory_mb=memory_mb)
    res = run_program([*RUN_ARGV, *args], {BINARY: binary}, limits, outputs=[ANSWER], stdin=stdin,
                      paths=paths)
    return CaseRun(res.status, res.outputs.get(ANSWER, b""), res.stderr[-LOG_CHARS:],
                   _reason(res.status, res.returncode, cpu_s, memory_mb, limits.wall_s),
                   res.wall_s)


def _reason(status: str, returncode: int | None, cpu_s: float, memory_mb: int,
            wall_s: float) -> str:
    if status == "ok":
        return ""
    if status == "timeout":
        return f"time limit exceeded ({cpu_s:g} s CPU, or {wall_s:g} s wall clock)"
    if status == "memory":
        return f"memory limit exceeded ({memory_mb} MiB)"
    signum = None if returncode is None else -returncode if returncode < 0 \
        else returncode - 128 if returncode > 128 else None
    if signum is not None:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        hint = " (output file too large)" if name == "SIGXFSZ" else ""
        return f"runtime error: killed by {name}{hint}"
    return f"runtime error: exit code {returncode}"
