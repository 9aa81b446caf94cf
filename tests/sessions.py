"""Processes of a session (a run started with start_new_session=True), for tests that kill one
as a crash or `kill -9` would. Used by test_crash.py, test_ui.py and test_vllm.py."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def session_pids(sid: int) -> list[int]:
    """Live (not zombie) processes of a session."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] not in "ZX":
            found.append(int(entry))
    return found


def kill_session(sid: int, timeout: float = 10) -> list[int]:
    """SIGKILL every process of a session until none is left or `timeout` passes; returns those
    still alive."""
    deadline = time.monotonic() + timeout
    while (alive := session_pids(sid)) and time.monotonic() < deadline:
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    return session_pids(sid)
