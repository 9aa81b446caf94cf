"""The sampling interface every backend implements: text, token ids and sampling log-probs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class Sample:
    """One completion of one prompt."""

    text: str
    prompt_ids: list[int] = field(default_factory=list)
    completion_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)  # per completion token, as sampled
    version: int = 0  # policy (adapter) version that produced it


class Policy(Protocol):
    version: int

    def sample(self, prompts: list[str], n: int, *, max_new_tokens: int, temperature: float,
               seed: int) -> list[list[Sample]]:
        """n completions for each prompt (the prompt is a user message; chat template applied)."""
        ...
