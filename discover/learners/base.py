"""What the loop calls on a learner (factory.py makes one from the [learner] section)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from discover.backends.base import Sample


class Learner(Protocol):
    """A learner moves `policy.version` on each optimiser step; the loop then saves its state
    under that version and hands the adapter to the samplers (backends.base.publish_adapter)."""

    def step(self, groups: list[list[Sample]], rewards: list[list[float]],
             copies: list[list[bool]] | None = None) -> dict:
        """One step on a search step's completions and rewards; returns its metrics."""
        ...

    def save(self, path: str | Path) -> None:
        """Adapter (PEFT format), optimiser state and version into a folder."""
        ...

    def load(self, path: str | Path) -> None:
        """Restore what `save` wrote, version included."""
        ...

    def shutdown(self) -> None:
        """Release what the learner holds apart from the sampler (an actor, its GPU memory)."""
