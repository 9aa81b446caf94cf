"""A learnable toy: return up to 10 digits; the score is their sum (max 90).

Chosen so that the embedded 135M model succeeds on some attempts but not most at the start,
and successes are graded (any list of numbers earns partial credit), so a learner has a signal
to climb within minutes. Every prompt shows a working program to improve on: for a parent that
came from a program, that program; for the initial state, the one-line program that returns its
artefact. Without one the 135M model almost never writes a valid `solve()` (0 of 16 at
temperature 1, against about 1 in 5 with it); with it, it mostly fails by truncating or
garbling its copy, which is what the learner can fix.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from discover.environment import (
    Environment,
    Evaluation,
    InvalidArtifact,
    check_positive,
    refuse_unknown,
)
from discover.sandbox import Limits, run_function

MAX_LEN = 10
MAX_DIGIT = 9

STATEMENT = f"""Write a Python function `solve()` with no arguments that returns a list of integers.
Only the first {MAX_LEN} numbers count, and each number counts as a digit between 0 and {MAX_DIGIT}
(smaller numbers count as 0, larger as {MAX_DIGIT}). The score is the sum of the counted digits.
Higher is better; the best possible score is {MAX_LEN * MAX_DIGIT}."""


class ToyEnvironment(Environment):
    name = "toy"
    direction = "max"
    language = "python"
    time_budget_s = 2.0
    target = float(MAX_LEN * MAX_DIGIT)
    entry = "solve()"

    def __init__(self, time_budget_s: float = 2.0, **options: Any) -> None:
        refuse_unknown("toy", options, ("time_budget_s",))
        check_positive("time_budget_s", time_budget_s)
        super().__init__(time_budget_s=time_budget_s)
        self.time_budget_s = float(time_budget_s)

    @property
    def failure_reward(self) -> float:
        return -10.0  # below any valid score (>= 0); small so advantages keep a sane scale

    def statement(self) -> str:
        return STATEMENT

    def target_text(self) -> str:
        return f"score {self.target:g} (the best possible)"

    def format_score(self, score: float | None) -> str:
        return "none" if score is None else f"{score:g}"

    def program_of(self, artifact: Any) -> str:
        """The toy's artefact is a list, and the one-line program that returns it is the
        program an initial state shows (the toy's starter)."""
        return starter_program(artifact)

    def initial_artifacts(self, count: int, seed: int, init_file: str | None = None) -> list:
        if init_file:
            return [self.load_artifact(init_file)]
        return [[1, 2, 3]]  # one weak start: the task needs no seed solution

    def score_artifact(self, artifact: Any) -> float:
        try:
            x = np.asarray(artifact, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as e:
            raise InvalidArtifact(f"not a list of numbers: {e}") from e
        if x.size == 0:
            raise InvalidArtifact("empty list")
        if not np.all(np.isfinite(x[:MAX_LEN])):
            raise InvalidArtifact("the counted numbers must be finite")
        return float(np.clip(np.floor(x[:MAX_LEN]), 0, MAX_DIGIT).sum())

    def draw(self, artifact: Any, ax: Any, metrics: dict | None = None) -> bool:
        """The counted digits as bars."""
        score = self.score_artifact(artifact)
        x = np.asarray(artifact, dtype=np.float64).reshape(-1)[:MAX_LEN]
        digits = np.clip(np.floor(x), 0, MAX_DIGIT)
        bars = ax.bar(np.arange(len(digits)), digits)
        ax.bar_label(bars, fmt="%g")
        ax.set(xlim=(-0.6, MAX_LEN - 0.4), xticks=range(MAX_LEN), ylim=(0, MAX_DIGIT + 0.8),
               xlabel="position (the first ten numbers count)", ylabel="counted digit",
               title=f"digits, sum = {score:g} of {MAX_LEN * MAX_DIGIT}")
        return True

    def evaluate(self, program: str, parent_artifact: Any, seed: int) -> Evaluation:
        res = run_function(program, "solve", {}, Limits(wall_s=self.time_budget_s, memory_mb=1024),
                           self.sandbox_packages, self.sandbox_paths)
        if res.failure:
            return self.failed(res.failure, res.log)
        try:
            score = self.score_artifact(res.value)
        except InvalidArtifact as e:
            return self.failed("invalid_artifact", str(e))
        kept = np.asarray(res.value, dtype=np.float64).reshape(-1)[:MAX_LEN].tolist()
        return Evaluation(ok=True, score=score, reward=score, artifact=kept, log=res.stdout[-300:])


def starter_program(artifact: Any) -> str:
    """The one-line program that returns `artifact`'s counted numbers (the initial state has no
    program, and the numbers past the first ten do not count)."""
    x = np.asarray(artifact, dtype=np.float64).reshape(-1)[:MAX_LEN]
    numbers = [int(v) if v.is_integer() else float(v) for v in x]
    return f"def solve():\n    return {numbers!r}\n"
