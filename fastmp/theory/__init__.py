"""Theory oracle: what the paper's theorems (and exact generic-rank computations) decide
about an allocation without Monte Carlo."""
from .classify import KINDS, Classification, classify, theorem35_variant
from .counting import count_bound, worst_violation
from .generic import GenericDecision, generic_decision
from .relu_patterns import pattern_count, pattern_counts, theorem41_relu

__all__ = ["KINDS", "Classification", "classify", "theorem35_variant", "count_bound", "worst_violation",
           "GenericDecision", "generic_decision", "pattern_count", "pattern_counts",
           "theorem41_relu"]
