"""Circle packing in the unit square, n = 26 and n = 32: maximise the sum of radii.

The program returns an (n, 3) array of rows (x, y, r); feasibility is exact with no tolerance
(scoring.py says why).
"""

from __future__ import annotations

import math
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
from environments.circle_packing import scoring

ARTIFACT_KEYS = ("circles", "artifact")  # {"circles": [[x, y, r], ...]} as in the references
PROMPT = (Path(__file__).parent / "prompt.md").read_text().strip()
STARTER = (Path(__file__).parent / "starter.py").read_text()
SHRINK = 1 - 1e-6  # random starts leave this slack, far above float rounding


class CirclePackingEnvironment(Environment):
    """n circles in the unit square; a subclass sets n, name and target."""

    n: ClassVar[int] = 0
    direction = "max"
    language = "python"
    time_budget_s = 10.0
    cpu_slots = 1
    score_name = "sum of radii"
    entry = "solve(parent, iters, seed)"
    max_code_chars = 2000  # the embedded model has a small context: keep prompts < ~1500 tokens
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
        self._statement = PROMPT.format(n=self.n, record=self.target,
                                        time_budget_s=self.time_budget_s)

    @property
    def failure_reward(self) -> float:
        return -1.0  # valid rewards are sums of radii >= 0

    # --- what the model sees -------------------------------------------------
    def statement(self) -> str:
        return self._statement

    def handoff(self, artifact: Any) -> str:
        handed = "None" if artifact is None else f"a numpy array of shape ({self.n}, 3)"
        return f"Your solve() receives the parent's circles as `parent` ({handed})."

    def summarize(self, artifact: Any) -> str:
        return f"a starting packing of {self.n} circles"

    def starter_program(self) -> str:
        """Jitter and repair: move a circle a little, make every circle as large as the others
        allow (exactly feasible), keep improvements (the editable block, `propose`, says which
        moves)."""
        return STARTER

    # --- the search's starting points ----------------------------------------
    def initial_artifacts(self, count: int, seed: int, init_file: str | None = None) -> list:
        """`count` random greedy packings, or the packing in `init_file`."""
        if init_file:
            try:
                _, c = scoring.score(self.load_artifact(init_file), self.n)
            except InvalidArtifact as e:
                raise InvalidArtifact(f"initial construction {init_file} is invalid: {e}") from e
            return [c.tolist()]
        rng = np.random.default_rng(seed)
        return [random_packing(self.n, rng).tolist() for _ in range(max(1, count))]

    # --- scoring --------------------------------------------------------------
    def evaluate(self, program: str, parent_artifact: Any, seed: int) -> Evaluation:
        parent = None if parent_artifact is None else \
            np.asarray(arrays.unwrap(parent_artifact, ARTIFACT_KEYS), dtype=np.float64)
        run = arrays.run_solve(self, program, parent, seed, self.iterations, self.time_budget_s,
                               self.memory_mb, ndim=2)
        if run.failure:
            return run.failure
        try:  # the score is recomputed here; anything the program printed or claimed is ignored
            total, c = scoring.score(run.value, self.n)
        except InvalidArtifact as e:
            return self.failed("invalid_artifact", str(e), wall_s=run.wall_s)
        return Evaluation(ok=True, score=total, reward=total, artifact=c.tolist(),
                          metrics={"n": self.n, "wall_s": run.wall_s},
                          log=run.stdout[-arrays.STDOUT_CHARS:])

    def score_artifact(self, artifact: Any) -> float:
        return scoring.score(arrays.unwrap(artifact, ARTIFACT_KEYS), self.n)[0]

    def verify(self, artifact: Any) -> Evaluation:
        """Score an artefact; the evaluation carries it as a list of [x, y, r] rows."""
        try:
            total, c = scoring.score(arrays.unwrap(artifact, ARTIFACT_KEYS), self.n)
        except InvalidArtifact as e:
            return self.failed("invalid_artifact", str(e))
        return Evaluation(ok=True, score=total, reward=self.reward(total), artifact=c.tolist(),
                          metrics={"n": self.n})

    def draw(self, artifact: Any, ax: Any, metrics: dict | None = None) -> bool:
        """The circles in the unit square, numbered as in the artefact."""
        from matplotlib.patches import Circle, Rectangle

        c = scoring.circles(arrays.unwrap(artifact, ARTIFACT_KEYS), self.n)
        ax.add_patch(Rectangle((0, 0), 1, 1, fill=False, linewidth=1.5))
        for i, (x, y, r) in enumerate(c):
            ax.add_patch(Circle((x, y), r, alpha=0.45, edgecolor="black", linewidth=0.6))
            ax.text(x, y, str(i), ha="center", va="center", fontsize=7)
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), aspect="equal",
               title=f"{self.n} circles, sum of radii = {math.fsum(c[:, 2]):.10f}")
        return True

    def load_artifact(self, path: str | Path) -> Any:
        """{"circles": [[x, y, r], ...]} (extra keys such as "sum_radii" are ignored: the sum is
        recomputed), {"artifact": ...}, or a bare list of rows."""
        return arrays.load_json_artifact(path, ARTIFACT_KEYS)


def random_packing(n: int, rng: np.random.Generator, tries: int = 1000) -> np.ndarray:
    """Circles placed one by one at random centres, each as large as the walls and the circles
    already placed allow (less a small slack); a centre is redrawn while it has little room."""
    c = np.zeros((n, 3))
    for i in range(n):
        best = (0.0, 0.5, 0.5)
        for _ in range(tries):
            x, y = rng.uniform(0.0, 1.0, 2)
            gaps = np.hypot(c[:i, 0] - x, c[:i, 1] - y) - c[:i, 2]
            room = float(min(x, 1 - x, y, 1 - y, gaps.min(initial=1.0)))
            if room > best[0]:
                best = (room, x, y)
            if room > 1e-3:
                break
        room, x, y = best
        c[i] = x, y, room * SHRINK
    return c


class CirclePacking26(CirclePackingEnvironment):
    name = "circle_packing_26"
    n = 26
    iterations = 6000
    target = 2.6359774  # TTT-Discover (2.6359773947542573 recomputed, exactly feasible)


class CirclePacking32(CirclePackingEnvironment):
    name = "circle_packing_32"
    n = 32
    iterations = 5000
    target = 2.9395725  # TTT-Discover's program, regenerated (2.939572499640256 recomputed)
