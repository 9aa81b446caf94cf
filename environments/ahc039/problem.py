"""AHC039 "Purse Seine Fishing": input generation, parsing and exact scoring.

N mackerels and N sardines lie at distinct integer points of [0, 1e5]^2. The answer is an
axis-parallel simple polygon; a case scores max(0, a - b + 1) where a and b count the mackerels
and sardines inside it or on its boundary. Rules follow the public statement
(https://atcoder.jp/contests/ahc039); the generator follows its "Input Generation" section with
numpy's PCG64 in place of the official Rust generator, so cases differ from AtCoder's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from discover.environment import InvalidArtifact
from environments.ahc_common import tester_parse

N = 5000
COORD_MAX = 100_000
MIN_VERTICES, MAX_VERTICES = 4, 1000
MAX_PERIMETER = 400_000
CLUSTERS = (10, 25)  # rand(10, 25) clusters per kind of fish
CENTRE = (20_000, 80_000)
SIGMA = (1000, 5000)
POINT_CHUNK = 2048  # points per block in the inclusion test: bounds memory to ~2 MB per edge set


@dataclass(frozen=True)
class Case:
    mackerels: np.ndarray  # (N, 2) int64
    sardines: np.ndarray  # (N, 2) int64


# --- inputs -----------------------------------------------------------------------------------

def generate(seed: int) -> Case:
    """A case drawn by the statement's rules; the same seed gives the same case."""
    rng = np.random.default_rng(seed)
    taken: set[tuple[int, int]] = set()  # distinct across both kinds of fish
    mackerels = _fish(rng, taken)
    sardines = _fish(rng, taken)
    return Case(mackerels, sardines)


def _fish(rng: np.random.Generator, taken: set[tuple[int, int]]) -> np.ndarray:
    n = int(rng.integers(CLUSTERS[0], CLUSTERS[1] + 1))
    weight = rng.uniform(0.0, 1.0, n)
    centre = rng.integers(CENTRE[0], CENTRE[1] + 1, size=(n, 2))
    sigma = rng.integers(SIGMA[0], SIGMA[1] + 1, size=n)
    cluster = rng.choice(n, size=N, p=weight / weight.sum())
    out = np.empty((N, 2), dtype=np.int64)
    pending = np.arange(N)
    while pending.size:  # a rejected point is redrawn from its own cluster
        c = cluster[pending]
        xy = np.rint(rng.normal(centre[c], sigma[c, None])).astype(np.int64)
        rejected = []
        for k, (x, y) in zip(pending.tolist(), xy.tolist(), strict=True):
            if 0 <= x <= COORD_MAX and 0 <= y <= COORD_MAX and (x, y) not in taken:
                taken.add((x, y))
                out[k] = (x, y)
            else:
                rejected.append(k)
        pending = np.asarray(rejected, dtype=np.int64)
    return out


def format_input(case: Case) -> str:
    pts = np.concatenate([case.mackerels, case.sardines])
    return f"{len(case.mackerels)}\n" + "".join(f"{x} {y}\n" for x, y in pts.tolist())


def parse_input(text: str) -> Case:
    """Read a case in the contest's input format; ValueError names what is wrong."""
    try:
        nums = np.array(text.split(), dtype=np.int64)
    except (ValueError, OverflowError) as e:
        raise ValueError(f"AHC039 input: not all integers: {e}") from e
    if nums.size == 0:
        raise ValueError("AHC039 input is empty")
    n = int(nums[0])
    if n <= 0 or nums.size != 1 + 4 * n:
        raise ValueError(f"AHC039 input: N = {n} needs {4 * n} coordinates, got {nums.size - 1}")
    pts = nums[1:].reshape(2 * n, 2)
    if pts.min() < 0 or pts.max() > COORD_MAX:
        raise ValueError(f"AHC039 input: a coordinate lies outside [0, {COORD_MAX}]")
    if len(np.unique(pts, axis=0)) != 2 * n:
        raise ValueError("AHC039 input: the fish positions are not distinct")
    return Case(pts[:n].copy(), pts[n:].copy())


# --- outputs ----------------------------------------------------------------------------------

def parse_output(text: str) -> np.ndarray | None:
    """The last polygon of the output as an (m, 2) int64 array (only the last one counts), or
    None for an empty output. Read as the official tester reads it (ahc_common.tester_parse):
    every polygon's vertex count and coordinates are checked, an i64 each, in range."""
    tokens = tester_parse.tokens(text)
    pos, last, count = 0, None, 0
    while pos < len(tokens):
        m = tester_parse.integer(tokens[pos], f"polygon {count}: vertex count", signed=False,
                                 lo=MIN_VERTICES, hi=MAX_VERTICES)
        last = [tester_parse.integer(t, f"polygon {count}, vertex {k // 2}: "
                                        f"{'xy'[k % 2]} coordinate", lo=0, hi=COORD_MAX)
                for k, t in enumerate(tokens[pos + 1: pos + 1 + 2 * m])]  # in reading order
        if len(last) < 2 * m:
            raise InvalidArtifact(f"polygon {count}: {m} vertices announced, "
                                  f"{len(last) // 2} given")
        pos += 1 + 2 * m
        count += 1
    return None if last is None else np.array(last, dtype=np.int64).reshape(-1, 2)


def check_polygon(poly: np.ndarray) -> None:
    """Raise InvalidArtifact naming the first broken rule of the statement's polygon rules."""
    m = len(poly)
    if not MIN_VERTICES <= m <= MAX_VERTICES:
        raise InvalidArtifact(f"{m} vertices; need {MIN_VERTICES} to {MAX_VERTICES}")
    bad = np.flatnonzero(((poly < 0) | (poly > COORD_MAX)).any(axis=1))
    if bad.size:
        raise InvalidArtifact(f"vertex {bad[0]} {tuple(poly[bad[0]].tolist())} lies outside "
                              f"[0, {COORD_MAX}]^2")
    d = np.roll(poly, -1, axis=0) - poly  # edge k runs from vertex k to vertex k+1
    same = np.flatnonzero((d == 0).all(axis=1))
    if same.size:
        k = int(same[0])
        raise InvalidArtifact(f"vertices {k} and {(k + 1) % m} are the same point "
                              f"{tuple(poly[k].tolist())}")
    slant = np.flatnonzero((d != 0).all(axis=1))
    if slant.size:
        k = int(slant[0])
        raise InvalidArtifact(f"edge {tuple(poly[k].tolist())} -> "
                              f"{tuple(poly[(k + 1) % m].tolist())} is not axis-parallel")
    perimeter = int(np.abs(d).sum())
    if perimeter > MAX_PERIMETER:
        raise InvalidArtifact(f"perimeter {perimeter} exceeds {MAX_PERIMETER}")
    uniq, first, counts = np.unique(poly, axis=0, return_index=True, return_counts=True)
    if (counts > 1).any():
        p = uniq[np.argmax(counts > 1)]
        where = np.flatnonzero((poly == p).all(axis=1))
        raise InvalidArtifact(f"vertices {where[0]} and {where[1]} are the same point "
                              f"{tuple(p.tolist())}")
    back = np.flatnonzero((d * np.roll(d, -1, axis=0)).sum(axis=1) < 0)
    if back.size:
        k = int(back[0])
        raise InvalidArtifact(f"the boundary doubles back on itself at vertex {(k + 1) % m} "
                              f"{tuple(poly[(k + 1) % m].tolist())}")
    # Axis-parallel segments are their own bounding boxes: two share a point iff boxes overlap.
    a, b = poly, poly + d
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    touch = ((np.maximum(lo[:, None, 0], lo[None, :, 0]) <= np.minimum(hi[:, None, 0],
                                                                       hi[None, :, 0]))
             & (np.maximum(lo[:, None, 1], lo[None, :, 1]) <= np.minimum(hi[:, None, 1],
                                                                         hi[None, :, 1])))
    gap = np.abs(np.arange(m)[:, None] - np.arange(m)[None, :])
    touch &= (gap > 1) & (gap < m - 1)  # adjacent edges meet at their shared vertex
    if touch.any():
        i, j = map(int, np.argwhere(touch)[0])
        raise InvalidArtifact(f"the polygon intersects itself: edges {i} and {j} "
                              f"(from vertices {tuple(poly[i].tolist())} and "
                              f"{tuple(poly[j].tolist())}) touch")


def inside(poly: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Boolean mask of the points inside the (valid) polygon or on its boundary."""
    b = np.roll(poly, -1, axis=0)
    lo, hi = np.minimum(poly, b), np.maximum(poly, b)
    vert = poly[:, 0] == b[:, 0]
    vx, vlo, vhi = poly[vert, 0], lo[vert, 1], hi[vert, 1]
    out = np.empty(len(pts), dtype=bool)
    for s in range(0, len(pts), POINT_CHUNK):
        x, y = pts[s:s + POINT_CHUNK, 0, None], pts[s:s + POINT_CHUNK, 1, None]
        # Ray to +x, half-open in y: exact parity for points off the boundary.
        crossings = ((vx > x) & (vlo <= y) & (y < vhi)).sum(axis=1)
        on_edge = ((lo[:, 0] <= x) & (x <= hi[:, 0]) & (lo[:, 1] <= y) & (y <= hi[:, 1])).any(1)
        out[s:s + POINT_CHUNK] = (crossings % 2 == 1) | on_edge
    return out


def score_polygon(case: Case, poly: np.ndarray) -> tuple[int, int, int]:
    """(case score, a, b) of a polygon; raises InvalidArtifact if it breaks a rule."""
    check_polygon(poly)
    a = int(inside(poly, case.mackerels).sum())
    b = int(inside(poly, case.sardines).sum())
    return max(0, a - b + 1), a, b


EMPTY_SCORE = 1  # no net: a = b = 0, as the official tester scores an empty output


def score_output(case: Case, text: str) -> int:
    """The case score of a program's output; raises InvalidArtifact (a wrong answer)."""
    poly = parse_output(text)
    return EMPTY_SCORE if poly is None else score_polygon(case, poly)[0]
