"""Stopping a run at a safe point: Ctrl-C asks, a second Ctrl-C or SIGTERM insists."""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from discover.config import Config


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a run at a safe point; the message says what is stored."""

    def __init__(self, message: str, resume: str) -> None:
        super().__init__(message)
        self.resume = resume  # the command that continues the run

    def __str__(self) -> str:
        return str(self.args[0])


def resume_command(cfg: Config) -> str:
    return f"discover run {cfg.run.env} --run-dir {shlex.quote(cfg.run.run_dir)} --resume"


@contextmanager
def stop_on_signals() -> Iterator[dict]:
    """First SIGINT: stop after the step in progress. Second SIGINT, or SIGTERM: stop now."""
    stop = {"requested": False}
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers can only be set from the main thread
        return

    def on_sigint(signum: int, frame: object) -> None:
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        print("\ndiscover: stopping after the step in progress is stored "
              "(Ctrl-C again to discard it and stop now)", file=sys.stderr, flush=True)

    def on_sigterm(signum: int, frame: object) -> None:
        stop["requested"] = True
        raise KeyboardInterrupt

    previous = {}
    for sig, handler in ((signal.SIGINT, on_sigint), (signal.SIGTERM, on_sigterm)):
        if signal.getsignal(sig) != signal.SIG_IGN:  # e.g. nohup: leave an ignored signal be
            previous[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


