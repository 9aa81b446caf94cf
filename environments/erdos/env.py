"""The Erdős minimum overlap environment: minimise C5 of a step function (see scoring.py)."""

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
from environments.erdos import scoring

STATEMENT = (Path(__file__).parent / "prompt.md").read_text().strip()
STARTER = (Path(__file__).parent / "starter.py").read_text()
ARTIFACT_KEYS = ("sequence", "values", "artifact")  # accepted wrappers of a JSON list
INITIAL_N = 50
INITIAL_NOISE = 0.1


class ErdosEnvironment(Environment):
    name = "erdos"
    direction = "min"
    language = "python"
    time_budget_s = 10.0
    cpu_slots = 1
    target = 0.380876  # TTT-Discover's record, C5 <= 0.380876 (0.3808753232 recomputed)
    score_name = "C5"
    entry = "solve(parent, iters, seed)"
    max_code_chars = 2000  # the embedded model has a small context: keep prompts < ~1500 tokens
    # The work a program is handed as `iters` (arrays.iterations_option): the starter makes this
    # many moves in about 0.8 s on an idle core (AMD EPYC).
    iterations: ClassVar[int] = 40000
    # The block holds only the knobs, so the answer is two lines: 64 new tokens hold it, and the
    # method's temperature 1.0 keeps a third to a half valid while the model edits a knob; at 0.4
    # it copies the block (docs/benchmarks.md, "The knob-only block at temperature 1.0"). Rows
    # that short keep their activations in little memory, so the learner does not recompute
    # them (the same update, about 15% less of its time: "Learning beside sampling"). The rest
    # makes a learning step cost about 1.25x a step without a learner instead of 2-2.7x, for the
    # same result at equal samples (4 of 5 paired seeds; "The cheap learner"): the update runs
    # beside the next step's sampling, the prompt pass without gradient (a stated deviation) at
    # twice the size rule's rate, no movement probe (its figures read "-").
    recommended: ClassVar[dict[str, dict[str, Any]]] = {
        "policy": {"temperature": 1.0, "max_new_tokens": 64},
        "run": {"overlap": True},
        "learner": {"grad_checkpointing": False, "prompt_grad": False, "lr_scale": 2.0,
                    "probe_rows": 0}}

    def __init__(self, time_budget_s: float = 10.0, memory_mb: int = 2048,
                 iterations: int | None = None, **options: Any) -> None:
        refuse_unknown("erdos", options, ("time_budget_s", "memory_mb", "iterations"))
        check_positive("time_budget_s", time_budget_s)
        iterations = arrays.iterations_option(iterations, self.iterations)
        super().__init__(time_budget_s=time_budget_s, memory_mb=memory_mb, iterations=iterations)
        self.time_budget_s = float(time_budget_s)
        self.memory_mb = int(memory_mb)
        self.iterations = iterations

    @property
    def failure_reward(self) -> float:
        # Valid rewards are -C5 in [-1, 0] (scoring.C5_UPPER_BOUND): -2 lies below all of them.
        return -2.0 * scoring.C5_UPPER_BOUND

    # --- what the model sees -------------------------------------------------
    def statement(self) -> str:
        return STATEMENT.format(time_budget_s=self.time_budget_s)

    def handoff(self, artifact: Any) -> str:
        n = arrays.length(artifact)
        handed = f"a numpy array of n={n} values" if n else "None"
        return f"Your solve() receives the parent's h as `parent` ({handed})."

    def summarize(self, artifact: Any) -> str:
        return f"a starting step function of n={arrays.length(artifact)} values"

    def format_score(self, score: float | None) -> str:
        return "none" if score is None else f"{score:.8f}"

    def starter_program(self) -> str:
        return STARTER

    # --- the search's starting points ----------------------------------------
    def initial_artifacts(self, count: int, seed: int, init_file: str | None = None) -> list:
        """`count` random perturbations of h = 1/2 (n=50), or the construction in `init_file`."""
        if init_file:
            values = self.load_artifact(init_file)
            try:
                _, h = scoring.score(values)
            except InvalidArtifact as e:
                raise InvalidArtifact(f"initial construction {init_file} is invalid: {e}") from e
            return [h.tolist()]
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(max(1, count)):
            noise = rng.uniform(-INITIAL_NOISE, INITIAL_NOISE, INITIAL_N)
            out.append(scoring.normalise(np.clip(0.5 + noise, 0.0, 1.0)).tolist())
        return out

    # --- scoring --------------------------------------------------------------
    def evaluate(self, program: str, parent_artifact: Any, seed: int) -> Evaluation:
        parent = None if parent_artifact is None else \
            np.asarray(_unwrap(parent_artifact), dtype=np.float64)
        solved = arrays.run_solve(self, program, parent, seed, self.iterations,
                                  self.time_budget_s, self.memory_mb, ndim=1)
        if solved.failure is not None:
            return solved.failure
        try:  # the score is recomputed here; anything the program printed or claimed is ignored
            c5, h = scoring.score(solved.value)
        except InvalidArtifact as e:
            return self.failed("invalid_artifact", str(e), wall_s=solved.wall_s)
        return Evaluation(ok=True, score=c5, reward=self.reward(c5), artifact=h.tolist(),
                          metrics={"n": len(h), "wall_s": solved.wall_s},
                          log=solved.stdout[-arrays.STDOUT_CHARS:])

    def score_artifact(self, artifact: Any) -> float:
        return scoring.score(_unwrap(artifact))[0]

    def verify(self, artifact: Any) -> Evaluation:
        """Score an artefact; the evaluation carries the rescaled h, as evaluate() stores it."""
        try:
            c5, h = scoring.score(_unwrap(artifact))
        except InvalidArtifact as e:
            return self.failed("invalid_artifact", str(e))
        return Evaluation(ok=True, score=c5, reward=self.reward(c5), artifact=h.tolist(),
                          metrics={"n": len(h)})

    def draw(self, artifact: Any, ax: Any, metrics: dict | None = None) -> bool:
        """The step function h on [0, 2], with the C5 it scores."""
        c5, h = scoring.score(_unwrap(artifact))
        ax.stairs(h, np.linspace(0.0, 2.0, len(h) + 1), fill=True, alpha=0.35)
        ax.stairs(h, np.linspace(0.0, 2.0, len(h) + 1), linewidth=1.2)
        ax.set(xlim=(0, 2), ylim=(0, 1.02), xlabel="x", ylabel="h(x)",
               title=f"step function, n = {len(h)}, C5 = {c5:.10f}")
        return True

    def load_artifact(self, path: str | Path) -> Any:
        """A JSON list, or a dict holding it under "sequence", "values" or "artifact"."""
        return arrays.load_json_artifact(path, ARTIFACT_KEYS)


def _unwrap(data: Any) -> Any:
    return arrays.unwrap(data, ARTIFACT_KEYS)
