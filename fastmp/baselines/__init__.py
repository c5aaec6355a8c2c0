"""Baselines the paper used, kept only for comparison with fastmp's decisions. Their
"matches" are *not* matches in the sense of Definition 2.3 (see each module)."""
