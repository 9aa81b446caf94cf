"""The autocorrelation environments: AC1 (minimise the bound) and AC2 (maximise C).

Both take a non-negative sequence from solve(parent, iters, seed); they differ only in the
functional (scoring.py), the direction, the record and the prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from discover import arrays
from discover.environment import (
    Environment,
    Evaluation,
    InvalidArtifact,
    check_positive,
    refuse_unknown,
)
from environments.autocorrelation import scoring

ARTIFACT_KEYS = ("sequence", "values", "heights", "artifact")  # accepted wrappers of a list
INITIAL_N = 600
HERE = Path(__file__).parent


class AutocorrelationEnvironment(Environment):
    """What AC1 and AC2 share; a subclass sets the class attributes and `score_values`."""

    language = "python"
    time_budget_s = 10.0
    cpu_slots = 1
    entry = "solve(parent, iters, seed)"
    max_code_chars = 2000  # the embedded model has a small context: keep prompts < ~1500 tokens
    prompt_file: ClassVar[str] = ""
    starter_file: ClassVar[str] = ""
    # The work a program is handed as `iters` (a subclass sets it; arrays.iterations_option):
    # the starter makes this many moves in about 0.8 s on an idle core (AMD EPYC).
    iterations: ClassVar[int] = 0

    def __init__(self, time_budget_s: float = 10.0, memory_mb: int = 2048,
                 iterations: int | None = None, **options: Any) -> None:
        refuse_unknown(self.name, options, ("time_budget_s", "memory_mb", "iterations"))
        check_positive("time_budget_s", time_budget_s)
        iterations = arrays.iterations_option(iterations, self.iterations)
        super().__init__(time_budget_s=time_budget_s, memory_mb=memory_mb, iterations=iterations)
        self.time_budget_s = float(time_budget_s)
        self.memory_mb = int(memory_mb)
        self.iterations = iterations
        self._statement = (HERE / self.prompt_file).read_text().strip().format(
            time_budget_s=self.time_budget_s)
        self._starter = (HERE / self.starter_file).read_text()

    def score_values(self, values: Any) -> float:
        raise NotImplementedError

    # --- what the model sees -------------------------------------------------
    def statement(self) -> str:
        return self._statement

    def handoff(self, artifact: Any) -> str:
        n = arrays.length(artifact)
        handed = f"a numpy array of n={n} values" if n else "None"
        return f"Your solve() receives the parent's sequence as `parent` ({handed})."

    def summarize(self, artifact: Any) -> str:
        return f"a starting sequence of n={arrays.length(artifact)} values"

    def starter_program(self) -> str:
        """Random local moves on the heights that keep improvements (the editable block,
        `propose`, says which moves)."""
        return self._starter

    # --- the search's starting points ----------------------------------------
    def initial_artifacts(self, count: int, seed: int, init_file: str | None = None) -> list:
        """`count` random sequences uniform in [0, 1] (n=600), or the one in `init_file`."""
        if init_file:
            values = self.load_artifact(init_file)
            try:
                scoring.sequence(values)
            except InvalidArtifact as e:
                raise InvalidArtifact(f"initial construction {init_file} is invalid: {e}") from e
            return [np.asarray(values, dtype=np.float64).tolist()]
        rng = np.random.default_rng(seed)
        return [rng.uniform(0.0, 1.0, INITIAL_N).tolist() for _ in range(max(1, count))]

    def draw(self, artifact: Any, ax: Any, metrics: dict | None = None) -> bool:
        """The sequence as a step function, with its score."""
        score = self.score_artifact(artifact)
        f = np.asarray(arrays.unwrap(artifact, ARTIFACT_KEYS), dtype=np.float64)
        ax.stairs(f, np.arange(len(f) + 1), fill=True, alpha=0.35)
        ax.set(xlim=(0, len(f)), xlabel="index", ylabel="value",
               title=f"sequence, n = {len(f)}, {self.score_name} = {score:.10g}")
        return True

    # --- scoring --------------------------------------------------------------
    def evaluate(self, program: str, parent_artifact: Any, seed: int) -> Evaluation:
        parent = None if parent_artifact is None else \
            np.asarray(arrays.unwrap(parent_artifact, ARTIFACT_KEYS), dtype=np.float64)
        run = arrays.run_solve(self, program, parent, seed, self.iterations, self.time_budget_s,
                               self.memory_mb, ndim=1)
        if run.failure:
            return run.failure
        try:  # the score is recomputed here; anything the program printed or claimed is ignored
            score = self.score_values(run.value)
        except InvalidArtifact as e:
            return self.failed("invalid_artifact", str(e), wall_s=run.wall_s)
        return Evaluation(ok=True, score=score, reward=self.reward(score),
                          artifact=run.value.astype(np.float64).tolist(),
                          metrics={"n": len(run.value), "wall_s": run.wall_s},
                          log=run.stdout[-arrays.STDOUT_CHARS:])

    def score_artifact(self, artifact: Any) -> float:
        return self.score_values(arrays.unwrap(artifact, ARTIFACT_KEYS))

    def verify(self, artifact: Any) -> Evaluation:
        """Score an artefact; the evaluation carries it as a list of floats."""
        try:
            values = arrays.unwrap(artifact, ARTIFACT_KEYS)
            score = self.score_values(values)
        except InvalidArtifact as e:
            return self.failed("invalid_artifact", str(e))
        a = np.asarray(values, dtype=np.float64)
        return Evaluation(ok=True, score=score, reward=self.reward(score), artifact=a.tolist(),
                          metrics={"n": len(a)})

    def load_artifact(self, path: str | Path) -> Any:
        """A JSON list, or an object holding it under "sequence", "values", "heights" or
        "artifact" (the formats of the reference files in docs/reference-data.md and of the
        discover repository)."""
        return arrays.load_json_artifact(path, ARTIFACT_KEYS)


# AC1 rewards are -bound, bound in (1, 2n]. A bound above BOUND_CAP means most of the mass sits
# in a few steps (constant and uniform-random sequences score about 2), so such rewards are
# capped at -BOUND_CAP: that keeps valid rewards in [-10, -1), the failure reward (-20) safely
# below every one of them, and the reward scale sane for advantages and PUCT (uncapped, a
# failure would need a reward below -2 * MAX_N = -200,000).
BOUND_CAP = 10.0


class AC1Environment(AutocorrelationEnvironment):
    name = "ac1"
    direction = "min"
    target = 1.5028629  # TTT-Discover, n = 30000 (1.502862898255826 recomputed)
    prompt_file = "prompt_ac1.md"
    starter_file = "starter_ac1.py"
    iterations = 10000
    score_name = "bound"

    def score_values(self, values: Any) -> float:
        return scoring.score_ac1(values)

    def reward(self, score: float) -> float:
        return -min(score, BOUND_CAP)

    @property
    def failure_reward(self) -> float:
        return -2.0 * BOUND_CAP


class AC2Environment(AutocorrelationEnvironment):
    name = "ac2"
    direction = "max"
    target = 0.9610211  # AlphaEvolve v2, n = 50000 (0.9610210777840245 recomputed)
    prompt_file = "prompt_ac2.md"
    starter_file = "starter_ac2.py"
    iterations = 9000
    score_name = "C"

    def score_values(self, values: Any) -> float:
        return scoring.score_ac2(values)

    @property
    def failure_reward(self) -> float:
        return -1.0  # valid rewards are C in (0, 1]

