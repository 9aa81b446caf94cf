"""A learner on its own model copy in a worker thread, so that its step runs while the next
search step samples and scores (run.overlap on the CPU path; docs/METHOD.md, "Overlap").

The in-process learner (peft.py) shares the sampler's model, so its update would change the
weights under a decode in progress. Here the learner gets a second copy of the model (the
embedded one is 135M parameters: about 0.5 GB more) and the sampler keeps a LoRA adapter of the
same shape that only `load_adapter` changes, between steps. torch releases the GIL in its
kernels, and OpenMP sizes each thread's pool on its own, so `threads` (learner.threads) divides
the cores between the two.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from discover.backends.base import Sample
from discover.learners.base import Learner


class BackgroundLearner(Learner):
    """Runs `make()`'s learner in one worker thread: its steps, saves and loads in order, one at
    a time, so a save never reads weights that a step is changing."""

    def __init__(self, make: Callable[[], Learner], threads: int) -> None:
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="discover-learner")

        def made() -> Learner:
            torch.set_num_threads(threads)  # this thread's OpenMP pool, not the sampler's
            return make()

        self.inner = self.worker.submit(made).result()  # load errors surface here

    def submit(self, groups: list[list[Sample]], rewards: list[list[float]],
               copies: list[list[bool]] | None = None) -> Future:
        return self.worker.submit(self.inner.step, groups, rewards, copies)

    def step(self, groups: list[list[Sample]], rewards: list[list[float]],
             copies: list[list[bool]] | None = None) -> dict:
        return self.submit(groups, rewards, copies).result()

    def save(self, path: str | Path) -> None:
        self.worker.submit(self.inner.save, path).result()

    def load(self, path: str | Path) -> None:
        self.worker.submit(self.inner.load, path).result()

    def shutdown(self) -> None:
        self.worker.shutdown(wait=True, cancel_futures=True)  # a step under way finishes
