# EVOLVE-BLOCK-START
K = 1  # how many values one move changes
STEP = 0.1  # how far a move changes them at first (it shrinks over the budget)
# EVOLVE-BLOCK-END

import numpy as np


def propose(h, rng, t):
    """A changed copy of h; t runs from 0 to 1 over the iterations."""
    i = rng.integers(len(h), size=K)
    h = h.copy()
    h[i] += rng.normal(0, STEP * (1 - t) + 0.01, size=K)
    return h


def c5(h):
    return np.max(np.correlate(h, 1 - h, "full")) * 2 / len(h)


def solve(parent, iters, seed):
    rng = np.random.default_rng(seed)
    h, best = parent, c5(parent)
    for k in range(iters):
        t = k / iters
        trial = np.clip(propose(h, rng, t), 0, 1)
        trial = trial * (len(h) / 2) / trial.sum()  # keep sum(h) = n/2
        if trial.max() <= 1 and c5(trial) < best:  # keep improvements only
            h, best = trial, c5(trial)
    return h
