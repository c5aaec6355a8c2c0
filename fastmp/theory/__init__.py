"""Theory oracle: what the paper's theorems (and exact generic-rank computations) decide
about an allocation without Monte Carlo."""
from .classify import KINDS, Classification, classify, theorem35_variant
from .counting import count_bound, worst_violation
from .generic import GenericDecision, generic_decision

__all__ = ["KINDS", "Classification", "classify", "theorem35_variant", "count_bound", "worst_violation",
           "GenericDecision", "generic_decision"]
