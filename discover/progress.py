"""Live progress of a run: one line per finished step (a bar redrawn in place on a terminal)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field


@dataclass
class StepReport:
    """What the loop reports after each stored step (`search.run`'s `on_step`)."""

    step: int
    steps: int
    best_score: float | None
    valid: int
    total: int
    tokens: int
    seconds: dict[str, float] = field(default_factory=dict)  # generate, score, learn
    learner: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # the step's line of metrics.jsonl


class Progress:
    def __init__(self, env_name: str, direction: str, stream=None) -> None:
        self.env_name = env_name
        self.direction = direction
        self.stream = stream or sys.stderr
        self.t0 = time.monotonic()
        self.valid = 0
        self.total = 0

    def __call__(self, r: StepReport) -> None:
        self.valid += r.valid
        self.total += r.total
        done = r.step + 1
        width = 20
        filled = int(width * done / max(1, r.steps))
        bar = "#" * filled + "." * (width - filled)
        gen = r.seconds.get("generate", 0.0)
        evals = r.total / max(1e-9, r.seconds.get("score", 0.0))
        best = "none yet" if r.best_score is None else f"{r.best_score:.10g}"
        step_s = sum(r.seconds.values())
        rate = r.metrics.get("samples_per_hour", 3600 * r.total / max(1e-9, step_s))
        line = (f"[{bar}] step {done}/{r.steps} | best {best} ({self.direction}) | "
                f"{rate:.0f} samples/h | "
                f"valid {r.valid}/{r.total} (run {100 * self.valid / max(1, self.total):.0f}%) | "
                f"{r.tokens / max(1e-9, gen):.0f} tok/s | {evals:.1f} eval/s | "
                f"gen {gen:.0f}s score {r.seconds.get('score', 0):.0f}s "
                f"learn {r.seconds.get('learn', 0):.0f}s | {time.monotonic() - self.t0:.0f}s")
        if r.learner and "loss" in r.learner:
            line += f" | loss {r.learner['loss']:.3g} beta {r.learner.get('beta', 0):.3g}"
            if "policy_kl" in r.learner:  # how far the model moved: 0 means it learnt nothing
                line += (f" | policy KL {r.learner['policy_kl']:.2g} "
                         f"dlogp {r.learner['logp_change']:.2g}")
        print(line, file=self.stream, flush=True)
