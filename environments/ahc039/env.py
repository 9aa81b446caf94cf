"""AHC039 "Purse Seine Fishing" as an environment: a C++ program per candidate (see ahc_common)."""

from __future__ import annotations

from pathlib import Path

from environments.ahc039 import problem
from environments.ahc_common.env import ContestEnvironment

HERE = Path(__file__).parent


class AHC039Environment(ContestEnvironment):
    name = "ahc039"
    problem = problem
    prompt_file = HERE / "prompt.md"
    baseline_file = HERE / "baseline.cpp"
    published = {"best human": 566_997, "TTT-Discover": 567_062}  # totals over 150 cases
