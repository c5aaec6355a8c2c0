"""Theory oracle: decide maximal / minimal / undetermined without solving (placeholder)."""
from __future__ import annotations

from dataclasses import dataclass

KINDS = ("maximal", "minimal", "undetermined")


@dataclass(frozen=True)
class Classification:
    """``kind`` in {"maximal", "minimal", "undetermined"}; ``rule`` names the deciding
    result (e.g. "Theorem 3.1"); ``reason`` says why in one sentence."""

    kind: str
    rule: str
    reason: str

    def to_dict(self):
        return {"kind": self.kind, "rule": self.rule, "reason": self.reason}


def classify(model, allocation, m=None):
    raise NotImplementedError("classify is being written")
