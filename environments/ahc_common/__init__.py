"""Shared code of the AtCoder Heuristic Contest environments: C++ in the sandbox, case fan-out."""

from environments.ahc_common.cpp import CaseRun, Compiled, compile_cpp, run_binary
from environments.ahc_common.env import ContestEnvironment

__all__ = ["CaseRun", "Compiled", "ContestEnvironment", "compile_cpp", "run_binary"]
