"""Theory oracle (placeholder while the rules are written)."""
from .classify import Classification, classify

__all__ = ["Classification", "classify"]
