"""AHC039 "Purse Seine Fishing" as an environment: a C++ program per candidate (see ahc_common)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from discover.environment import InvalidArtifact
from environments.ahc039 import problem
from environments.ahc_common.cpp import compile_cpp, run_binary
from environments.ahc_common.env import ContestEnvironment, unpack

HERE = Path(__file__).parent


class AHC039Environment(ContestEnvironment):
    name = "ahc039"
    problem = problem
    prompt_file = HERE / "prompt.md"
    baseline_file = HERE / "baseline.cpp"
    starter_file = HERE / "starter.cpp"
    published = {"best human": 566_997, "TTT-Discover": 567_062}  # totals over 150 cases

    def draw(self, artifact: Any, ax: Any, metrics: dict | None = None) -> bool:
        """The program's net over the fish of the first case. The artefact is a program, so it
        is compiled and run once more (in the sandbox) to get its polygon."""
        from matplotlib.patches import Polygon

        label, case = f"seed {self.case_seed}", problem.generate(self.case_seed)  # case 0
        source, seed = unpack(artifact)
        comp = compile_cpp(source, self.compile_timeout_s, self.sandbox_paths)
        if comp.binary is None:
            raise InvalidArtifact(f"the program does not compile: {comp.log[-300:]}")
        run = run_binary(comp.binary, problem.format_input(case).encode(), self.cpu_s,
                         self.memory_mb, paths=self.sandbox_paths, args=(str(seed),))
        if run.status != "ok":
            raise InvalidArtifact(f"the program failed on case {label}: {run.reason}")
        poly = problem.parse_output(run.output)  # None: an empty output, no net (score 1)
        score, a, b = (problem.EMPTY_SCORE, 0, 0) if poly is None else \
            problem.score_polygon(case, poly)
        ax.scatter(*case.mackerels.T, s=1, c="tab:blue", label="mackerel", rasterized=True)
        ax.scatter(*case.sardines.T, s=1, c="tab:red", label="sardine", rasterized=True)
        if poly is not None:
            ax.add_patch(Polygon(poly, closed=True, fill=False, edgecolor="black",
                                 linewidth=1.5))
        ax.set(xlim=(0, problem.COORD_MAX), ylim=(0, problem.COORD_MAX), aspect="equal",
               title=f"case {label}: {a} mackerels - {b} sardines + 1 = {score}")
        ax.legend(loc="upper right", markerscale=6, fontsize=8)
        return True
