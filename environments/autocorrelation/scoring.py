"""Autocorrelation inequalities AC1 and AC2: verification and the two objectives.

A candidate is a non-negative sequence a[0..n-1]: the heights of a step function f with n equal
steps on [-1/4, 1/4]. c = a*a is its full discrete autoconvolution, np.convolve(a, a), of length
M = 2n - 1.

  AC1 (minimise):  bound = 2n * max(c) / (sum a)^2.
  AC2 (maximise):  C = ||g||_2^2 / (||g||_1 * ||g||_inf), where g is the piecewise-linear function
                   through the knots [0, c_0, ..., c_{M-1}, 0] with spacing h = 1/(M + 1) = 1/(2n):
                   ||g||_2^2 = h/3 * sum over intervals (y1^2 + y1*y2 + y2^2) (exact for linear
                   pieces), ||g||_1 = h * sum(c), ||g||_inf = max(c). h cancels.

f*f is exactly piecewise linear with knots on that grid, so both are the exact continuous
functionals of f (docs/reference-data.md). Both are invariant to scaling a; bound > 1
(max(c) >= sum(c)/(2n - 1) = (sum a)^2/(2n - 1)) and bound <= 2n; 0 < C <= 1.

Unlike the upstream verifiers, which clip a to [0, 1000], negative values are refused and large
ones are used as given (the ratios are scale-invariant; no reference file is affected).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from discover.arrays import real_array
from discover.environment import InvalidArtifact

MAX_N = 100_000
DIRECT_MAX_N = 20_000  # np.convolve is O(n^2): 0.1 s at 20,000; FFT beyond
# FFT convolution errs by about 1e-15 of max(c) here (measured on the 30,000- and 50,000-value
# reference files); every lag within FFT_TIE of the FFT maximum is re-summed directly, so max(c)
# is a direct sum unless more than FFT_RECHECK lags tie within 1e-12, when it is within 1e-12.
FFT_TIE = 1e-12
FFT_RECHECK = 256


def sequence(values: Any) -> np.ndarray:
    """Check `values` (1-D, finite, non-negative, not all zero, 1 <= n <= MAX_N) and return them
    scaled by a power of two so that max(a) lies in [0.5, 1): exact, so every score computed
    from the result equals the one from `values` bit for bit, and nothing overflows."""
    a = real_array(values, "a 1-D list of numbers")
    if a.ndim != 1:
        raise InvalidArtifact(f"not a 1-D list of numbers: got shape {a.shape}")
    if a.size == 0:
        raise InvalidArtifact("empty: the sequence needs at least 1 value")
    if a.size > MAX_N:
        raise InvalidArtifact(f"length {a.size} exceeds {MAX_N}")
    negative = a < 0
    if negative.any():
        i = int(np.argmax(negative))
        raise InvalidArtifact(f"negative value {a[i]:.6g} at index {i} "
                              f"({int(negative.sum())} negative in all); every value must be >= 0")
    top = float(a.max())
    if top == 0:
        raise InvalidArtifact("all values are zero: the sum must be positive")
    return np.ldexp(a, -np.frexp(top)[1])


def autoconvolution(a: np.ndarray) -> tuple[np.ndarray, float]:
    """(c, max(c)) for c = np.convolve(a, a); by FFT for long a, with max(c) re-summed."""
    n = len(a)
    if n <= DIRECT_MAX_N:
        c = np.convolve(a, a)
        return c, float(c.max())
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(a, size)
    c = np.maximum(np.fft.irfft(spectrum * spectrum, size)[: 2 * n - 1], 0.0)  # noise below 0
    near = np.flatnonzero(c >= c.max() * (1 - FFT_TIE))
    near = near[np.argsort(c[near])[-FFT_RECHECK:]]
    return c, max(_lag(a, int(k)) for k in near)


def _lag(a: np.ndarray, k: int) -> float:
    """c[k] = sum_i a[i] * a[k - i], summed directly."""
    lo, hi = max(0, k - len(a) + 1), min(k, len(a) - 1)
    return float(np.dot(a[lo: hi + 1], a[k - hi: k - lo + 1][::-1]))


def ac1_bound(a: np.ndarray) -> float:
    """AC1 of a checked sequence (see sequence)."""
    _, cmax = autoconvolution(a)
    return 2 * len(a) * cmax / float(np.sum(a)) ** 2


def ac2_constant(a: np.ndarray) -> float:
    """AC2 of a checked sequence (see sequence)."""
    c, cmax = autoconvolution(a)
    y = np.concatenate(([0.0], c, [0.0]))
    left, right = y[:-1], y[1:]
    squares = float(np.sum(left * left + left * right + right * right))
    return squares / (3.0 * float(np.sum(c)) * cmax)


def score_ac1(values: Any) -> float:
    return ac1_bound(sequence(values))


def score_ac2(values: Any) -> float:
    return ac2_constant(sequence(values))


# --- exact rationals: the same formulas without rounding (O(n^2) big-int work: small n) --------

def _exact_convolution(values: Any) -> tuple[list[int], list[int]]:
    """Integers proportional to a and to a*a: floats are binary rationals, so a common
    power-of-two denominator makes every value an integer (the ratios do not depend on it)."""
    fr = [Fraction(float(v)) for v in sequence(values)]
    den = max(f.denominator for f in fr)
    ints = [f.numerator * (den // f.denominator) for f in fr]
    n = len(ints)
    conv = [sum(ints[i] * ints[k - i] for i in range(max(0, k - n + 1), min(k, n - 1) + 1))
            for k in range(2 * n - 1)]
    return ints, conv


def exact_ac1(values: Any) -> Fraction:
    ints, conv = _exact_convolution(values)
    return Fraction(2 * len(ints) * max(conv), sum(ints) ** 2)


def exact_ac2(values: Any) -> Fraction:
    _, conv = _exact_convolution(values)
    y = [0, *conv, 0]
    squares = sum(p * p + p * q + q * q for p, q in zip(y[:-1], y[1:], strict=True))
    return Fraction(squares, 3 * sum(conv) * max(conv))
