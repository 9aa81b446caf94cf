"""AHC058 (apple machines) as an environment: a C++ program per candidate (see ahc_common)."""

from __future__ import annotations

from pathlib import Path

from environments.ahc058 import problem
from environments.ahc_common.env import ContestEnvironment

HERE = Path(__file__).parent


class AHC058Environment(ContestEnvironment):
    name = "ahc058"
    problem = problem
    prompt_file = HERE / "prompt.md"
    baseline_file = HERE / "baseline.cpp"
    starter_file = HERE / "starter.cpp"
    published = {"best human": 847_674_723, "TTT-Discover": 848_414_228}  # totals over 150 cases
