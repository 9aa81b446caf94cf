from environments.circle_packing.env import (
    CirclePacking26,
    CirclePacking32,
    CirclePackingEnvironment,
    random_packing,
)
from environments.circle_packing.scoring import check, circles, score, sum_of_radii, violations

__all__ = ["CirclePacking26", "CirclePacking32", "CirclePackingEnvironment", "check", "circles",
           "random_packing", "score", "sum_of_radii", "violations"]
