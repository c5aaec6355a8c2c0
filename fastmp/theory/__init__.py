"""Theory oracle: what the paper's theorems (and exact generic-rank computations) decide
about an allocation without Monte Carlo."""
from .classify import KINDS, Classification, classify
from .counting import count_bound, worst_violation
from .generic import GenericDecision, generic_decision

__all__ = ["KINDS", "Classification", "classify", "count_bound", "worst_violation",
           "GenericDecision", "generic_decision"]
