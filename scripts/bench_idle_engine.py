"""Does an idle vLLM engine burn cores while a step scores and learns? (issue 25)

Starts the vLLM backend (`discover.backends.vllm.VLLMPolicy`, the embedded model, on this
machine's device: vLLM's CPU build on a CPU), samples once so the engine is warm, then, with the
driver asleep, reads the CPU time its processes (the generator actor and every process under it,
vLLM's engine core included) use over an idle window. Then it samples again and times that call
(what waking costs, if anything: against the first warm call). Printed: the engine's CPU use while
idle in cores (1.0 = one core busy the whole time), the machine's load, the CPU model.

    .venv-vllm/bin/python scripts/bench_idle_engine.py --idle-s 20
"""

from __future__ import annotations

import argparse
import os
import time

import psutil

from discover.doctor import cpu_model

PROMPTS = ["Write a Python function that returns the sum of a list."]


def engine_processes() -> list[psutil.Process]:
    """The generator actor's process (Ray names it ray::VLLMGenerator) and all under it."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if any("VLLMGenerator" in part for part in p.info["cmdline"] or []):
            found += [p, *p.children(recursive=True)]
    return found


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def timed_sample(policy, seed: int) -> float:
    t0 = time.monotonic()
    policy.sample(PROMPTS, 2, max_new_tokens=32, temperature=1.0, seed=seed)
    return time.monotonic() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--idle-s", type=float, default=20.0)
    args = p.parse_args()

    import ray

    from discover.backends.vllm import VLLMPolicy
    from discover.model.store import resolve_model
    from discover.scoring import start_ray

    start_ray(num_cpus=os.cpu_count() or 1)
    policy = VLLMPolicy(str(resolve_model("smollm2")), gpus=0.0, gpu_memory_utilization=0.3)
    try:
        first = timed_sample(policy, 0)
        warm = timed_sample(policy, 1)
        procs = engine_processes()
        if not procs:
            raise SystemExit("found no VLLMGenerator process to watch")
        c0, t0 = cpu_seconds(procs), time.monotonic()
        time.sleep(args.idle_s)
        used, wall = cpu_seconds(procs) - c0, time.monotonic() - t0
        after = timed_sample(policy, 2)
    finally:
        policy.shutdown()
        ray.shutdown()
    print(f"{cpu_model()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}; "
          f"{len(procs)} engine processes watched")
    print(f"idle engine: {used:.2f} CPU s in {wall:.1f} s = {used / wall:.2f} cores busy")
    print(f"sampling (2 x 32 tokens): first {first:.2f} s, warm {warm:.2f} s, after the idle "
          f"window {after:.2f} s ({after / warm:.2f}x warm)")


if __name__ == "__main__":
    main()
