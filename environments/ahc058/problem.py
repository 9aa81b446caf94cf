"""AHC058 (apple machines): input generation, parsing and exact simulation.

Machines j^i have N ids and L levels; B[i][j] is a machine's count (initially 1) and P[i][j]
its power (initially 0). Each of T turns: optionally strengthen one machine for C[i][j] * (P+1)
apples (power + 1; the apples must not go negative), then in the order level 0, 1, ..., L-1:
level 0 adds A[j] * B[0][j] * P[0][j] apples, level i >= 1 adds B[i][j] * P[i][j] to B[i-1][j].
A case scores round(1e5 * log2(final apples)), 0 if none are left. Rules follow the public
statement (https://atcoder.jp/contests/ahc058); all arithmetic is exact (Python ints).
The generator follows the statement's "Input Generation" with numpy's PCG64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from discover.environment import InvalidArtifact
from environments.ahc_common import tester_parse

N, L, T, K = 10, 4, 500, 1
A_MAX = 100
C_MAX = 1_250_000_000_000  # A_j * 500^3 * 10^2 at most
COST_BASE = 500


@dataclass(frozen=True)
class Case:
    A: tuple[int, ...]  # N level-0 rates, ascending, A[0] = 1
    C: tuple[tuple[int, ...], ...]  # L x N initial costs, C[0][0] = 1
    n: int = N
    levels: int = L
    turns: int = T
    start: int = K  # apples at the start


def _round(x: float) -> int:
    return math.floor(x + 0.5)  # half away from zero (Rust's f64::round) for x >= 0


# --- inputs -----------------------------------------------------------------------------------

def generate(seed: int) -> Case:
    """A case drawn by the statement's rules; the same seed gives the same case."""
    rng = np.random.default_rng(seed)
    A = sorted([1] + [_round(10 ** rng.uniform(0, 2)) for _ in range(N - 1)])
    C = [[1 if i == j == 0 else _round(A[j] * COST_BASE ** i * 10 ** rng.uniform(0, 2))
          for j in range(N)] for i in range(L)]
    return Case(tuple(A), tuple(map(tuple, C)))


def format_input(case: Case) -> str:
    lines = [f"{case.n} {case.levels} {case.turns} {case.start}", " ".join(map(str, case.A))]
    lines += [" ".join(map(str, row)) for row in case.C]
    return "\n".join(lines) + "\n"


def parse_input(text: str) -> Case:
    """Read a case in the contest's input format; ValueError names what is wrong."""
    try:
        nums = [int(t) for t in text.split()]
    except ValueError as e:
        raise ValueError(f"AHC058 input: not all integers: {e}") from e
    if len(nums) < 4:
        raise ValueError("AHC058 input: the first line must hold N L T K")
    n, levels, turns, start = nums[:4]
    if n <= 0 or levels <= 0 or turns <= 0 or start < 0:
        raise ValueError(f"AHC058 input: bad N L T K = {n} {levels} {turns} {start}")
    if len(nums) != 4 + n + levels * n:
        raise ValueError(f"AHC058 input: expected {4 + n + levels * n} integers, got {len(nums)}")
    A = tuple(nums[4:4 + n])
    rest = nums[4 + n:]
    C = tuple(tuple(rest[i * n:(i + 1) * n]) for i in range(levels))
    return Case(A, C, n, levels, turns, start)


# --- outputs ----------------------------------------------------------------------------------

def parse_output(case: Case, text: str) -> list[tuple[int, int] | None]:
    """One action per turn: (level, id) to strengthen, or None (-1). Read as the official
    tester reads it (ahc_common.tester_parse): the first T action lines count and later lines
    are ignored; a level is compared by value ("-01" is -1), an id takes no minus sign.
    Blank lines and '#' comment lines are skipped."""
    actions: list[tuple[int, int] | None] = []
    for lineno, raw in enumerate(tester_parse.lines(text), 1):
        if len(actions) == case.turns:
            break
        line = tester_parse.trim(raw)
        if not line or line.startswith("#"):
            continue
        parts = tester_parse.tokens(line)
        where = f"output line {lineno}"
        i = tester_parse.integer(parts[0], f"{where}: level", lo=-1, hi=case.levels - 1)
        if i == -1 and len(parts) == 1:
            actions.append(None)
            continue
        if i == -1 or len(parts) != 2:
            raise InvalidArtifact(f"{where}: expected 'i j' or '-1', got {line[:40]!r}")
        j = tester_parse.integer(parts[1], f"{where}: id", signed=False, hi=case.n - 1)
        actions.append((i, j))
    if len(actions) != case.turns:
        raise InvalidArtifact(f"expected {case.turns} actions, got {len(actions)}")
    return actions


def simulate(case: Case, actions: list[tuple[int, int] | None]) -> int:
    """Apples at the end of the plan; raises InvalidArtifact on an overspend."""
    B = [[1] * case.n for _ in range(case.levels)]
    P = [[0] * case.n for _ in range(case.levels)]
    apples = case.start
    for turn, act in enumerate(actions):
        if act is not None:
            i, j = act
            cost = case.C[i][j] * (P[i][j] + 1)
            if cost > apples:
                raise InvalidArtifact(f"turn {turn}: strengthening machine {j}^{i} costs "
                                      f"{cost} apples but only {apples} are left")
            apples -= cost
            P[i][j] += 1
        for j in range(case.n):  # level 0 first: its new counts only act from the next turn
            apples += case.A[j] * B[0][j] * P[0][j]
        for i in range(1, case.levels):
            for j in range(case.n):
                B[i - 1][j] += B[i][j] * P[i][j]
    return apples


def case_score(apples: int) -> int:
    """round(1e5 * log2(apples)), or 0 when no apple is left."""
    return _round(1e5 * math.log2(apples)) if apples > 0 else 0


def score_output(case: Case, text: str) -> int:
    """The case score of a program's output; raises InvalidArtifact (a wrong answer)."""
    return case_score(simulate(case, parse_output(case, text)))
