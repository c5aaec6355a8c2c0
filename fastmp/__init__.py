"""fastmp: fast, certified estimates of the match probability (MP) of allocations of
learnable weights (Schlisselberg & Darshan, arXiv 2502.06300)."""
from ._config import AMBIGUOUS, MATCH, NO_MATCH, Tolerances
from . import generators
from . import plugins
from .allocation import Allocation
from .estimators import MPResult, match_probability, wilson_interval
from .models import LRNN, LinearEstimator, LinearFFN, Model, ShallowReLU
from .theory import Classification, classify

__version__ = "0.1.0"

__all__ = [
    "Allocation", "Classification", "LRNN", "LinearEstimator", "LinearFFN", "MPResult",
    "Model", "ShallowReLU", "Tolerances", "classify", "match_probability",
    "wilson_interval", "MATCH", "NO_MATCH", "AMBIGUOUS", "generators", "plugins",
]
