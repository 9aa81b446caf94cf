"""Advantages within a group: the entropic objective with adaptive beta (docs/METHOD.md).

The entropic utility (1/beta) log E[exp(beta r)] weights the best samples of a group far more
than the mean does. Beta is chosen per group so that the reweighting q_beta(i) ~ exp(beta r_i)
sits at a fixed KL from uniform, which keeps the update size the same whatever the reward scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

METHODS = ("entropic", "entropic-fixed", "mean")


def _check(rewards: Sequence[float]) -> list[float]:
    r = [float(x) for x in rewards]
    if not r:
        raise ValueError("advantages need at least one reward; got an empty group")
    bad = [x for x in r if not math.isfinite(x)]
    if bad:
        raise ValueError(
            f"rewards must be finite (failures get a finite failure reward); got {bad}")
    return r


def reweighting_kl(rewards: Sequence[float], beta: float) -> float:
    """KL(q_beta || uniform) = sum_i q_i (log q_i + log G), with log q from a log-sum-exp."""
    r = _check(rewards)
    top = max(r)
    x = [beta * (ri - top) for ri in r]  # shifted first: equal rewards give exactly 0
    lse = math.log(sum(math.exp(xi) for xi in x))
    kl = math.log(len(r))
    for xi in x:
        q = math.exp(xi - lse)
        if q > 0.0:  # a negligible q underflows to 0 and contributes 0
            kl += q * (xi - lse)
    return max(kl, 0.0)  # rounding can leave -1e-17 at beta = 0


def adaptive_beta(rewards: Sequence[float], delta: float = math.log(2), cap: float = 1e6,
                  iters: int = 60) -> float:
    """Beta >= 0 with KL(q_beta || uniform) = delta; 0 when all rewards are equal.

    Start at 1 and double until KL >= delta (at most `cap`; if KL(cap) < delta, return cap),
    then bisect keeping KL(lo) < delta <= KL(hi) and return hi.

    delta must lie below ln G, the KL of a one-hot reweighting, which no finite beta reaches.
    Where it does not (G = 2 with the default ln 2) it is halved: otherwise beta runs to the
    cap, the loser's weight underflows to 0, and the winner's leave-one-out normaliser with it
    (measured: advantages of 1e12 for rewards [0, -1]). At G = 2 and delta = ln 2 / 2 the
    advantages are about +8 and -0.9 whatever the reward gap.
    """
    r = _check(rewards)
    if min(r) == max(r):  # KL is 0 for every beta
        return 0.0
    if delta >= math.log(len(r)):
        delta = math.log(len(r)) / 2
    lo, hi = 0.0, 1.0
    while reweighting_kl(r, hi) < delta:
        if hi >= cap:
            return cap  # unreachable: e.g. G = 2, ties at the top, or a tiny reward spread
        lo, hi = hi, min(2.0 * hi, cap)
    if lo == 0.0:  # KL(1) >= delta: bracket from below too, so huge reward scales keep precision
        lo = 0.5
        while lo > 0.0 and reweighting_kl(r, lo) >= delta:
            lo, hi = 0.5 * lo, lo
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if reweighting_kl(r, mid) < delta:
            lo = mid
        else:
            hi = mid
    return hi


def entropic_advantages(rewards: Sequence[float], beta: float) -> list[float]:
    """A_i = e_i / (Z_i + 1e-12) - 1 with e_i = exp(beta (r_i - max r)), Z_i leave-one-out mean."""
    r = _check(rewards)
    g = len(r)
    if g == 1 or min(r) == max(r):  # no contrast within the group: exactly 0
        return [0.0] * g
    if not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a finite number >= 0, got {beta}")
    top = max(r)
    e = [math.exp(beta * (ri - top)) for ri in r]
    total = sum(e)
    out = []
    for ei in e:
        z = max(total - ei, 0.0) / (g - 1)  # max(): rounding must not make Z negative
        out.append(ei / (z + 1e-12) - 1.0)
    return out


def mean_advantages(rewards: Sequence[float]) -> list[float]:
    """Baseline for ablation: A_i = r_i - mean(r)."""
    r = _check(rewards)
    if min(r) == max(r):
        return [0.0] * len(r)
    mean = math.fsum(r) / len(r)
    return [ri - mean for ri in r]


def compute_advantages(rewards: Sequence[float], method: str,
                       beta: float = 2.0) -> tuple[list[float], dict]:
    """Advantages for one group and {"beta": ..., "kl": ...} (the KL of the reweighting used)."""
    if method == "entropic":
        b = adaptive_beta(rewards)
        return entropic_advantages(rewards, b), {"beta": b, "kl": reweighting_kl(rewards, b)}
    if method == "entropic-fixed":
        return entropic_advantages(rewards, beta), {"beta": beta,
                                                    "kl": reweighting_kl(rewards, beta)}
    if method == "mean":
        return mean_advantages(rewards), {"beta": 0.0, "kl": 0.0}
    raise ValueError(f"advantage method must be one of {METHODS}, got {method!r}")
