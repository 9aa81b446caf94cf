# EVOLVE-BLOCK-START
N_PCA = 100  # principal components for the cell-cell distances
KNN = 5  # bandwidth of each cell: the distance to its KNN-th nearest neighbour
DECAY = 1.0  # kernel exp(-(d / sigma) ** DECAY)
THRESH = 1e-4  # kernel values below this are dropped
T = 3  # diffusion steps
# EVOLVE-BLOCK-END

# MAGIC-style diffusion (van Dijk et al. 2018) with OpenProblems' "reversed normalisation":
# sqrt of the counts, each cell scaled to sum 1, a kNN-adaptive kernel on a PCA of that, a Markov
# matrix diffused for T steps, then squared and multiplied back by each cell's sqrt-count total.
import numpy as np


def denoise(X_train, budget_s, seed):
    S = np.sqrt(np.asarray(X_train, dtype=np.float64))
    lib = S.sum(axis=1, keepdims=True)
    lib[lib == 0] = 1.0
    Y = S / lib
    Yc = Y - Y.mean(axis=0)
    w, V = np.linalg.eigh(Yc @ Yc.T)  # PCA through the cell Gram matrix (cells << genes)
    top = np.argsort(w)[::-1][: min(N_PCA, len(w) - 1)]
    Z = V[:, top] * np.sqrt(np.maximum(w[top], 0.0))
    sq = (Z ** 2).sum(axis=1)
    D = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * Z @ Z.T, 0.0))
    sigma = np.sort(D, axis=1)[:, min(KNN, len(D) - 1)]
    sigma[sigma == 0] = 1e-12
    K = np.exp(-((D / sigma[:, None]) ** DECAY))
    K[K < THRESH] = 0.0
    K = (K + K.T) / 2.0
    P = K / K.sum(axis=1, keepdims=True)
    for _ in range(T):
        Y = P @ Y
    return Y ** 2 * lib
