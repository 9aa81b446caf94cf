from environments.autocorrelation.env import (
    AC1Environment,
    AC2Environment,
    AutocorrelationEnvironment,
)
from environments.autocorrelation.scoring import (
    ac1_bound,
    ac2_constant,
    exact_ac1,
    exact_ac2,
    score_ac1,
    score_ac2,
    sequence,
)

__all__ = ["AC1Environment", "AC2Environment", "AutocorrelationEnvironment", "ac1_bound",
           "ac2_constant", "exact_ac1", "exact_ac2", "score_ac1", "score_ac2", "sequence"]
