"""Erdős minimum overlap: verification and the C5 objective.

h is a step function on [0, 2] with n equal steps of width dx = 2/n, values in [0, 1] and
integral 1 (sum(h) = n/2). C5(h) = max over shifts s of sum_i h[i] * (1 - h[i+s]) * dx, with
1 - h taken as zero outside [0, 2]: max(np.correlate(h, 1 - h, "full")) * 2/n.

For two step functions of the same width the overlap is piecewise linear in the shift with
breakpoints at grid shifts, so this grid maximum is the exact continuous value
(docs/reference-data.md says how it was checked numerically).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from discover.environment import InvalidArtifact

MAX_N = 100_000
TOL = 1e-9  # float noise allowed outside [0, 1] after rescaling; such values are clipped
DIRECT_MAX_N = 4096  # np.correlate is O(n^2): exact and fast up to here, FFT beyond
FFT_RECHECK = 64  # the FFT's best shifts that are re-summed directly

# Every valid h has 0 <= C5 <= 1: each shift's sum is at most sum(h) * max(1 - h) <= n/2, times
# 2/n. Clipping within TOL moves each h[i] by at most 1e-9, hence C5 by at most 4e-9.
C5_UPPER_BOUND = 1.0


def normalise(values: Any) -> np.ndarray:
    """Check `values` and rescale them to sum n/2; raises InvalidArtifact naming the problem."""
    if isinstance(values, (str, bytes, dict)) or values is None:
        raise InvalidArtifact(f"not a 1-D list of numbers: got {type(values).__name__}")
    try:
        raw = np.asarray(values)
        if raw.dtype.kind not in "biufO":  # complex, strings, dates: not real numbers
            raise TypeError(f"got elements of dtype {raw.dtype}")
        h = raw.astype(np.float64)  # a copy: the caller's array is left alone
    except (TypeError, ValueError, OverflowError) as e:
        raise InvalidArtifact(f"not a 1-D list of numbers: {e}") from e
    if h.ndim != 1:
        raise InvalidArtifact(f"not a 1-D list of numbers: got shape {h.shape}")
    n = h.size
    if n == 0:
        raise InvalidArtifact("empty: the step function needs at least 1 value")
    if n > MAX_N:
        raise InvalidArtifact(f"length {n} exceeds {MAX_N}")
    bad = ~np.isfinite(h)
    if bad.any():
        i = int(np.argmax(bad))
        what = "NaN" if np.isnan(h[i]) else f"{h[i]}"
        raise InvalidArtifact(f"contains {what} at index {i}")
    total = float(h.sum())
    if not total > 0:
        raise InvalidArtifact(f"sum is {total:g}; it must be positive to rescale to sum n/2")
    scale = (n / 2) / total
    if not (np.isfinite(total) and np.isfinite(scale)):  # e.g. 1e308s or only subnormals
        raise InvalidArtifact(f"sum is {total:g}: cannot rescale to sum n/2 in float64")
    h *= scale
    out = (h < -TOL) | (h > 1 + TOL)
    if out.any():
        i = int(np.argmax(out))
        raise InvalidArtifact(
            f"value {h[i]:.10g} at index {i} is outside [0, 1] after rescaling to sum n/2 "
            f"(scale factor {scale:.6g}); {int(out.sum())} values are out of range")
    return np.clip(h, 0.0, 1.0, out=h)


def c5_direct(h: np.ndarray) -> float:
    """C5 of a normalised h by the direct O(n^2) formula."""
    n = len(h)
    return float(np.max(np.correlate(h, 1.0 - h, "full")) * 2.0 / n)


def c5_fft(h: np.ndarray) -> float:
    """C5 by FFT correlation; the best FFT shifts are then re-summed directly, so the result is
    a direct sum (exact to float rounding) unless more than FFT_RECHECK shifts tie within the
    FFT's error (about 1e-15 relative), where it is off by at most that error."""
    n = len(h)
    g = 1.0 - h
    size = 1 << (2 * n - 1).bit_length()
    # full[k] = sum_i h[i] * g[i + (n-1) - k], the ordering of np.correlate(h, g, "full")
    full = np.fft.irfft(np.fft.rfft(h, size) * np.fft.rfft(g[::-1], size), size)[: 2 * n - 1]
    top = np.argpartition(full, -min(FFT_RECHECK, len(full)))[-FFT_RECHECK:]
    best = max(_shift_sum(h, g, (n - 1) - int(k)) for k in top)
    return float(best * 2.0 / n)


def _shift_sum(h: np.ndarray, g: np.ndarray, s: int) -> float:
    """sum_i h[i] * g[i + s] over the overlap: np.correlate(h, g, 'full')[n - 1 - s]."""
    n = len(h)
    if s >= 0:
        return float(np.dot(h[: n - s], g[s:]))
    return float(np.dot(h[-s:], g[: n + s]))


def c5(h: np.ndarray) -> float:
    """C5 of a normalised h (see normalise)."""
    return c5_direct(h) if len(h) <= DIRECT_MAX_N else c5_fft(h)


def score(values: Any) -> tuple[float, np.ndarray]:
    """Verify, rescale and score: (C5, the rescaled h)."""
    h = normalise(values)
    return c5(h), h


def exact_c5(values: Any) -> Fraction:
    """C5 of the given numbers exactly, in rationals (no rescaling; floats are binary
    rationals, so this decides what float rounding cannot). O(n^2) big-int work: small n only."""
    fr = [Fraction(float(v)) for v in values]
    n = len(fr)
    if n == 0:
        raise InvalidArtifact("empty: the step function needs at least 1 value")
    den = max(f.denominator for f in fr)  # all powers of two: a common denominator
    a = [f.numerator * (den // f.denominator) for f in fr]
    b = [den - x for x in a]  # den * (1 - h)
    best = max(sum(a[i] * b[i + s] for i in range(max(0, -s), min(n, n - s)))
               for s in range(-(n - 1), n))
    return Fraction(best, den * den) * Fraction(2, n)
