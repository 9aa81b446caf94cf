"""Every core of this machine kept busy while a block runs (spinning processes, killed on the
way out): what a loaded machine does to a program that reads the clock."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator


@contextlib.contextmanager
def busy_cores(n: int | None = None) -> Iterator[None]:
    """`n` processes spinning `while True: pass` (one per core by default)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
             for _ in range(n or os.cpu_count() or 2)]
    try:
        time.sleep(0.3)  # let them start spinning
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
