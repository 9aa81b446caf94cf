"""What this CPU can do natively, read from /proc/cpuinfo: the sampler's engine and the learner
choose their dtype by it."""

from __future__ import annotations

from pathlib import Path


def cpu_has_amx_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU multiplies bf16 natively (AMX-BF16); AVX-512 BF16 alone was slower
    than float32 in vLLM (docs/machines.md)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    return "amx_bf16" in flags.split()
