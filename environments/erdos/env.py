"""The Erdős minimum overlap environment: minimise C5 of a step function (see scoring.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from discover.environment import (
    Environment,
    Evaluation,
    InvalidArtifact,
    check_positive,
    refuse_unknown,
)
from discover.sandbox import Limits, run_function
from environments.erdos import scoring

STATEMENT = (Path(__file__).parent / "prompt.md").read_text().strip()
STARTER = (Path(__file__).parent / "starter.py").read_text()
ARTIFACT_KEYS = ("sequence", "values", "artifact")  # accepted wrappers of a JSON list
STDOUT_CHARS = 300
WALL_MARGIN_S = 3.0  # interpreter and numpy start-up on top of time_budget_s
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
    # The work a program is handed as `iters`: the starter makes this many moves in about 0.8 s
    # on an idle core (AMD EPYC). Counting work, not seconds, makes a program's result depend on
    # the program, its parent and its seed only; time_budget_s is only the sandbox's wall limit.
    iterations: ClassVar[int] = 40000

    def __init__(self, time_budget_s: float = 10.0, memory_mb: int = 2048,
                 iterations: int | None = None, **options: Any) -> None:
        refuse_unknown("erdos", options, ("time_budget_s", "memory_mb", "iterations"))
        iterations = self.iterations if iterations is None else iterations
        super().__init__(time_budget_s=time_budget_s, memory_mb=memory_mb, iterations=iterations)
        check_positive("time_budget_s", time_budget_s)
        if not (isinstance(iterations, int) and not isinstance(iterations, bool)
                and iterations >= 1):
            raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
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
        n = _length(artifact)
        handed = f"a numpy array of n={n} values" if n else "None"
        return f"Your solve() receives the parent's h as `parent` ({handed})."

    def summarize(self, artifact: Any) -> str:
        return f"a starting step function of n={_length(artifact)} values"

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
        kwargs = {"parent": parent, "iters": self.iterations, "seed": int(seed)}
        limits = Limits(wall_s=self.time_budget_s + WALL_MARGIN_S, memory_mb=self.memory_mb)
        res = run_function(program, "solve", kwargs, limits, self.sandbox_packages,
                           self.sandbox_paths)
        if res.failure:
            return self.failed(res.failure, res.log, wall_s=res.wall_s)
        value = res.value
        if not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype.kind == "c":
            got = f"dtype {value.dtype}, shape {value.shape}" if isinstance(value, np.ndarray) \
                else type(value).__name__
            return self.failed("invalid_output",
                               f"solve must return a 1-D array of real numbers, got {got}",
                               wall_s=res.wall_s)
        try:  # the score is recomputed here; anything the program printed or claimed is ignored
            c5, h = scoring.score(value)
        except InvalidArtifact as e:
            return self.failed("invalid_artifact", str(e), wall_s=res.wall_s)
        return Evaluation(ok=True, score=c5, reward=self.reward(c5), artifact=h.tolist(),
                          metrics={"n": len(h), "wall_s": res.wall_s},
                          log=res.stdout[-STDOUT_CHARS:])

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
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise InvalidArtifact(f"cannot read artefact {path}: {e}") from e
        try:
            return _unwrap(data)
        except InvalidArtifact as e:
            raise InvalidArtifact(f"{path}: {e}") from e


def _unwrap(data: Any) -> Any:
    if isinstance(data, dict):
        for key in ARTIFACT_KEYS:
            if key in data:
                return data[key]
        raise InvalidArtifact(f"a JSON object needs one of the keys {', '.join(ARTIFACT_KEYS)}; "
                              f"got {', '.join(map(str, data)) or 'none'}")
    return data


def _length(artifact: Any) -> int:
    try:
        return len(artifact)
    except TypeError:
        return 0
