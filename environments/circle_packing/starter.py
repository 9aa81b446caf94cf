# EVOLVE-BLOCK-START
K = 1  # how many circles one move shifts
STEP = 0.02  # how far a move shifts them at first (it shrinks over the budget)
# EVOLVE-BLOCK-END

import numpy as np

GAP = 1e-12  # the check is exact: leave this much room so rounding cannot cause an overlap


def propose(c, rng, t):
    """A changed copy of the circles c (rows x, y, r); t runs from 0 to 1 over the iterations."""
    i = rng.integers(len(c), size=K)
    moved = c.copy()
    moved[i, :2] += rng.normal(0, STEP * (1 - t) + 0.002, size=(K, 2))
    return moved


def repair(c):
    """Each circle in turn as large as the walls and the other circles allow: a feasible
    packing, whatever the centres (moved circles shrink, the others grow into free room)."""
    c = c.copy()
    c[:, :2] = np.clip(c[:, :2], 0, 1)
    x, y = c[:, 0], c[:, 1]
    for i in range(len(c)):
        d = np.hypot(x - x[i], y - y[i]) - c[:, 2]
        d[i] = np.inf
        room = min(x[i], 1 - x[i], y[i], 1 - y[i], d.min())
        c[i, 2] = max(room - GAP, 0)
    return c


def solve(parent, iters, seed):
    rng = np.random.default_rng(seed)
    c, best = parent, parent[:, 2].sum()
    for k in range(iters):
        t = k / iters
        trial = repair(propose(c, rng, t))
        if trial[:, 2].sum() > best:  # keep improvements only
            c, best = trial, trial[:, 2].sum()
    return c
