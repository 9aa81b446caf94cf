"""The null model: no LLM; every child re-runs its parent's program unchanged.

The ablation's floor (scripts/ablate.py): what the starter programs and the search reach with
no model at all, so that a table can say what the model and the learner add. The parent's
program is read from the prompt (the first code block after "Parent program", as
discover/prompt.py renders it), so a program longer than the prompt shows (`max_code_chars`)
is re-run as shown, cut; the shipped starters and the programs the embedded model writes are
far shorter. A parent with no program gives an answer with no code (a `no_code` child).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence

from discover.backends.base import Policy, Sample

_PARENT = re.compile(r"^Parent program \(.*?\):\n```(\S*)\n(.*?)\n```$", re.DOTALL | re.MULTILINE)


class NullPolicy(Policy):
    version = 0

    def __init__(self) -> None:
        self.last_stats = {"tokens": 0, "seconds": 0.0}

    def sample(self, prompts: list[str], n: int, *, max_new_tokens: int, temperature: float,
               seed: int, prefill: str | list[str] = "", stop: Sequence[str] = (),
               on_sample: Callable[[int, int, Sample], None] | None = None
               ) -> list[list[Sample]]:
        t0 = time.monotonic()
        out = []
        for i, p in enumerate(prompts):
            m = _PARENT.search(p)
            text = f"```{m.group(1)}\n{m.group(2)}\n```\n" if m else "(no parent program)"
            out.append([Sample(text=text) for _ in range(n)])
            for k, s in enumerate(out[-1]):
                if on_sample is not None:
                    on_sample(i, k, s)
        self.last_stats = {"tokens": 0, "seconds": time.monotonic() - t0}
        return out
