"""Match-probability estimators and the public entry point :func:`match_probability`."""
from .api import match_probability
from .result import MPResult, wilson_interval

__all__ = ["match_probability", "MPResult", "wilson_interval"]
