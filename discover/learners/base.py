"""What the loop calls on a learner, and the factory that makes one from the [learner] section."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from discover.backends.base import Policy, Sample
from discover.config import Config


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


def make_learner(cfg: Config, policy: Policy) -> Learner | None:
    """The learner the [learner] section names; None for method "none" (no learning)."""
    if cfg.learner.method == "none":
        return None
    lc, temperature = cfg.learner, cfg.policy.temperature  # (the sampler's, for the ratio)
    if cfg.learner_backend() == "trl":  # its own model copy, in a Ray actor on lc.gpus GPUs
        from discover.learners.trl import RemoteLearner
        from discover.model.store import resolve_model

        return RemoteLearner(policy, str(resolve_model(cfg.policy.model)), lc,
                             temperature=temperature, seed=cfg.run.seed, gpus=lc.gpus)
    from discover.learners.peft import PeftLearner

    return PeftLearner(policy, lc, temperature=temperature, seed=cfg.run.seed)
