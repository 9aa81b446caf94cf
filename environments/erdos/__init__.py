from environments.erdos.env import ErdosEnvironment
from environments.erdos.scoring import c5, exact_c5, normalise, score

__all__ = ["ErdosEnvironment", "c5", "exact_c5", "normalise", "score"]
