from environments.denoising.data import Counts, Split, load, split_counts, synthetic
from environments.denoising.env import BASELINES, DenoisingEnvironment, baseline_program
from environments.denoising.scoring import Anchors, check, evaluate_denoised, mse, poisson

__all__ = ["Anchors", "BASELINES", "Counts", "DenoisingEnvironment", "Split", "baseline_program",
           "check", "evaluate_denoised", "load", "mse", "poisson", "split_counts", "synthetic"]
