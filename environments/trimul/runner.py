"""The TriMul harness, run in the sandbox as main.py (environments/trimul/env.py writes its job).

It reads job.json (and deletes it), imports the candidate (program.py), checks `custom_kernel` on
every correctness configuration against reference.py, times it on the benchmark configurations
(CUDA only), and writes result.json and outputs.npz at the very end. The result carries the job's
nonce, so the driver can tell it from a file the program wrote itself. The driver trusts only
the raw timings from this file: it recomputes every statistic and the score, and re-checks the
saved outputs against its own reference.

Timing, per benchmark configuration (as the public TriMul harness does it):
  warm-up calls first (the first one checked), then repeats: fresh inputs from a new seed, the
  reference computed, all outside the timed region; synchronise; a CUDA event pair around ONE
  call; synchronise; the output checked. Stop after min_repeats once the standard error of the
  mean is below rel_err of the mean, or at max_repeats, max_kernel_s of measured time, or
  max_wall_s of wall-clock time for this configuration.

Standard library, numpy and torch only: this file runs in the candidate's interpreter.
"""

import json
import math
import os
import sys
import time
import traceback

EXIT = {"ok": 0, "crash": 10, "syntax_error": 11, "memory": 12, "invalid_output": 13,
        "invalid_artifact": 14, "harness_error": 15}
MEMORY_PATTERNS = ("out of memory", "Cannot allocate memory", "can't allocate memory")
MESSAGE_CHARS = 4000


class Failed(Exception):
    """A failure of the candidate: kind (a failure kind of the environment) and message."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind, self.message = kind, message


def main():
    with open("job.json") as f:
        job = json.load(f)
    os.remove("job.json")  # the nonce is not left on disk for the program to find
    for key, value in job["env"].items():  # before torch (and triton) read them
        os.environ[key] = value
    nonce = job["nonce"]
    result = {"nonce": nonce, "status": "harness_error", "stage": "starting", "message": "",
              "tests": [], "benchmarks": []}
    saved = {}
    # Bound before the program runs: it may monkeypatch json, os, numpy or builtins.
    dump, fopen, exit_now = json.dump, open, os._exit

    def finish(status, message=""):
        result["status"], result["message"] = status, message[-MESSAGE_CHARS:]
        try:
            if status == "ok" and saved:
                savez("outputs.npz", **saved)
            with fopen("result.json", "w") as f:
                dump(result, f)
        except BaseException:  # noqa: B036 - a full disk or the file-size limit: exit code says it
            pass
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: B036
                pass
        exit_now(EXIT[status])

    result["stage"] = "importing torch"
    try:
        import numpy as np
        import reference
        import torch
    except BaseException as e:  # noqa: B036
        finish("harness_error", f"cannot import torch or the reference: {describe(e)}")
    savez = np.savez
    device = job["device"]
    if device == "cuda" and not torch.cuda.is_available():
        finish("harness_error", "no CUDA device is visible inside the sandbox")
    generate, ref_kernel = reference.generate_input, reference.reference_kernel
    check, max_err, mix = reference.check_output, reference.max_abs_error, reference.mix
    result["torch"] = torch.__version__
    result["device_name"] = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    event = torch.cuda.Event if device == "cuda" else WallEvent
    perf = time.perf_counter

    def data_for(spec, seed):
        return generate(spec["n"], spec["b"], spec["c"], spec["masked"], spec["dist"], seed,
                        device=device)

    kernel = None
    try:
        result["stage"] = "compiling program.py"
        with fopen("program.py", "rb") as f:
            source = f.read()
        try:
            code = compile(source, "program.py", "exec")
        except (SyntaxError, ValueError) as e:  # ValueError: null bytes in the source
            message = "".join(traceback.format_exception_only(type(e), e))
            raise Failed("syntax_error", message) from None
        import types

        module = types.ModuleType("program")
        module.__file__ = os.path.abspath("program.py")
        sys.modules["program"] = module
        result["stage"] = "importing the program"
        exec(code, module.__dict__)
        kernel = module.__dict__.get("custom_kernel")
        if not callable(kernel):
            raise Failed("crash", "the program defines no function custom_kernel (expected "
                                  "`def custom_kernel(data)` at top level)")

        def run_checked(spec, seed, where):
            data = data_for(spec, seed)
            expected = ref_kernel(data)
            sync()
            out = kernel(data)
            sync()
            bad = check(out, expected)
            if bad:
                raise Failed(bad[0], f"{spec['label']} ({where}): {bad[1]}")
            return out, expected

        tests = job["tests"]
        for i, spec in enumerate(tests):
            result["stage"] = f"correctness configuration {i + 1} of {len(tests)}"
            out, expected = run_checked(spec, spec["seed"], result["stage"])
            result["tests"].append({"label": spec["label"], "max_abs_err":
                                    max_err(out, expected)})
            if i in job["save"]:
                saved[f"t{i}"] = out.detach().cpu().numpy()
            del out, expected

        t = job["timing"]
        for i, spec in enumerate(job["benchmarks"]):
            result["stage"] = f"benchmark {i + 1} of {len(job['benchmarks'])}"
            for w in range(t["warmup"]):  # compiles and autotunes for this shape, untimed
                if w == 0:
                    run_checked(spec, mix(spec["seed"], w), f"warm-up, {result['stage']}")
                else:
                    kernel(data_for(spec, mix(spec["seed"], w)))
            sync()
            times, start_wall = [], perf()
            begin, end = event(enable_timing=True), event(enable_timing=True)
            while True:
                repeat = len(times)
                data = data_for(spec, mix(spec["seed"], 1000 + repeat))  # fresh inputs
                expected = ref_kernel(data)
                sync()
                begin.record()
                out = kernel(data)
                end.record()
                sync()
                times.append(begin.elapsed_time(end) * 1000.0)  # ms -> µs
                bad = check(out, expected)
                if bad:
                    raise Failed(bad[0], f"{spec['label']} (repeat {repeat + 1}, "
                                         f"{result['stage']}): {bad[1]}")
                del data, expected, out
                if enough(times, t, perf() - start_wall):
                    break
            result["benchmarks"].append({"label": spec["label"], "times_us": times,
                                         "wall_s": perf() - start_wall})
    except Failed as e:
        finish(e.kind, e.message)
    except BaseException as e:  # noqa: B036 - SystemExit and KeyboardInterrupt are failures too
        finish(*classify(e, result["stage"], device))
    result["stage"] = "done"
    finish("ok")


class WallEvent:
    """The CPU stand-in for torch.cuda.Event (host wall clock, same interface). The environment
    times nothing on CPU; this lets the tests run the benchmark loop without a GPU."""

    def __init__(self, enable_timing=True):
        self.t = None

    def record(self):
        self.t = time.perf_counter()

    def elapsed_time(self, other):
        return (other.t - self.t) * 1000.0  # ms, like CUDA events


def enough(times, t, wall_s):
    """Whether the repeats of one benchmark can stop (see the module docstring)."""
    n = len(times)
    if n < t["min_repeats"]:
        return False
    mean = sum(times) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in times) / (n - 1))
    return (std / math.sqrt(n) < t["rel_err"] * mean or n >= t["max_repeats"]
            or sum(times) / 1e6 > t["max_kernel_s"] or wall_s > t["max_wall_s"])


def classify(e, stage, device):
    """(failure kind, message) for an exception raised by the program or while running it."""
    text = f"{type(e).__name__} while {stage}\n{describe(e)}"
    oom = getattr(sys.modules.get("torch"), "OutOfMemoryError", MemoryError)
    if isinstance(e, (MemoryError, oom)) or any(p in str(e) for p in MEMORY_PATTERNS):
        return "memory", text
    if isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] == "triton":
        return "crash", ("triton is not installed in this environment, so Triton kernels cannot "
                         "run here (on a CPU-only machine they would run through Triton's "
                         "interpreter, TRITON_INTERPRET=1, once triton is installed); write the "
                         f"kernel in PyTorch instead.\n{text}")
    if device == "cpu" and ("CUDA" in str(e) or "NVIDIA" in str(e)):
        return "crash", ("no CUDA device: this run checks correctness on CPU tensors, so use the "
                         f"input's device rather than 'cuda'.\n{text}")
    return "crash", text


def describe(e):
    return "".join(traceback.format_exception(type(e), e, e.__traceback__))


if __name__ == "__main__":
    main()
