"""Circle packing in the unit square: verification and the objective (the sum of radii).

A packing is an (n, 3) array of rows (x, y, r), counted from 0. It is valid when every radius
is >= 0, every circle lies inside [0, 1]^2 (r <= x <= 1 - r and r <= y <= 1 - r) and no two
circles overlap ((xi - xj)^2 + (yi - yj)^2 >= (ri + rj)^2; touching is allowed).

Tolerance: none. Feasibility is decided exactly, on the binary rationals that the floats are
(all values scaled by one power of two become integers), so no rounding can pass an overlap or
refuse a touching pair. Every reference construction in docs/reference-data.md is
feasible this way (the tightest slack is 6.7e-16). The upstream verifier allows 1e-12 on every
constraint, which a record could exploit by about n * 1e-12; with tolerance 0 a reported record
is a true packing. Programs should shrink radii by about 1e-12 before returning (it costs about
n * 1e-12 of the sum). The score is the correctly rounded sum of the radii (math.fsum).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from discover.arrays import real_array
from discover.environment import InvalidArtifact


def circles(values: Any, n: int) -> np.ndarray:
    """`values` as an (n, 3) float64 array of finite numbers with radii >= 0."""
    c = real_array(values, f"an ({n}, 3) array of circles (x, y, r)")
    if c.shape != (n, 3):
        raise InvalidArtifact(f"expected {n} circles as rows (x, y, r): got shape {c.shape}")
    negative = c[:, 2] < 0
    if negative.any():
        i = int(np.argmax(negative))
        raise InvalidArtifact(f"circle {i} has a negative radius ({c[i, 2]:.6g})")
    return c


def violations(c: np.ndarray) -> list[str]:
    """Every broken constraint of a packing, decided in exact arithmetic, worst-first per kind."""
    # One power of two turns every value into an integer: X = x * 2^k exactly.
    k = max(Fraction(float(v)).denominator for v in c.ravel()).bit_length() - 1
    X, Y, R = ([int(Fraction(float(v)) * (1 << k)) for v in c[:, j]] for j in range(3))
    one = 1 << k
    walls, pairs = [], []
    for i in range(len(c)):
        for name, lo, hi in (("x", X[i] - R[i], X[i] + R[i]), ("y", Y[i] - R[i], Y[i] + R[i])):
            if lo < 0:
                walls.append((-lo, f"circle {i} leaves the square ({name} - r = "
                                   f"{lo / one:.3g} < 0)"))
            if hi > one:
                over = Fraction(hi - one, one)
                walls.append((over, f"circle {i} leaves the square ({name} + r = "
                                    f"{float(1 + over):.17g} > 1, by {float(over):.2g})"))
    for i in range(len(c)):
        for j in range(i + 1, len(c)):
            d2 = (X[i] - X[j]) ** 2 + (Y[i] - Y[j]) ** 2
            s2 = (R[i] + R[j]) ** 2
            if d2 < s2:  # overlap = s - d = (s^2 - d^2) / (s + d)
                s = (R[i] + R[j]) / one
                depth = (s2 - d2) / one ** 2 / (s + math.sqrt(d2 / one ** 2))
                pairs.append((depth, f"circles {i} and {j} overlap by {depth:.2g}"))
    return [m for _, m in sorted(walls, key=lambda w: -w[0])] + \
        [m for _, m in sorted(pairs, key=lambda p: -p[0])]


def check(c: np.ndarray) -> None:
    """Raise InvalidArtifact naming the worst broken constraint(s) of a checked array."""
    found = violations(c)
    if found:
        more = f" ({len(found)} violated constraints in all)" if len(found) > 1 else ""
        raise InvalidArtifact(f"{found[0]}{more}")


def sum_of_radii(c: np.ndarray) -> float:
    return math.fsum(c[:, 2].tolist())


def score(values: Any, n: int) -> tuple[float, np.ndarray]:
    """Verify a packing of n circles: (sum of radii, the (n, 3) array)."""
    c = circles(values, n)
    check(c)
    return sum_of_radii(c), c
