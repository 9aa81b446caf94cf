"""What the loop calls on a learner (factory.py makes one from the [learner] section)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from discover.backends.base import Sample


class Update(Protocol):
    """A learner step under way: `result()` waits for it and returns its metrics (a
    concurrent.futures.Future is one)."""

    def result(self) -> dict:
        ...


class Done:
    """An update already made (a learner that steps in the caller's thread)."""

    def __init__(self, metrics: dict) -> None:
        self.metrics = metrics

    def result(self) -> dict:
        return self.metrics


class Learner(Protocol):
    """A learner moves `policy.version` on each optimiser step; the loop then saves its state
    under that version and hands the adapter to the samplers (backends.base.publish_adapter).

    `submit` starts a step and returns at once where the learner runs beside the caller (its
    own model copy in a thread or an actor: run.overlap); the default steps before returning."""

    def step(self, groups: list[list[Sample]], rewards: list[list[float]],
             copies: list[list[bool]] | None = None) -> dict:
        """One step on a search step's completions and rewards; returns its metrics."""
        ...

    def submit(self, groups: list[list[Sample]], rewards: list[list[float]],
               copies: list[list[bool]] | None = None) -> Update:
        """`step`, started; its metrics from the returned update's `result()`."""
        return Done(self.step(groups, rewards, copies))

    def save(self, path: str | Path) -> None:
        """Adapter (PEFT format), optimiser state and version into a folder."""
        ...

    def load(self, path: str | Path) -> None:
        """Restore what `save` wrote, version included."""
        ...

    def shutdown(self) -> None:
        """Release what the learner holds apart from the sampler (an actor, its GPU memory)."""
