"""No denoising: the train counts as they are (normalises to 0)."""

import numpy as np


def denoise(X_train, budget_s, seed):
    return np.asarray(X_train, dtype=np.float64)
