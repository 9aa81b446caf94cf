"""The sampling interface every backend implements (text, token ids and sampling log-probs) and
the helpers the backends share; factory.py makes one from the [policy] section."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from discover.rundir import RunDir


class BackendError(RuntimeError):
    """A sampling backend failed (an endpoint unreachable or refusing); the message says why."""


@dataclass
class Sample:
    """One completion of one prompt."""

    text: str
    prompt_ids: list[int] = field(default_factory=list)
    completion_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)  # per completion token, as sampled
    version: int = 0  # policy (adapter) version that produced it
    prefill: str = ""  # the opening of the assistant's turn given to the model (prompt tokens)

    @property
    def response(self) -> str:
        """The whole answer as the model's turn reads: the prefill, then the completion."""
        return self.prefill + self.text


class Policy(Protocol):
    """Everything the search loop calls on a backend. A backend subclasses this and keeps the
    defaults of what it has no use for (e.g. a backend that shares its model with the learner
    loads no adapter)."""

    version: int  # the adapter version it samples with; 0 is the base model
    # what the last `sample` call cost: "tokens" and "seconds"; an HTTP endpoint (which returns
    # no token ids) adds "requests" and its usage counts ("completion_tokens", ...)
    last_stats: dict

    def sample(self, prompts: list[str], n: int, *, max_new_tokens: int, temperature: float,
               seed: int, prefill: str | list[str] = "", stop: Sequence[str] = (),
               on_sample: Callable[[int, int, Sample], None] | None = None
               ) -> list[list[Sample]]:
        """n completions for each prompt (the prompt is a user message; chat template applied).

        `prefill` (one for every prompt, or a list with one per prompt) opens the assistant's
        turn, e.g. with the start of a code block: its tokens are prompt tokens (no log-prob, no
        loss), `Sample.text` is the completion after it and `Sample.prefill` what was actually
        prefilled ("" where a backend cannot prefill).
        `stop` (texts) ends a completion where its text first holds one of them at the start of
        a line (e.g. the fence that closes the code block a prefill opened); where the backend
        keeps it, it stays in the text and its tokens in the completion.
        `on_sample(prompt index, sample index, sample)` is called once per completion as soon
        as the backend has it (e.g. to start scoring it); a backend may call it only at the end."""
        ...

    def load_adapter(self, path: str | Path, version: int) -> None:
        """Sample with the adapter saved at `path` as `version` from the next call on."""

    def shutdown(self) -> None:
        """Release what the backend holds (actors, GPU memory, connections)."""


def check_sample_args(prompts: list[str], n: int, max_new_tokens: int, temperature: float, *,
                      greedy_at_zero: bool = False) -> None:
    """What every backend's `sample` refuses before it starts. Temperature must be positive
    where the backend divides the logits by it; `greedy_at_zero`: it may be 0 (an endpoint
    then samples greedily)."""
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise TypeError("prompts must be a list of strings")
    ok, bound = (temperature >= 0, ">= 0") if greedy_at_zero else (temperature > 0, "> 0")
    if n < 1 or max_new_tokens < 1 or not ok:
        raise ValueError(f"sample needs n >= 1, max_new_tokens >= 1 and temperature {bound}; got "
                         f"n={n}, max_new_tokens={max_new_tokens}, temperature={temperature}")


def stopped(text: str, stop: Sequence[str]) -> bool:
    """Whether a completion holds one of the `stop` texts at the start of a line (the completion
    starts one: a prefill ends with a newline)."""
    return any(f"\n{s}" in f"\n{text}" for s in stop if s)


def chat_ids(tokenizer, prompt: str, system_prompt: str | None = None,
             prefill: str = "") -> list[int]:
    """Token ids of a user message under the chat template, ready for the assistant's turn
    (opened with `prefill`); every backend that takes token prompts encodes with this."""
    messages = [{"role": "user", "content": prompt}]
    if system_prompt is not None:
        messages.insert(0, {"role": "system", "content": system_prompt})
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text + prefill, add_special_tokens=False)["input_ids"]


def prefills(prefill: str | list[str], count: int) -> list[str]:
    """One prefill per prompt, from either form `Policy.sample` accepts."""
    if isinstance(prefill, str):
        return [prefill] * count
    if len(prefill) != count or not all(isinstance(f, str) for f in prefill):
        raise ValueError(f"prefill must be a string or one string per prompt ({count}); "
                         f"got {prefill!r}")
    return list(prefill)


def prompt_seed(seed: int, index: int) -> int:
    """A 31-bit seed per (call seed, prompt index); vLLM adds the sample index to it."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 33


def publish_adapter(policy: Policy, rd: RunDir, version: int) -> None:
    """Hand the saved adapter of the learner's `version` to the policy's samplers.

    Only samplers with their own model copy (vLLM; HF with run.overlap) load anything: on CPU
    the sampler and the learner otherwise share one model, already at `version`.
    """
    if version > 0:
        policy.load_adapter(rd.adapter(version), version)
